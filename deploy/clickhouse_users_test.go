package deploy

import (
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestClickHouseReadOnlyUser: the ClickHouse of dependencies/clickhouse has, next
// to the writer scout, the user scout_reader (Grafana, analysts; docs/
// analytics.md): profile readonly = 1, database scout only, password from
// the Secret scout-clickhouse key reader-password. ClickHouse itself is not
// run on this file here: Debian's 18.16 predates from_env and
// changeable_in_readonly.
func TestClickHouseReadOnlyUser(t *testing.T) {
	r := render(t, filepath.Join(k8sDir, "dependencies", "clickhouse"))
	var cm *corev1.ConfigMap
	for _, o := range r.all("ConfigMap") {
		if strings.HasPrefix(o.name, "clickhouse-users") {
			cm = o.obj.(*corev1.ConfigMap)
		}
	}
	if cm == nil {
		t.Fatal("no ConfigMap clickhouse-users in dependencies/clickhouse")
	}
	type setting struct {
		Max                string    `xml:"max"`
		ChangeableReadonly *struct{} `xml:"changeable_in_readonly"`
	}
	var users struct {
		Profiles struct {
			Reader struct {
				Readonly    string `xml:"readonly"`
				Constraints struct {
					MaxExecutionTime *setting `xml:"max_execution_time"`
				} `xml:"constraints"`
			} `xml:"scout_reader"`
		} `xml:"profiles"`
		Users struct {
			Reader struct {
				Password struct {
					FromEnv string `xml:"from_env,attr"`
				} `xml:"password"`
				Profile   string   `xml:"profile"`
				Databases []string `xml:"allow_databases>database"`
			} `xml:"scout_reader"`
			Writer struct {
				Profile string `xml:"profile"`
			} `xml:"scout"`
		} `xml:"users"`
	}
	if err := xml.Unmarshal([]byte(cm.Data["scout.xml"]), &users); err != nil {
		t.Fatalf("users.xml: %v", err)
	}
	reader := users.Users.Reader
	if users.Profiles.Reader.Readonly != "1" || reader.Profile != "scout_reader" {
		t.Errorf("scout_reader: profile %q with readonly %q, want profile scout_reader with readonly 1", reader.Profile, users.Profiles.Reader.Readonly)
	}
	if len(reader.Databases) != 1 || reader.Databases[0] != "scout" {
		t.Errorf("scout_reader may read %v, want only [scout]", reader.Databases)
	}
	if users.Users.Writer.Profile == "scout_reader" {
		t.Error("the writer scout has the read-only profile")
	}
	if c := users.Profiles.Reader.Constraints.MaxExecutionTime; c == nil || c.ChangeableReadonly == nil || c.Max == "" {
		t.Error("scout_reader: max_execution_time must stay changeable in readonly mode (Grafana sets it on every query), with a max")
	}
	// The password's variable comes from the Secret's reader-password.
	found := false
	for _, w := range r.workloads() {
		for _, c := range w.pod.Spec.Containers {
			for _, e := range c.Env {
				if e.Name == reader.Password.FromEnv && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
					e.ValueFrom.SecretKeyRef.Name == "scout-clickhouse" && e.ValueFrom.SecretKeyRef.Key == "reader-password" {
					found = true
				}
			}
		}
	}
	if reader.Password.FromEnv == "" || !found {
		t.Errorf("scout_reader's password (from_env %q) is not the Secret scout-clickhouse key reader-password in a container", reader.Password.FromEnv)
	}
}
