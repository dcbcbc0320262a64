package deploy

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

const (
	labelPartOf    = "app.kubernetes.io/part-of"
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelInstance  = "app.kubernetes.io/instance"
	labelVersion   = "app.kubernetes.io/version"
)

// checkRecommendedLabels: l carries Kubernetes' recommended labels
// (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/);
// in an overlay also the instance and the release version.
func checkRecommendedLabels(t *testing.T, where string, l map[string]string, overlay bool, version string) {
	t.Helper()
	if l[labelPartOf] != "email-scout" {
		t.Errorf("%s: %s=%q, want email-scout", where, labelPartOf, l[labelPartOf])
	}
	if l[labelManagedBy] != "kustomize" {
		t.Errorf("%s: %s=%q, want kustomize", where, labelManagedBy, l[labelManagedBy])
	}
	for _, k := range []string{labelName, labelComponent} {
		if l[k] == "" {
			t.Errorf("%s: no label %s", where, k)
		}
	}
	if overlay {
		if l[labelInstance] == "" {
			t.Errorf("%s: no label %s", where, labelInstance)
		}
		if l[labelVersion] != version {
			t.Errorf("%s: %s=%q, want the release's %s", where, labelVersion, l[labelVersion], version)
		}
	}
}

// TestRecommendedLabels: every object every kustomization renders, and
// every pod template, carries app.kubernetes.io/name, component, part-of
// (email-scout) and managed-by (kustomize); in the overlays also instance
// and version (components/release). Selectors keep only the labels they
// had: a Deployment's selector is immutable.
func TestRecommendedLabels(t *testing.T) {
	_, version := releaseImages(t)
	for _, dir := range kustomizations(t) {
		if strings.Contains(dir, "components") {
			continue
		}
		overlay := strings.HasPrefix(dir, "k8s/overlays/") && strings.Count(dir, "/") == 2
		t.Run(strings.TrimPrefix(dir, "k8s/"), func(t *testing.T) {
			r := render(t, dir)
			instances := map[string]bool{}
			for _, o := range r.objects {
				m, err := meta.Accessor(o.obj)
				if err != nil {
					t.Fatalf("%s %s: %v", o.kind, o.name, err)
				}
				checkRecommendedLabels(t, o.kind+" "+o.name, m.GetLabels(), overlay, version)
				instances[m.GetLabels()[labelInstance]] = true
			}
			for _, o := range r.all("StatefulSet") {
				for _, pvc := range o.obj.(*appsv1.StatefulSet).Spec.VolumeClaimTemplates {
					if len(pvc.Labels) > 0 {
						t.Errorf("StatefulSet %s: volumeClaimTemplate %s has labels %v: the templates are immutable, an upgrade could not apply them", o.name, pvc.Name, pvc.Labels)
					}
				}
			}
			if overlay && len(instances) != 1 {
				t.Errorf("instances %v: want one per overlay", instances)
			}
			for _, w := range r.workloads() {
				where := w.kind + " " + w.name + " pod template"
				checkRecommendedLabels(t, where, w.pod.Labels, overlay, version)
				m, _ := meta.Accessor(r.find(w.kind, w.name))
				for _, k := range []string{labelName, labelComponent} {
					if w.pod.Labels[k] != m.GetLabels()[k] {
						t.Errorf("%s: %s=%q, the %s's %q", where, k, w.pod.Labels[k], w.kind, m.GetLabels()[k])
					}
				}
				for k := range w.selector {
					if k == labelPartOf || k == labelManagedBy || k == labelInstance || k == labelVersion {
						t.Errorf("%s %s: selector on %s: selectors are immutable, keep them as they were", w.kind, w.name, k)
					}
				}
			}
		})
	}
}

// TestSenderReceiverNoCPULimit: the sender and the receiver measure
// latencies, and CFS throttling would add to them: a CPU request, no CPU
// limit; memory request and limit as every pod.
func TestSenderReceiverNoCPULimit(t *testing.T) {
	for _, dir := range overlays(t) {
		r := render(t, dir)
		seen := map[string]int{}
		for _, o := range r.all("Deployment") {
			d := o.obj.(*appsv1.Deployment)
			c := d.Spec.Template.Labels[labelComponent]
			if d.Spec.Template.Labels[labelName] != "email-scout" || (c != "sender" && c != "receiver") {
				continue
			}
			seen[c]++
			for _, ctr := range d.Spec.Template.Spec.Containers {
				where := dir + ": " + o.name + " container " + ctr.Name
				if _, ok := ctr.Resources.Limits[corev1.ResourceCPU]; ok {
					t.Errorf("%s: has a CPU limit", where)
				}
				if _, ok := ctr.Resources.Requests[corev1.ResourceCPU]; !ok {
					t.Errorf("%s: no CPU request", where)
				}
				if _, ok := ctr.Resources.Limits[corev1.ResourceMemory]; !ok {
					t.Errorf("%s: no memory limit", where)
				}
			}
		}
		if seen["sender"] == 0 || seen["receiver"] == 0 {
			t.Errorf("%s: senders %d, receivers %d", dir, seen["sender"], seen["receiver"])
		}
	}
}
