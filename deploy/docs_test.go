package deploy

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// The documents the deployment must agree with, relative to this package.
const (
	configurationDoc = "../docs/configuration.md"
	deployDoc        = "../docs/deploy.md"
	secretExample    = "k8s/secret.example.yaml"
)

func readFile(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// documentedVariables returns every environment variable that
// docs/configuration.md documents: the names in backquotes in the first
// column of its tables.
func documentedVariables(t testing.TB) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	for _, line := range strings.Split(readFile(t, configurationDoc), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			vars[m[1]] = true
		}
	}
	if len(vars) < 20 {
		t.Fatalf("%s documents only %d variables: is its table format still | `NAME` | ... |?", configurationDoc, len(vars))
	}
	return vars
}

func TestDocumentedVariablesAreFound(t *testing.T) {
	vars := documentedVariables(t)
	for _, v := range []string{"SCOUT_NATS_URL", "SCOUT_PROBE_KEYS", "TWILIO_AUTH_TOKEN", "SCOUT_CLICKHOUSE_DSN", "SCOUT_EVALUATOR_FAILOVER"} {
		if !vars[v] {
			t.Errorf("%s not found among the documented variables", v)
		}
	}
	if vars["SCOUT_NO_SUCH_VARIABLE"] {
		t.Error("an undocumented variable is found")
	}
}

// secretRef is one key of one Secret.
type secretRef struct{ secret, key string }

// secretRefs returns every Secret key the rendered kustomizations
// reference, with where.
func secretRefs(t *testing.T) map[secretRef][]string {
	t.Helper()
	refs := map[secretRef][]string{}
	for _, dir := range kustomizations(t) {
		if strings.Contains(dir, "components") {
			continue
		}
		r := render(t, dir)
		for _, w := range r.workloads() {
			for _, c := range w.pod.Spec.Containers {
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						ref := secretRef{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}
						refs[ref] = append(refs[ref], dir+": "+w.name+" "+e.Name)
					}
				}
				for _, ef := range c.EnvFrom {
					if ef.SecretRef != nil {
						t.Errorf("%s: %s: envFrom a Secret; reference each key with secretKeyRef", dir, w.name)
					}
				}
			}
			for _, v := range w.pod.Spec.Volumes {
				switch {
				case v.Projected != nil:
					t.Errorf("%s: %s: projected volume %s; mount each Secret's keys with items", dir, w.name, v.Name)
				case v.Secret != nil && len(v.Secret.Items) == 0:
					t.Errorf("%s: %s: Secret volume %s mounts every key of %s; name each key with items", dir, w.name, v.Name, v.Secret.SecretName)
				case v.Secret != nil:
					// A file (an NKey seed, a CA): each key is a reference.
					for _, it := range v.Secret.Items {
						ref := secretRef{v.Secret.SecretName, it.Key}
						refs[ref] = append(refs[ref], dir+": "+w.name+" volume "+v.Name)
					}
				}
			}
		}
	}
	// The NATS chart's values: the users' public keys (container.env) and
	// the server's certificate (config.*.tls.secretName).
	for _, f := range []string{natsValues, natsValuesDev} {
		v := readNATSValues(t, f)
		for name, e := range v.Container.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				ref := secretRef{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}
				refs[ref] = append(refs[ref], f+": container.env "+name)
			}
		}
		for what, tls := range map[string]chartTLS{"config.nats.tls": v.Config.NATS.TLS, "config.leafnodes.tls": v.Config.Leafnodes.TLS} {
			if tls.Enabled {
				for _, key := range []string{"tls.crt", "tls.key"} {
					ref := secretRef{tls.SecretName, key}
					refs[ref] = append(refs[ref], f+": "+what)
				}
			}
		}
	}
	return refs
}

