package deploy

import (
	"encoding/json"
	"maps"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/natsauth"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// The NATS server's side of Email Scout's users (docs/deploy.md, "NATS
// users and TLS"), relative to this package.
const (
	natsValues    = "k8s/dependencies/nats/values.yaml"
	natsValuesDev = "k8s/dependencies/nats/values-dev.yaml"
	// hubAuthConf is `scout nats-config`'s output for the hub, given to
	// the chart as the key hubAuthKey of its ConfigMap (--set-file) and
	// included into nats.conf.
	hubAuthConf = "k8s/dependencies/nats/scout-auth.conf"
	hubAuthKey  = "scout-auth"
	// usersSecret holds every user's NKey public key, one key per user.
	usersSecret = "scout-nats-users"
	// The leaf node sites' remote: the hub's leaf node listener (the
	// Service nats-leaf of overlays/prod) and the CA file that verifies
	// it in the leaf node's pod.
	leafHubURL = "tls://nats-leaf.scout.example:7422"
	leafCAFile = "/etc/nats-hub-ca/ca.crt"
)

// chartTLS is a TLS block of the NATS chart's values (config.nats.tls,
// config.leafnodes.tls).
type chartTLS struct {
	Enabled    bool   `json:"enabled"`
	SecretName string `json:"secretName"`
}

// chartEnv is one container.env entry of the chart: a value, or a map
// spread into the EnvVar (valueFrom).
type chartEnv struct {
	Value     string
	ValueFrom *corev1.EnvVarSource
}

func (e *chartEnv) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &e.Value)
	}
	var v struct {
		ValueFrom *corev1.EnvVarSource `json:"valueFrom"`
	}
	err := json.Unmarshal(b, &v)
	e.ValueFrom = v.ValueFrom
	return err
}

// natsChartValues is the part of the chart's values this test reads.
type natsChartValues struct {
	Config struct {
		Merge map[string]any `json:"merge"`
		NATS  struct {
			TLS chartTLS `json:"tls"`
		} `json:"nats"`
		Leafnodes struct {
			Enabled bool     `json:"enabled"`
			Port    int      `json:"port"`
			TLS     chartTLS `json:"tls"`
		} `json:"leafnodes"`
		JetStream struct {
			Merge map[string]any `json:"merge"`
		} `json:"jetstream"`
	} `json:"config"`
	Container struct {
		Env map[string]chartEnv `json:"env"`
	} `json:"container"`
}

