package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// k8sDir is the root of the Kubernetes manifests, relative to this package.
const k8sDir = "k8s"

// object is one rendered Kubernetes object, decoded into its API type.
type object struct {
	kind, name string
	obj        runtime.Object
}

// rendering is everything one kustomization renders to.
type rendering struct {
	dir     string
	objects []object
}

// strictDecoder decodes YAML into the Kubernetes API types (and the
// prometheus-operator's), refusing unknown fields, duplicate fields and
// unregistered kinds.
func strictDecoder(t testing.TB) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
		networkingv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// render builds the kustomization in dir with the kustomize Go API (what
// `kubectl apply -k dir` applies) and decodes every object strictly.
func render(t testing.TB, dir string) rendering {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	dec := strictDecoder(t)
	r := rendering{dir: dir}
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, res.CurId(), err)
		}
		obj, gvk, err := dec.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: %s %s does not decode strictly into the Kubernetes API types: %v", dir, res.GetGvk().Kind, res.GetName(), err)
			continue
		}
		r.objects = append(r.objects, object{kind: gvk.Kind, name: res.GetName(), obj: obj})
	}
	return r
}

// kustomizations lists every directory under k8s/ that holds a
// kustomization.yaml.
func kustomizations(t testing.TB) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(k8sDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(dirs)
	return dirs
}

// overlays lists the directories of k8s/overlays.
func overlays(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(k8sDir, "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(k8sDir, "overlays", e.Name()))
		}
	}
	return dirs
}

func (r rendering) find(kind, name string) runtime.Object {
	for _, o := range r.objects {
		if o.kind == kind && o.name == name {
			return o.obj
		}
	}
	return nil
}

// generated returns the data of the ConfigMap that a configMapGenerator
// named name produced (name-<hash>).
func (r rendering) generated(t testing.TB, name string) map[string]string {
	t.Helper()
	var found []*corev1.ConfigMap
	for _, o := range r.all("ConfigMap") {
		if rest, ok := strings.CutPrefix(o.name, name+"-"); ok && !strings.Contains(rest, "-") {
			found = append(found, o.obj.(*corev1.ConfigMap))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d ConfigMaps generated as %s, want 1", r.dir, len(found), name)
	}
	return found[0].Data
}

func (r rendering) all(kind string) []object {
	var out []object
	for _, o := range r.objects {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// configMapData returns the data of the rendered ConfigMap name, failing
// the test when there is none.
func (r rendering) configMapData(t testing.TB, name string) map[string]string {
	t.Helper()
	cm, ok := r.find("ConfigMap", name).(*corev1.ConfigMap)
	if !ok {
		t.Fatalf("%s: ConfigMap %s is referenced but not rendered", r.dir, name)
	}
	return cm.Data
}

// workload is a rendered object with a pod template.
type workload struct {
	kind, name string
	replicas   int32
	selector   map[string]string
	pod        *corev1.PodTemplateSpec
}

func (r rendering) workloads() []workload {
	var ws []workload
	for _, o := range r.objects {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{o.kind, o.name, ptrOr(v.Spec.Replicas, 1), v.Spec.Selector.MatchLabels, &v.Spec.Template})
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o.kind, o.name, ptrOr(v.Spec.Replicas, 1), v.Spec.Selector.MatchLabels, &v.Spec.Template})
		case *batchv1.Job:
			ws = append(ws, workload{o.kind, o.name, 1, nil, &v.Spec.Template})
		}
	}
	return ws
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// TestEveryKustomizationRenders renders every kustomization under k8s/ —
// overlays, base, dependencies, namespace — strictly, and holds every pod
// of it to the security and resource policy. The images of the
// kustomizations that docs/deploy.md applies must be pinned to a tag; the
// building blocks (base, base/site, the sites, dependencies/provision)
// name the release's images, which components/release pins.
func TestEveryKustomizationRenders(t *testing.T) {
	dirs := kustomizations(t)
	applied := appliedKustomizations(t)
	for _, want := range []string{"k8s/base", "k8s/base/site", "k8s/dependencies/clickhouse", "k8s/dependencies/nats", "k8s/dependencies/provision", "k8s/namespace", "k8s/overlays/dev", "k8s/overlays/prod"} {
		if !slices.Contains(dirs, want) {
			t.Errorf("no kustomization in %s", want)
		}
	}
	for _, dir := range dirs {
		if strings.Contains(dir, "components") {
			continue // a Component renders only as part of an overlay
		}
		t.Run(strings.TrimPrefix(dir, "k8s/"), func(t *testing.T) {
			r := render(t, dir)
			if len(r.objects) == 0 {
				t.Fatal("renders nothing")
			}
			for _, o := range r.objects {
				if o.kind == "Secret" {
					t.Errorf("renders Secret %s: secrets are created by the platform team, never committed (secret.example.yaml)", o.name)
				}
			}
			for _, w := range r.workloads() {
				checkPodPolicy(t, w, applied[dir])
			}
		})
	}
}