// secretFamily maps the Secrets that exist once per NATS user to the one
// example of them in secret.example.yaml and the one row of docs/deploy.md
// that describe them all: scout-nats-<user> (key seed, the user's NKey
// seed; the example scout-nats-scheduler) and the keys <user> of
// scout-nats-users (the users' public keys; every one in the example).
func secretFamily(ref secretRef) (example, doc secretRef) {
	if rest, ok := strings.CutPrefix(ref.secret, "scout-nats-"); ok && ref.key == "seed" && rest != "users" && rest != "ca" {
		return secretRef{"scout-nats-scheduler", "seed"}, secretRef{"scout-nats-<user>", "seed"}
	}
	if ref.secret == "scout-nats-users" {
		return ref, secretRef{"scout-nats-users", "<user>"}
	}
	return ref, ref
}

// exampleSecrets decodes k8s/secret.example.yaml strictly.
func exampleSecrets(t *testing.T) map[string]*corev1.Secret {
	t.Helper()
	dec := strictDecoder(t)
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(readFile(t, secretExample))))
	secrets := map[string]*corev1.Secret{}
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", secretExample, err)
		}
		s, ok := obj.(*corev1.Secret)
		if !ok {
			t.Fatalf("%s holds a %T", secretExample, obj)
		}
		secrets[s.Name] = s
	}
	return secrets
}

// TestSecretsAreDescribed: every secretKeyRef of every manifest names a
// Secret and key that secret.example.yaml shows and docs/deploy.md
// describes, and the example holds nothing else and nothing real.
func TestSecretsAreDescribed(t *testing.T) {
	refs := secretRefs(t)
	if len(refs) == 0 {
		t.Fatal("no secretKeyRef found")
	}
	examples := exampleSecrets(t)
	doc := readFile(t, deployDoc)
	exampled := map[secretRef]bool{}
	for ref, where := range refs {
		ex, described := secretFamily(ref)
		exampled[ex] = true
		s, ok := examples[ex.secret]
		if !ok {
			t.Errorf("Secret %s (%s) is not in %s", ex.secret, where[0], secretExample)
		} else if _, ok := s.StringData[ex.key]; !ok {
			t.Errorf("Secret %s key %s (%s) is not in %s", ex.secret, ex.key, where[0], secretExample)
		}
		row := regexp.MustCompile("(?m)^\\|.*`" + regexp.QuoteMeta(described.secret) + "`.*`" + regexp.QuoteMeta(described.key) + "`.*\\|")
		if !row.MatchString(doc) {
			t.Errorf("%s does not describe Secret %s key %s in a table row (| `%s` | `%s` | ... |)", deployDoc, described.secret, described.key, described.secret, described.key)
		}
	}
	for name, s := range examples {
		if s.Namespace != "email-scout" {
			t.Errorf("%s: Secret %s is not in the namespace email-scout", secretExample, name)
		}
		if len(s.Data) > 0 {
			t.Errorf("%s: Secret %s has data; use stringData placeholders", secretExample, name)
		}
		for key, value := range s.StringData {
			if !exampled[secretRef{name, key}] {
				t.Errorf("%s: Secret %s key %s is referenced by no manifest", secretExample, name, key)
			}
			if !strings.Contains(strings.ToUpper(value), "CHANGE") && !strings.HasPrefix(value, "+1555555") {
				t.Errorf("%s: Secret %s key %s: %q does not look like a placeholder (CHANGE-ME)", secretExample, name, key, value)
			}
		}
	}
}

// applyKustomization matches the kubectl commands of docs/deploy.md that
// take a kustomization directory.
var applyKustomization = regexp.MustCompile("kubectl (?:apply|delete|diff)[^\\n]*? -k ([^\\s`)]+)")

// appliedKustomizations returns the directories (relative to this
// package, e.g. k8s/overlays/prod) that docs/deploy.md applies.
func appliedKustomizations(t testing.TB) map[string]bool {
	t.Helper()
	applied := map[string]bool{}
	for _, m := range applyKustomization.FindAllStringSubmatch(readFile(t, deployDoc), -1) {
		applied[strings.TrimPrefix(strings.TrimSuffix(m[1], "/"), "deploy/")] = true
	}
	return applied
}