func readNATSValues(t testing.TB, file string) natsChartValues {
	t.Helper()
	var v natsChartValues
	if err := yaml.Unmarshal([]byte(readFile(t, file)), &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return v
}

// hubDomain is the hub's JetStream domain, from the chart's values.
func hubDomain(t testing.TB) string {
	t.Helper()
	d, _ := readNATSValues(t, natsValues).Config.JetStream.Merge["domain"].(string)
	if d == "" {
		t.Fatalf("%s: no config.jetstream.merge.domain: the leaf node sites reach JetStream through it", natsValues)
	}
	return d
}

// leafSites are the sites of the overlays site-<site>: sites in other
// regions, behind leaf nodes.
func leafSites(t testing.TB) []string {
	t.Helper()
	var sites []string
	for _, dir := range overlays(t) {
		if site, ok := strings.CutPrefix(filepath.Base(dir), "site-"); ok {
			sites = append(sites, site)
		}
	}
	if len(sites) == 0 {
		t.Fatal("no overlay site-<site>: the leaf node site is not rendered")
	}
	return sites
}

// hubOptions are the users' options of the deployment: the sites of the
// production check file, in its order, and the hub's JetStream domain.
func hubOptions(t testing.TB) natsauth.Options {
	t.Helper()
	f, err := checks.Parse("checks.yaml", []byte(readFile(t, "k8s/overlays/prod/checks.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	return natsauth.Options{Sites: f.Sites, JetStreamDomain: hubDomain(t)}
}

// hubCommand is the command that renders hubAuthConf, as docs/deploy.md
// gives it.
func hubCommand(o natsauth.Options, leaf []string) string {
	return "go run ./cmd/scout nats-config --sites " + strings.Join(o.Sites, ",") + " --domain " + o.JetStreamDomain +
		" --leaf-sites " + strings.Join(leaf, ",") + " > deploy/" + hubAuthConf
}

// leafCommand is the command that renders a leaf node site's leaf.conf.
func leafCommand(o natsauth.Options, site string) string {
	return "go run ./cmd/scout nats-config --sites " + strings.Join(o.Sites, ",") + " --domain " + o.JetStreamDomain +
		" --leaf " + site + " --hub-url " + leafHubURL + " --ca " + leafCAFile + " > deploy/k8s/overlays/site-" + site + "/leaf.conf"
}

// TestNATSHubConfigIsGenerated: the hub's users and permissions that the
// chart includes are, byte for byte, what `scout nats-config` renders from
// the code now for the production sites and the leaf node sites; the
// chart's values include the file, give nats-server every user's public key
// from the Secret scout-nats-users and nothing else, require TLS from
// clients and leaf nodes, and name the JetStream domain; docs/deploy.md
// gives the commands that render and install it.
func TestNATSHubConfigIsGenerated(t *testing.T) {
	o := hubOptions(t)
	leaf := leafSites(t)
	users, err := natsauth.HubUsers(o, leaf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := hubCommand(o, leaf)
	if got, want := readFile(t, hubAuthConf), natsauth.AccountsConfig(users); got != want {
		t.Errorf("%s differs from what the code renders now; run from the repository's root:\n  %s", hubAuthConf, cmd)
	}
	doc := readFile(t, deployDoc)
	install := "--set-file configMap.merge.data." + hubAuthKey + "=deploy/" + hubAuthConf
	for _, must := range []string{cmd, install} {
		if !strings.Contains(doc, must) {
			t.Errorf("%s does not give the command %q", deployDoc, must)
		}
	}
	if !strings.Contains(readFile(t, natsValues), install) {
		t.Errorf("%s's install command does not give the chart %s (%s)", natsValues, hubAuthConf, install)
	}

	v := readNATSValues(t, natsValues)
	if got := v.Config.Merge["$include"]; got != hubAuthKey {
		t.Errorf("%s: config.merge.$include = %v, want %s (the ConfigMap key of %s)", natsValues, got, hubAuthKey, hubAuthConf)
	}
	want := map[string]string{} // variable -> user
	for _, u := range users {
		want[u.NKeyVar()] = u.Name
	}
	for name, e := range v.Container.Env {
		if !strings.HasPrefix(name, "SCOUT_NKEY_") {
			continue
		}
		user, ok := want[name]
		if !ok {
			t.Errorf("%s: container.env %s is no user's of %s", natsValues, name, hubAuthConf)
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != usersSecret || e.ValueFrom.SecretKeyRef.Key != user {
			t.Errorf("%s: container.env %s is not the key %s of the Secret %s", natsValues, name, user, usersSecret)
		}
		delete(want, name)
	}
	for name, user := range want {
		t.Errorf("%s: no container.env %s (the public key of %s): nats-server refuses its configuration without it", natsValues, name, user)
	}
	if tls := v.Config.NATS.TLS; !tls.Enabled || tls.SecretName == "" {
		t.Errorf("%s: config.nats.tls %+v: clients must use TLS", natsValues, tls)
	}
	if ln := v.Config.Leafnodes; !ln.Enabled || ln.Port != 7422 || !ln.TLS.Enabled || ln.TLS.SecretName == "" {
		t.Errorf("%s: config.leafnodes %+v: the leaf node listener on 7422 with TLS", natsValues, ln)
	}

	// Development keeps NATS without credentials (and scout dev loopback).
	dev := readNATSValues(t, natsValuesDev)
	if dev.Config.Merge["$include"] != nil || dev.Config.NATS.TLS.Enabled {
		t.Errorf("%s: users or TLS in development, whose overlay connects without credentials", natsValuesDev)
	}
	for name := range dev.Container.Env {
		if strings.HasPrefix(name, "SCOUT_NKEY_") {
			t.Errorf("%s: %s in development", natsValuesDev, name)
		}
	}

	// The hub's leaf node listener is reachable: the Service nats-leaf on
	// the port of the leaf nodes' URL, and the NATS NetworkPolicy admits it.
	prod := render(t, "k8s/overlays/prod")
	svc, ok := prod.find("Service", "nats-leaf").(*corev1.Service)
	u, err := url.Parse(leafHubURL)
	if err != nil {
		t.Fatal(err)
	}
	if !ok || len(svc.Spec.Ports) != 1 || portString(svc.Spec.Ports[0].Port) != u.Port() || svc.Spec.Ports[0].TargetPort != intstr.FromInt32(int32(v.Config.Leafnodes.Port)) ||
		svc.Spec.Selector[labelName] != "nats" || svc.Spec.Selector[labelComponent] != "nats" {
		t.Errorf("overlays/prod: no Service nats-leaf sending %s's port to the NATS servers' leaf node port %d", leafHubURL, v.Config.Leafnodes.Port)
	}
	natsPolicy := render(t, "k8s/dependencies/nats").find("NetworkPolicy", "nats").(*networkingv1.NetworkPolicy)
	if !policyAllows(natsPolicy.Spec.Ingress, v.Config.Leafnodes.Port) {
		t.Errorf("dependencies/nats: the NetworkPolicy nats does not admit the leaf nodes on %d", v.Config.Leafnodes.Port)
	}
}

func portString(p int32) string { return strconv.Itoa(int(p)) }

// policyAllows says whether one of the rules (ingress or egress, as
// []NetworkPolicyIngressRule or []NetworkPolicyEgressRule) opens TCP port.
func policyAllows[R networkingv1.NetworkPolicyIngressRule | networkingv1.NetworkPolicyEgressRule](rules []R, port int) bool {
	for _, r := range rules {
		var ports []networkingv1.NetworkPolicyPort
		switch r := any(r).(type) {
		case networkingv1.NetworkPolicyIngressRule:
			ports = r.Ports
		case networkingv1.NetworkPolicyEgressRule:
			ports = r.Ports
		}
		for _, p := range ports {
			if p.Port != nil && *p.Port == intstr.FromInt32(int32(port)) && ptrOr(p.Protocol, corev1.ProtocolTCP) == corev1.ProtocolTCP {
				return true
			}
		}
	}
	return false
}

// TestNATSLeafNodeSites: each leaf node site's overlay runs a nats-server
// with leaf.conf, which is byte for byte what `scout nats-config --leaf`
// renders now, connecting to the hub's leaf node listener over TLS as
// leaf-<site> (its seed from the Secret scout-nats-leaf-<site>, the hub's
// CA from scout-nats-ca mounted where leaf.conf expects it), serving the
// site's users with their public keys from scout-nats-users; the site's
// sender and receiver connect to it, in the hub's JetStream domain, and
// read the hub's check file.
func TestNATSLeafNodeSites(t *testing.T) {
	o := hubOptions(t)
	doc := readFile(t, deployDoc)
	for _, site := range leafSites(t) {
		t.Run(site, func(t *testing.T) {
			dir := filepath.Join(k8sDir, "overlays", "site-"+site)
			want, err := natsauth.LeafServerConfig(natsauth.LeafOptions{Site: site, HubURL: leafHubURL, CAFile: leafCAFile}, o)
			if err != nil {
				t.Fatal(err)
			}
			cmd := leafCommand(o, site)
			if got := readFile(t, filepath.Join(dir, "leaf.conf")); got != want {
				t.Errorf("%s/leaf.conf differs from what the code renders now; run from the repository's root:\n  %s", dir, cmd)
			}
			if !strings.Contains(doc, cmd) {
				t.Errorf("%s does not give the command %q", deployDoc, cmd)
			}
			if !slices.Contains(o.Sites, site) {
				t.Errorf("site %s is not in overlays/prod/checks.yaml's sites %v", site, o.Sites)
			}
			if got, prod := readFile(t, filepath.Join(dir, "checks.yaml")), readFile(t, "k8s/overlays/prod/checks.yaml"); got != prod {
				t.Errorf("%s/checks.yaml is not a copy of overlays/prod/checks.yaml: cp deploy/k8s/overlays/prod/checks.yaml deploy/%s/", dir, dir)
			}

			r := render(t, dir)
			d, ok := r.find("Deployment", "nats-leaf").(*appsv1.Deployment)
			if !ok {
				t.Fatal("no Deployment nats-leaf")
			}
			pod := d.Spec.Template
			c := pod.Spec.Containers[0]
			// The configuration: nats.conf of the ConfigMap nats-leaf, which
			// includes leaf.conf, the same ConfigMap's.
			var confDir string
			var conf map[string]string
			for _, m := range c.VolumeMounts {
				for _, v := range pod.Spec.Volumes {
					if v.Name == m.Name && v.ConfigMap != nil && strings.HasPrefix(v.ConfigMap.Name, "nats-leaf-") {
						confDir, conf = m.MountPath, r.configMapData(t, v.ConfigMap.Name)
					}
				}
			}
			if conf == nil || !slices.Equal(c.Args, []string{"--config", path.Join(confDir, "nats.conf")}) {
				t.Fatalf("nats-leaf: args %v, want --config with nats.conf of the ConfigMap nats-leaf", c.Args)
			}
			if conf["leaf.conf"] != want || !strings.Contains(conf["nats.conf"], "include ./leaf.conf") {
				t.Errorf("nats-leaf: nats.conf does not include leaf.conf, or leaf.conf is not the generated one")
			}
			if !strings.Contains(conf["nats.conf"], "http_port: "+portString(containerPort(c, "monitor"))) {
				t.Errorf("nats-leaf: the probes' port monitor (%d) is not nats.conf's http_port", containerPort(c, "monitor"))
			}
			// Its credentials and the hub's CA.
			env := map[string]*corev1.EnvVarSource{}
			for _, e := range c.Env {
				env[e.Name] = e.ValueFrom
			}
			if ref := env[natsauth.LeafSeedVar]; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != "scout-nats-"+natsauth.LeafUser(site) || ref.SecretKeyRef.Key != "seed" {
				t.Errorf("nats-leaf: %s is not the key seed of the Secret scout-nats-%s", natsauth.LeafSeedVar, natsauth.LeafUser(site))
			}
			siteUsers, err := natsauth.SiteUsers(site, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range siteUsers {
				if ref := env[u.NKeyVar()]; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != usersSecret || ref.SecretKeyRef.Key != u.Name {
					t.Errorf("nats-leaf: %s is not the key %s of the Secret %s", u.NKeyVar(), u.Name, usersSecret)
				}
			}
			if !mountsSecretFile(pod.Spec, c, leafCAFile, "scout-nats-ca", "ca.crt") {
				t.Errorf("nats-leaf: %s (leaf.conf's CA file) is not the key ca.crt of the Secret scout-nats-ca, read-only", leafCAFile)
			}
			// Its NetworkPolicy: clients from the namespace, the hub outside.
			leafPods := false
			for _, o := range r.all("NetworkPolicy") {
				p := o.obj.(*networkingv1.NetworkPolicy)
				if !selects(&p.Spec.PodSelector, pod.Labels) {
					continue
				}
				leafPods = true
				if !policyAllows(p.Spec.Egress, 7422) || !policyAllows(p.Spec.Ingress, 4222) {
					t.Errorf("NetworkPolicy %s: the leaf node needs egress to the hub (7422) and ingress from the site's services (4222)", p.Name)
				}
			}
			if !leafPods {
				t.Error("no NetworkPolicy selects the leaf node's pods")
			}
			// The site's services: the Service of SCOUT_NATS_URL selects the
			// leaf node, and they name the hub's domain.
			common := r.generated(t, "scout-common")
			nu, err := url.Parse(common["SCOUT_NATS_URL"])
			if err != nil {
				t.Fatal(err)
			}
			svc, ok := r.find("Service", nu.Hostname()).(*corev1.Service)
			if !ok || !selects(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, pod.Labels) || len(svc.Spec.Ports) != 1 || portString(svc.Spec.Ports[0].Port) != nu.Port() {
				t.Errorf("SCOUT_NATS_URL=%s is not a Service of the leaf node's port", common["SCOUT_NATS_URL"])
			}
			if common["SCOUT_NATS_JS_DOMAIN"] != o.JetStreamDomain {
				t.Errorf("SCOUT_NATS_JS_DOMAIN=%q, the hub's domain is %s", common["SCOUT_NATS_JS_DOMAIN"], o.JetStreamDomain)
			}
		})
	}
}

// mountsSecretFile says whether file is, in container c of pod, the key of
// Secret mounted read-only as one item.
func mountsSecretFile(pod corev1.PodSpec, c corev1.Container, file, secret, key string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(file) || !m.ReadOnly || m.SubPath != "" {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == secret && len(v.Secret.Items) == 1 &&
				v.Secret.Items[0].Key == key && v.Secret.Items[0].Path == path.Base(file) {
				return true
			}
		}
	}
	return false
}

// checkNATSUsers: in an overlay with NATS users, every Email Scout
// workload scout-<user> connects as its own user: SCOUT_NATS_NKEY_FILE is
// the key seed of its own Secret scout-nats-<user>, read-only, and <user>
// is a user of the deployment (natsauth.Users, which scout-auth.conf
// configures); no two workloads share a Secret; the Deployments do not
// provision (SCOUT_NATS_PROVISION=false), the Job does, as provision. With
// TLS, SCOUT_NATS_TLS_CA is the CA of scout-nats-ca and the URL is tls://.
// Without NATS users (dev), nothing of it is set.
func checkNATSUsers(t *testing.T, r rendering, want overlaySpec, envs map[string]map[string]string) {
	t.Helper()
	users := map[string]bool{}
	us, err := natsauth.Users(natsauth.Options{Sites: want.allSites()})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		users[u.Name] = true
	}
	var secrets []string
	for _, w := range r.workloads() {
		env, ok := envs[w.name]
		if !ok {
			continue
		}
		where := w.kind + " " + w.name
		if !want.natsUsers {
			for _, v := range []string{"SCOUT_NATS_NKEY_FILE", "SCOUT_NATS_CREDS_FILE", "SCOUT_NATS_TLS_CA", "SCOUT_NATS_JS_DOMAIN"} {
				if env[v] != "" {
					t.Errorf("%s: %s in an overlay without NATS users", where, v)
				}
			}
			if env["SCOUT_NATS_PROVISION"] == "false" {
				t.Errorf("%s: SCOUT_NATS_PROVISION=false in an overlay without NATS users: nothing creates the stream", where)
			}
			continue
		}
		user := strings.TrimPrefix(w.name, "scout-")
		if !users[user] {
			t.Errorf("%s: %s is no NATS user of the deployment (%v)", where, user, slices.Sorted(maps.Keys(users)))
		}
		secret := "scout-nats-" + user
		file := env["SCOUT_NATS_NKEY_FILE"]
		if file == "" || !mountsSecretFile(w.pod.Spec, w.pod.Spec.Containers[0], file, secret, "seed") {
			t.Errorf("%s: SCOUT_NATS_NKEY_FILE=%q is not the key seed of its own Secret %s mounted read-only", where, file, secret)
		}
		secrets = append(secrets, secret)
		wantProvision := "false"
		if w.kind == "Job" {
			wantProvision = "true"
		}
		if env["SCOUT_NATS_PROVISION"] != wantProvision {
			t.Errorf("%s: SCOUT_NATS_PROVISION=%q, want %s", where, env["SCOUT_NATS_PROVISION"], wantProvision)
		}
		nu, err := url.Parse(env["SCOUT_NATS_URL"])
		if err != nil {
			t.Errorf("%s: SCOUT_NATS_URL: %v", where, err)
			continue
		}
		if want.natsTLS {
			if ca := env["SCOUT_NATS_TLS_CA"]; ca == "" || !mountsSecretFile(w.pod.Spec, w.pod.Spec.Containers[0], ca, "scout-nats-ca", "ca.crt") {
				t.Errorf("%s: SCOUT_NATS_TLS_CA=%q is not the key ca.crt of the Secret scout-nats-ca mounted read-only", where, ca)
			}
			if nu.Scheme != "tls" {
				t.Errorf("%s: SCOUT_NATS_URL=%s, want tls://", where, nu)
			}
		}
		if want.leafNode && env["SCOUT_NATS_JS_DOMAIN"] == "" {
			t.Errorf("%s: no SCOUT_NATS_JS_DOMAIN behind a leaf node", where)
		}
		if !want.leafNode && env["SCOUT_NATS_JS_DOMAIN"] != "" {
			t.Errorf("%s: SCOUT_NATS_JS_DOMAIN in the hub's cluster", where)
		}
	}
	sort.Strings(secrets)
	for i := 1; i < len(secrets); i++ {
		if secrets[i] == secrets[i-1] {
			t.Errorf("two workloads share the NATS user Secret %s", secrets[i])
		}
	}
	if want.natsUsers && len(secrets) == 0 {
		t.Error("no workload with a NATS user")
	}
}
