package deploy

import (
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/checks"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// overlayWant is what each overlay must deploy. A new overlay fails the
// test until it is described here.
var overlayWant = map[string]overlaySpec{
	"dev":  {sites: []string{"dev"}, streamReplicas: "1", minReplicas: 1, maxReplicas: 1},
	"prod": {sites: []string{"eu-west", "us-east"}, checkSites: []string{"ap-south", "eu-west", "us-east"}, streamReplicas: "3", minReplicas: 2, maxReplicas: 2, loadBalancer: true, monitoring: true, natsUsers: true, natsTLS: true},
	// A site in another region: its sender and receiver behind a NATS leaf
	// node (docs/deploy.md, "Adding a site in another region").
	"site-ap-south": {sites: []string{"ap-south"}, checkSites: []string{"ap-south", "eu-west", "us-east"}, streamReplicas: "3", minReplicas: 2, maxReplicas: 2, loadBalancer: true,
		siteOnly: true, natsUsers: true, leafNode: true, others: []string{"nats-leaf"}},
}

// overlaySpec is what one overlay deploys.
type overlaySpec struct {
	sites []string // the sites whose sender and receiver it deploys
	// checkSites are the check file's sites when other clusters run some
	// of them (the sites behind leaf nodes); nil: sites.
	checkSites     []string
	streamReplicas string
	// minReplicas of the site-independent services and of each receiver.
	minReplicas, maxReplicas int32
	loadBalancer             bool // the receivers' Services
	monitoring               bool // ServiceMonitor and PrometheusRule
	// siteOnly: only the sites' services (a cluster in another region);
	// no site-independent service, no provisioning Job.
	siteOnly bool
	// natsUsers: each workload is its own NATS user (components/nats-auth);
	// natsTLS: over TLS with the CA of scout-nats-ca; leafNode: through the
	// leaf node of the overlay, in the hub's JetStream domain.
	natsUsers, natsTLS, leafNode bool
	others                       []string // Deployments other than Email Scout's
}

// allSites are the check file's sites.
func (s overlaySpec) allSites() []string {
	if s.checkSites != nil {
		return s.checkSites
	}
	return s.sites
}

// Email Scout's services: one Deployment each, or one per site.
var (
	siteIndependent = []string{"scheduler", "evaluator", "notifier", "recorder", "web"}
	perSite         = []string{"sender", "receiver"}
)

const (
	labelName      = "app.kubernetes.io/name"
	labelComponent = "app.kubernetes.io/component"
	labelSite      = "scout.emailscout.io/site"
)

// release is the components/release kustomization: the image of every
// service at one version.
type release struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
	// Labels: app.kubernetes.io/version, the release version.
	Labels []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
		IncludeTemplates bool              `json:"includeTemplates"`
	} `json:"labels"`
}