// noCPULimit: the sender's and the receiver's containers run without a
// CPU limit, so that CFS throttling does not add to the round-trip and
// service-check latencies they measure.
func noCPULimit(w workload) bool {
	c := w.pod.Labels[labelComponent]
	return w.pod.Labels[labelName] == "email-scout" && (c == "sender" || c == "receiver")
}

// checkPodPolicy holds one workload's pod to the policy of every pod in
// deploy/k8s: non-root, read-only root filesystem, no privilege
// escalation, no capabilities, the runtime's seccomp profile, requests and
// limits (no CPU limit for the sender and receiver), and (for long-running
// pods) liveness and readiness probes.
func checkPodPolicy(t *testing.T, w workload, pinned bool) {
	t.Helper()
	where := w.kind + " " + w.name
	ps := w.pod.Spec
	psc := ps.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if w.selector != nil {
		for k, v := range w.selector {
			if w.pod.Labels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod template's labels %v", where, k, v, w.pod.Labels)
			}
		}
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false (nothing here talks to the Kubernetes API)", where)
	}
	if len(ps.InitContainers) > 0 {
		t.Errorf("%s: init containers are not checked by this test; add them to it", where)
	}
	for _, c := range ps.Containers {
		where := where + " container " + c.Name
		csc := c.SecurityContext
		if csc == nil {
			t.Errorf("%s: no securityContext", where)
			continue
		}
		if !ptrOr(csc.RunAsNonRoot, ptrOr(psc.RunAsNonRoot, false)) {
			t.Errorf("%s: runAsNonRoot is not true", where)
		}
		if uid := ptrOr(csc.RunAsUser, ptrOr(psc.RunAsUser, 0)); uid == 0 {
			t.Errorf("%s: no numeric non-root runAsUser", where)
		}
		if !ptrOr(csc.ReadOnlyRootFilesystem, false) {
			t.Errorf("%s: readOnlyRootFilesystem is not true", where)
		}
		if ptrOr(csc.AllowPrivilegeEscalation, true) {
			t.Errorf("%s: allowPrivilegeEscalation is not false", where)
		}
		if ptrOr(csc.Privileged, false) {
			t.Errorf("%s: privileged", where)
		}
		if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities must drop ALL and add none", where)
		}
		seccomp := csc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile is not RuntimeDefault", where)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, okReq := c.Resources.Requests[res]
			lim, okLim := c.Resources.Limits[res]
			switch {
			case res == corev1.ResourceCPU && noCPULimit(w):
				// Throttling would add to the latencies they measure.
				if !okReq || okLim {
					t.Errorf("%s: a CPU request and no CPU limit (the %s measures latencies)", where, w.pod.Labels[labelComponent])
				}
			case !okReq || !okLim:
				t.Errorf("%s: %s request and limit must both be set", where, res)
			case req.Cmp(lim) > 0:
				t.Errorf("%s: %s request %s above the limit %s", where, res, req.String(), lim.String())
			}
		}
		if pinned && !strings.Contains(c.Image[strings.LastIndex(c.Image, "/")+1:], ":") || strings.HasSuffix(c.Image, ":latest") {
			t.Errorf("%s: image %q is not pinned to a tag", where, c.Image)
		}
		if c.Image == "" {
			t.Errorf("%s: no image", where)
		}
		if w.kind != "Job" {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: liveness and readiness probes are required", where)
			}
		}
	}
}
