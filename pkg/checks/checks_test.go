package checks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	f, err := Load("testdata/good.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := len(f.Checks); got != 2 {
		t.Fatalf("checks = %d, want 2", got)
	}
	acme := f.Lookup("acme-roundtrip")
	if acme == nil {
		t.Fatal("acme-roundtrip not found")
	}
	want := Settings{Interval: 20 * time.Minute, Timeout: 10 * time.Minute, Slow: 2 * time.Minute,
		RetryDelay: 45 * time.Second, Retries: 1, Quorum: 2}
	if acme.Settings != want {
		t.Errorf("acme settings = %+v, want DESIGN defaults with the file's retry_delay %+v", acme.Settings, want)
	}
	if acme.Name != "acme-roundtrip" {
		t.Errorf("name defaults to id, got %q", acme.Name)
	}
	if strings.Join(acme.Sites, ",") != "eu-west,us-east" {
		t.Errorf("sites default to the file's, got %v", acme.Sites)
	}
	if acme.Line != 6 {
		t.Errorf("line = %d, want 6", acme.Line)
	}
	g := f.Lookup("globex-fast")
	if g.Interval != 10*time.Minute || g.Timeout != 5*time.Minute || g.Slow != time.Minute || g.Retries != 2 {
		t.Errorf("globex overrides not applied: %+v", g.Settings)
	}
	if g.Quorum != 3 || g.EffectiveQuorum() != 1 {
		t.Errorf("quorum %d effective %d, want 3 capped at 1 site", g.Quorum, g.EffectiveQuorum())
	}
	if got := f.ForSite("us-east"); len(got) != 1 || got[0].ID != "acme-roundtrip" {
		t.Errorf("ForSite(us-east) = %v", got)
	}
	if got := f.AllSites(); strings.Join(got, ",") != "eu-west,us-east" {
		t.Errorf("AllSites = %v", got)
	}
}

// TestLoadErrors loads every testdata/*.yaml that has a .err file beside it
// and compares the reported problems, one per line, with the file.
func TestLoadErrors(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.err")
	if len(files) == 0 {
		t.Fatal("no testdata/*.err files")
	}
	for _, errFile := range files {
		name := strings.TrimSuffix(filepath.Base(errFile), ".err")
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(errFile)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join("testdata", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(name+".yaml", data)
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			if got := err.Error() + "\n"; got != string(want) {
				t.Errorf("errors:\n%s\nwant:\n%s", got, want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("no *Error in %T", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist wrapped", err)
	}
}