// releaseImages reads components/release and returns image name ->
// newName:newTag, checking that every image has the same version.
func releaseImages(t *testing.T) (map[string]string, string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(k8sDir, "components", "release", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rel release
	if err := yaml.UnmarshalStrict(data, &rel); err != nil {
		t.Fatalf("components/release: %v", err)
	}
	images := map[string]string{}
	version := ""
	for _, img := range rel.Images {
		if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(img.NewTag) {
			t.Errorf("components/release: image %s: newTag %q is not a release version such as 0.1.0", img.Name, img.NewTag)
		}
		if version == "" {
			version = img.NewTag
		} else if img.NewTag != version {
			t.Errorf("components/release: image %s is at %s, the others at %s: one release version for every image", img.Name, img.NewTag, version)
		}
		images[img.Name] = img.NewName + ":" + img.NewTag
	}
	for _, s := range append(append([]string{}, siteIndependent...), perSite...) {
		if _, ok := images["scout-"+s]; !ok {
			t.Errorf("components/release: no image scout-%s", s)
		}
	}
	versionLabel := ""
	for _, l := range rel.Labels {
		if l.IncludeSelectors {
			t.Error("components/release: labels in selectors: a Deployment's selector is immutable")
		}
		if v, ok := l.Pairs["app.kubernetes.io/version"]; ok {
			versionLabel = v
		}
	}
	if versionLabel != version {
		t.Errorf("components/release: label app.kubernetes.io/version %q, the images' version %s", versionLabel, version)
	}
	if _, ok := images["scout"]; !ok {
		t.Error("components/release: no image scout (the CLI of the provisioning Job)")
	}
	return images, version
}

// imageFor is the release image name of a component.
func imageFor(component string) string {
	if component == "provision" {
		return "scout"
	}
	return "scout-" + component
}

func TestOverlays(t *testing.T) {
	images, _ := releaseImages(t)
	documented := documentedVariables(t)
	for _, dir := range overlays(t) {
		name := filepath.Base(dir)
		want, ok := overlayWant[name]
		if !ok {
			t.Errorf("overlay %s is not described in overlayWant", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			r := render(t, dir)
			deployments := map[string]*appsv1.Deployment{}
			for _, o := range r.all("Deployment") {
				deployments[o.name] = o.obj.(*appsv1.Deployment)
			}

			// Every service has its Deployment, and nothing else is deployed.
			expected := map[string]string{} // Deployment name -> site ("" for site-independent)
			if !want.siteOnly {
				for _, s := range siteIndependent {
					expected["scout-"+s] = ""
				}
			}
			for _, n := range want.others {
				expected[n] = ""
			}
			for _, site := range want.sites {
				for _, s := range perSite {
					expected["scout-"+s+"-"+site] = site
				}
			}
			for n := range expected {
				if deployments[n] == nil {
					t.Errorf("no Deployment %s", n)
				}
			}
			for n := range deployments {
				if _, ok := expected[n]; !ok {
					t.Errorf("unexpected Deployment %s", n)
				}
			}

			common := r.generated(t, "scout-common")
			if got := common["SCOUT_STREAM_REPLICAS"]; got != want.streamReplicas {
				t.Errorf("SCOUT_STREAM_REPLICAS = %q, want %s", got, want.streamReplicas)
			}
			envs := map[string]map[string]string{} // workload -> environment
			for _, w := range r.workloads() {
				if w.pod.Labels[labelName] != "email-scout" {
					continue
				}
				env := checkScoutContainer(t, r, w, images, documented)
				envs[w.name] = env
				component := w.pod.Labels[labelComponent]
				if w.kind == "Job" {
					continue
				}
				d := deployments[w.name]
				site, isExpected := expected[w.name]
				if !isExpected {
					continue
				}
				if !strings.HasPrefix(w.name, "scout-"+component) {
					t.Errorf("Deployment %s: component label %q", w.name, component)
				}
				if site != "" {
					if env["SCOUT_SITE"] != site || w.pod.Labels[labelSite] != site || d.Spec.Selector.MatchLabels[labelSite] != site {
						t.Errorf("Deployment %s: SCOUT_SITE %q, site label %q, selector %q; want %s everywhere",
							w.name, env["SCOUT_SITE"], w.pod.Labels[labelSite], d.Spec.Selector.MatchLabels[labelSite], site)
					}
				}
				switch {
				case component == "sender":
					if w.replicas != 1 {
						t.Errorf("Deployment %s: %d replicas, want 1 per site", w.name, w.replicas)
					}
				case w.replicas < want.minReplicas || w.replicas > want.maxReplicas:
					t.Errorf("Deployment %s: %d replicas, want %d to %d", w.name, w.replicas, want.minReplicas, want.maxReplicas)
				}
			}

			checkCheckFile(t, r, want.allSites())
			if want.siteOnly {
				if jobs := r.all("Job"); len(jobs) > 0 {
					t.Errorf("%d Jobs in a site-only overlay: the hub's cluster provisions", len(jobs))
				}
			} else {
				checkProvisionJob(t, r, want.streamReplicas)
			}
			checkNATSUsers(t, r, want, envs)
			checkPDBs(t, r, deployments)
			checkNetworkPolicies(t, r)
			checkServices(t, r, want.sites, want.loadBalancer)
			monitoring := len(r.all("PrometheusRule")) + len(r.all("ServiceMonitor"))
			switch {
			case want.monitoring && (len(r.all("PrometheusRule")) != 1 || len(r.all("ServiceMonitor")) != 1):
				t.Errorf("want one PrometheusRule and one ServiceMonitor, have %d objects", monitoring)
			case !want.monitoring && monitoring > 0:
				t.Errorf("%d prometheus-operator objects in an overlay without monitoring", monitoring)
			}
			for _, o := range r.all("ServiceMonitor") {
				sm := o.obj.(*monitoringv1.ServiceMonitor)
				metrics := r.find("Service", "scout-metrics").(*corev1.Service)
				if !selects(&sm.Spec.Selector, metrics.Labels) || sm.Spec.Endpoints[0].Port != "metrics" {
					t.Errorf("ServiceMonitor %s does not scrape the Service scout-metrics' port metrics", o.name)
				}
			}
		})
	}
}

// checkScoutContainer checks the one container of an Email Scout workload
// and returns its environment with ConfigMap values resolved (secret
// values are "<secret>").
func checkScoutContainer(t *testing.T, r rendering, w workload, images map[string]string, documented map[string]bool) map[string]string {
	t.Helper()
	where := w.kind + " " + w.name
	if len(w.pod.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", where, len(w.pod.Spec.Containers))
	}
	c := w.pod.Spec.Containers[0]
	component := w.pod.Labels[labelComponent]
	if want := images[imageFor(component)]; c.Image != want {
		t.Errorf("%s: image %q, want the release's %q", where, c.Image, want)
	}
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil || ef.Prefix != "" {
			t.Errorf("%s: envFrom other than a ConfigMap without prefix", where)
			continue
		}
		for k, v := range r.configMapData(t, ef.ConfigMapRef.Name) {
			env[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "<secret>"
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := r.configMapData(t, ref.Name)[ref.Key]
			if !ok {
				t.Errorf("%s: %s: ConfigMap %s has no key %s", where, e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "<" + e.ValueFrom.ResourceFieldRef.Resource + ">"
		default:
			t.Errorf("%s: %s: unexpected valueFrom", where, e.Name)
		}
	}
	for name, value := range env {
		if !documented[name] {
			t.Errorf("%s: environment variable %s is not documented in docs/configuration.md", where, name)
		}
		if strings.Contains(value, "set-by-the-site") {
			t.Errorf("%s: %s=%q: the site's placeholder was not replaced", where, name, value)
		}
	}
	if w.kind == "Job" {
		return env
	}

	// /healthz, /readyz and /metrics on SCOUT_HTTP_ADDR, and the probes on it.
	_, httpPort, err := net.SplitHostPort(env["SCOUT_HTTP_ADDR"])
	if err != nil {
		t.Errorf("%s: SCOUT_HTTP_ADDR=%q: %v", where, env["SCOUT_HTTP_ADDR"], err)
	}
	if p := containerPort(c, "metrics"); strconv.Itoa(int(p)) != httpPort {
		t.Errorf("%s: port metrics is %d, SCOUT_HTTP_ADDR's port %s", where, p, httpPort)
	}
	for probe, pr := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		wantPath := "/healthz"
		if probe == "readiness" {
			wantPath = "/readyz"
		}
		if pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != wantPath || pr.HTTPGet.Port != intstr.FromString("metrics") {
			t.Errorf("%s: %s probe must be GET %s on port metrics", where, probe, wantPath)
		}
	}
	if component == "receiver" {
		_, listen, err := net.SplitHostPort(env["SCOUT_RECEIVER_LISTEN"])
		if p := containerPort(c, "smtp"); err != nil || strconv.Itoa(int(p)) != listen {
			t.Errorf("%s: port smtp %d, SCOUT_RECEIVER_LISTEN=%q", where, p, env["SCOUT_RECEIVER_LISTEN"])
		}
	}

	// SIGTERM: SCOUT_SHUTDOWN_TIMEOUT to drain, after a preStop sleep.
	shutdown, err := time.ParseDuration(env["SCOUT_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Errorf("%s: SCOUT_SHUTDOWN_TIMEOUT=%q: %v", where, env["SCOUT_SHUTDOWN_TIMEOUT"], err)
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		shutdown += time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if grace := time.Duration(ptrOr(w.pod.Spec.TerminationGracePeriodSeconds, 30)) * time.Second; grace <= shutdown {
		t.Errorf("%s: terminationGracePeriodSeconds %s must exceed the drain time %s", where, grace, shutdown)
	}

	// The check file: SCOUT_CHECKS_FILE is the ConfigMap scout-checks' key.
	file := env["SCOUT_CHECKS_FILE"]
	mounted := false
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(file) {
			continue
		}
		for _, v := range w.pod.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				_, hasKey := r.configMapData(t, v.ConfigMap.Name)[path.Base(file)]
				// The fixed name and a directory mount (no subPath): kubelet
				// then swaps the file in place and the service reloads it.
				mounted = hasKey && v.ConfigMap.Name == "scout-checks" && m.ReadOnly && m.SubPath == ""
			}
		}
	}
	if !mounted {
		t.Errorf("%s: SCOUT_CHECKS_FILE=%s is not the ConfigMap scout-checks (fixed name) mounted read-only as a directory", where, file)
	}
	return env
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// checkCheckFile parses the overlay's check file as the services do and
// compares its sites with the overlay's.
func checkCheckFile(t *testing.T, r rendering, sites []string) {
	t.Helper()
	var found int
	for _, o := range r.all("ConfigMap") {
		if !strings.HasPrefix(o.name, "scout-checks") {
			continue
		}
		if o.name != "scout-checks" {
			t.Errorf("ConfigMap %s: the check file's ConfigMap needs the fixed name scout-checks (disableNameSuffixHash), or every edit rolls every Deployment out", o.name)
		}
		found++
		data, ok := o.obj.(*corev1.ConfigMap).Data["checks.yaml"]
		if !ok {
			t.Errorf("ConfigMap %s has no checks.yaml", o.name)
			continue
		}
		f, err := checks.Parse("checks.yaml", []byte(data))
		if err != nil {
			t.Errorf("ConfigMap %s: %v", o.name, err)
			continue
		}
		if got := f.AllSites(); !slices.Equal(got, sites) {
			t.Errorf("the check file's sites are %v, the overlay deploys %v", got, sites)
		}
		for _, c := range f.Checks {
			if c.Service != nil && c.Service.PasswordEnv != "" {
				t.Errorf("check %s: password_env %s is not mapped into the senders by this overlay", c.ID, c.Service.PasswordEnv)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d ConfigMaps scout-checks, want 1", found)
	}
}

// checkProvisionJob checks the Job that runs `scout provision`.
func checkProvisionJob(t *testing.T, r rendering, streamReplicas string) {
	t.Helper()
	jobs := r.all("Job")
	if len(jobs) != 1 {
		t.Fatalf("%d Jobs, want the provisioning Job", len(jobs))
	}
	job := jobs[0].obj.(*batchv1.Job)
	c := job.Spec.Template.Spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "provision" {
		t.Errorf("Job %s runs %v, want `scout provision`", job.Name, c.Args)
	}
	replicas := ""
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			if v, ok := r.configMapData(t, ef.ConfigMapRef.Name)["SCOUT_STREAM_REPLICAS"]; ok {
				replicas = v
			}
		}
	}
	if replicas != streamReplicas {
		t.Errorf("Job %s provisions %q replicas, want %s", job.Name, replicas, streamReplicas)
	}
	if job.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyAlways || job.Spec.BackoffLimit == nil {
		t.Errorf("Job %s: restartPolicy %q, backoffLimit %v", job.Name, job.Spec.Template.Spec.RestartPolicy, job.Spec.BackoffLimit)
	}
}

func selects(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

// checkPDBs: every Deployment's pods have exactly one PodDisruptionBudget,
// and it selects no other Deployment's pods.
func checkPDBs(t *testing.T, r rendering, deployments map[string]*appsv1.Deployment) {
	t.Helper()
	for name, d := range deployments {
		var covering []string
		for _, o := range r.all("PodDisruptionBudget") {
			pdb := o.obj.(*policyv1.PodDisruptionBudget)
			if selects(pdb.Spec.Selector, d.Spec.Template.Labels) {
				covering = append(covering, o.name)
				for other, od := range deployments {
					if other != name && selects(pdb.Spec.Selector, od.Spec.Template.Labels) {
						t.Errorf("PodDisruptionBudget %s selects the pods of %s and of %s", o.name, name, other)
					}
				}
				if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
					t.Errorf("PodDisruptionBudget %s sets neither maxUnavailable nor minAvailable", o.name)
				}
			}
		}
		if len(covering) != 1 {
			t.Errorf("Deployment %s: %d PodDisruptionBudgets (%v), want 1", name, len(covering), covering)
		}
	}
}

// scoutPods are the pod labels of every Email Scout workload.
func scoutPods(r rendering) map[string]map[string]string {
	pods := map[string]map[string]string{}
	for _, w := range r.workloads() {
		if w.pod.Labels[labelName] == "email-scout" {
			pods[w.name] = w.pod.Labels
		}
	}
	return pods
}

// checkNetworkPolicies: a default deny for every Email Scout pod; ingress
// from outside the namespace only to the receivers' SMTP port, to the web
// service's http port from the ingress controller's namespace (and to
// /metrics from the monitoring namespace); the egress every component
// needs.
func checkNetworkPolicies(t *testing.T, r rendering) {
	t.Helper()
	pods := scoutPods(r)
	var policies []*networkingv1.NetworkPolicy
	for _, o := range r.all("NetworkPolicy") {
		policies = append(policies, o.obj.(*networkingv1.NetworkPolicy))
	}
	denyAll := false
	for _, p := range policies {
		all := true
		for _, l := range pods {
			all = all && selects(&p.Spec.PodSelector, l)
		}
		if all && len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 &&
			slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			denyAll = true
		}
		for _, rule := range p.Spec.Ingress {
			outside := len(rule.From) == 0
			for _, peer := range rule.From {
				if peer.IPBlock != nil {
					outside = true
				}
				if peer.NamespaceSelector != nil && !(peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring" && len(peer.NamespaceSelector.MatchLabels) == 1) {
					outside = true
				}
			}
			if !outside {
				continue
			}
			// The receiver's SMTP port from anywhere; the web service's
			// http port from the ingress controller's namespace only.
			for name, l := range pods {
				if !selects(&p.Spec.PodSelector, l) {
					continue
				}
				switch c := l[labelComponent]; {
				case c == "receiver":
					if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || *rule.Ports[0].Port != intstr.FromString("smtp") {
						t.Errorf("NetworkPolicy %s admits outside traffic to %s on ports other than its smtp port", p.Name, name)
					}
				case c == "web":
					fromIngress := len(rule.From) > 0
					for _, peer := range rule.From {
						fromIngress = fromIngress && peer.IPBlock == nil && peer.PodSelector == nil && peer.NamespaceSelector != nil &&
							peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "ingress-nginx"
					}
					if !fromIngress || len(rule.Ports) != 1 || rule.Ports[0].Port == nil || *rule.Ports[0].Port != intstr.FromString("http") {
						t.Errorf("NetworkPolicy %s admits outside traffic to %s other than the ingress controller's to its http port", p.Name, name)
					}
				default:
					t.Errorf("NetworkPolicy %s admits traffic from outside the namespace to %s: only the receiver and the web service may", p.Name, name)
				}
			}
		}
	}
	if !denyAll {
		t.Error("no NetworkPolicy denies all ingress and egress of every Email Scout pod")
	}
	allows := func(l map[string]string, dir networkingv1.PolicyType, port intstr.IntOrString, protocol corev1.Protocol) bool {
		for _, p := range policies {
			if !selects(&p.Spec.PodSelector, l) || !slices.Contains(p.Spec.PolicyTypes, dir) {
				continue
			}
			var ports [][]networkingv1.NetworkPolicyPort
			if dir == networkingv1.PolicyTypeIngress {
				for _, rule := range p.Spec.Ingress {
					ports = append(ports, rule.Ports)
				}
			} else {
				for _, rule := range p.Spec.Egress {
					ports = append(ports, rule.Ports)
				}
			}
			for _, ps := range ports {
				for _, pp := range ps {
					if pp.Port != nil && *pp.Port == port && ptrOr(pp.Protocol, corev1.ProtocolTCP) == protocol {
						return true
					}
				}
			}
		}
		return false
	}
	egress := func(port int, protocol corev1.Protocol) func(map[string]string) bool {
		return func(l map[string]string) bool {
			return allows(l, networkingv1.PolicyTypeEgress, intstr.FromInt32(int32(port)), protocol)
		}
	}
	for name, l := range pods {
		c := l[labelComponent]
		need := map[string]func(map[string]string) bool{
			"DNS over UDP": egress(53, corev1.ProtocolUDP),
			"DNS over TCP": egress(53, corev1.ProtocolTCP),
			"NATS":         egress(4222, corev1.ProtocolTCP),
		}
		if c != "provision" {
			need["metrics ingress"] = func(l map[string]string) bool {
				return allows(l, networkingv1.PolicyTypeIngress, intstr.FromString("metrics"), corev1.ProtocolTCP)
			}
		}
		switch c {
		case "recorder", "provision":
			need["ClickHouse"] = egress(9000, corev1.ProtocolTCP)
		case "sender":
			need["SMTP to the MX"], need["submission to the relay"] = egress(25, corev1.ProtocolTCP), egress(587, corev1.ProtocolTCP)
		case "notifier":
			need["HTTPS to Twilio"] = egress(443, corev1.ProtocolTCP)
		case "web":
			need["ClickHouse's HTTP interface"] = egress(8123, corev1.ProtocolTCP)
			need["http ingress"] = func(l map[string]string) bool {
				return allows(l, networkingv1.PolicyTypeIngress, intstr.FromString("http"), corev1.ProtocolTCP)
			}
		case "receiver":
			need["SMTP ingress"] = func(l map[string]string) bool {
				return allows(l, networkingv1.PolicyTypeIngress, intstr.FromString("smtp"), corev1.ProtocolTCP)
			}
		}
		for what, ok := range need {
			if !ok(l) {
				t.Errorf("%s: no NetworkPolicy allows %s", name, what)
			}
		}
	}
}

// checkServices: each site's receiver has its SMTP Service (port 25 to the
// container's smtp port) selecting that site's receivers only; the
// metrics Service selects every Email Scout Deployment's pods.
func checkServices(t *testing.T, r rendering, sites []string, loadBalancer bool) {
	t.Helper()
	pods := scoutPods(r)
	for _, site := range sites {
		name := "scout-receiver-" + site
		svc, ok := r.find("Service", name).(*corev1.Service)
		if !ok {
			t.Errorf("no Service %s", name)
			continue
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 25 || svc.Spec.Ports[0].TargetPort != intstr.FromString("smtp") {
			t.Errorf("Service %s: ports %+v, want 25 -> smtp", name, svc.Spec.Ports)
		}
		if want := map[bool]corev1.ServiceType{true: corev1.ServiceTypeLoadBalancer, false: corev1.ServiceTypeClusterIP}[loadBalancer]; svc.Spec.Type != want {
			t.Errorf("Service %s: type %s, want %s", name, svc.Spec.Type, want)
		}
		sel := &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}
		for pod, l := range pods {
			if got, want := selects(sel, l), pod == name; got != want {
				t.Errorf("Service %s selects %s: %v", name, pod, got)
			}
		}
	}
	metrics, ok := r.find("Service", "scout-metrics").(*corev1.Service)
	if !ok {
		t.Fatal("no Service scout-metrics")
	}
	if len(metrics.Spec.Ports) != 1 || metrics.Spec.Ports[0].TargetPort != intstr.FromString("metrics") {
		t.Errorf("Service scout-metrics: ports %+v", metrics.Spec.Ports)
	}
	for _, o := range r.all("Deployment") {
		if l := o.obj.(*appsv1.Deployment).Spec.Template.Labels; l[labelName] == "email-scout" && !selects(&metav1.LabelSelector{MatchLabels: metrics.Spec.Selector}, l) {
			t.Errorf("Service scout-metrics does not select the pods of %s", o.name)
		}
	}
}