// TestDeployDocCommands: the commands in docs/deploy.md name kustomizations
// that this test renders, and files that exist; every overlay is applied
// somewhere in it; the NATS chart version is the one the values name.
func TestDeployDocCommands(t *testing.T) {
	doc := readFile(t, deployDoc)
	rendered := map[string]bool{}
	for _, dir := range kustomizations(t) {
		rendered["deploy/"+filepath.ToSlash(dir)] = true
	}
	applied := map[string]bool{}
	for _, m := range applyKustomization.FindAllStringSubmatch(doc, -1) {
		path := strings.TrimSuffix(m[1], "/")
		applied[path] = true
		if !rendered[path] {
			t.Errorf("%s: `%s` names %s, which is not a kustomization under deploy/k8s", deployDoc, m[0], path)
		}
	}
	for _, dir := range overlays(t) {
		if !applied["deploy/"+filepath.ToSlash(dir)] {
			t.Errorf("%s never applies the overlay deploy/%s", deployDoc, dir)
		}
	}
	for _, must := range []string{"deploy/k8s/namespace", "deploy/k8s/dependencies/nats", "deploy/k8s/dependencies/clickhouse"} {
		if !applied[must] {
			t.Errorf("%s never applies %s", deployDoc, must)
		}
	}
	for _, m := range regexp.MustCompile("(?:-f|--values|-k|--set-file [^=\\s]+=) ?(deploy/[^\\s`)]+)").FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("%s: %s does not exist", deployDoc, m[1])
		}
	}
	for _, m := range regexp.MustCompile(`\]\(([^)#\s]+)`).FindAllStringSubmatch(doc, -1) {
		if strings.Contains(m[1], "://") {
			continue
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(deployDoc), m[1])); err != nil {
			t.Errorf("%s links %s, which does not exist", deployDoc, m[1])
		}
	}

	// One chart version: the doc's helm commands and the values files'.
	version := regexp.MustCompile(`helm upgrade --install nats nats/nats --version (\S+)`)
	versions := map[string]bool{}
	for _, m := range version.FindAllStringSubmatch(doc, -1) {
		versions[m[1]] = true
	}
	for _, f := range []string{"k8s/dependencies/nats/values.yaml", "k8s/dependencies/nats/values-dev.yaml"} {
		for _, m := range version.FindAllStringSubmatch(readFile(t, f), -1) {
			versions[m[1]] = true
		}
		if !strings.Contains(doc, "-f deploy/"+f) {
			t.Errorf("%s never installs the chart with %s", deployDoc, f)
		}
	}
	if len(versions) != 1 {
		t.Errorf("NATS chart versions in %s and the values files: %v, want one", deployDoc, versions)
	}

	// The release version the doc tells to build and deploy.
	_, release := releaseImages(t)
	if !strings.Contains(doc, "VERSION="+release) {
		t.Errorf("%s does not build the release %s (VERSION=%s)", deployDoc, release, release)
	}
	if lower := strings.ToLower(doc); !strings.Contains(lower, "no docker engine") || !strings.Contains(lower, "no kubernetes cluster") {
		t.Errorf("%s's testing section must say that no Docker engine and no Kubernetes cluster run here", deployDoc)
	}
}

func TestExampleSecretsCoverEveryKindOfSecret(t *testing.T) {
	got := []string{}
	for name := range exampleSecrets(t) {
		got = append(got, name)
	}
	slices.Sort(got)
	// Twilio, probe keys, relay credentials and ClickHouse (the brief of
	// issue 8), the web service's token; a new Secret must be added to the
	// example and the doc.
	// NATS (issue 17): the server's certificate, the CA that verifies it,
	// the users' public keys and (one example of) a user's seed.
	if want := []string{"nats-tls", "scout-clickhouse", "scout-nats-ca", "scout-nats-scheduler", "scout-nats-users", "scout-probe-keys", "scout-relay", "scout-twilio", "scout-web"}; !slices.Equal(got, want) {
		t.Errorf("example Secrets %v, want %v", got, want)
	}
}
