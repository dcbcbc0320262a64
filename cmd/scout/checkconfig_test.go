package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckConfigPhones: scout check-config refuses a contact number that
// cannot be dialled (too short here: a digit is missing) and names the
// file, line, check and field; a good file lists its checks with the
// numbers SMS will go to, in E.164.
func TestCheckConfigPhones(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "checks.yaml")
	write := func(phone string) {
		t.Helper()
		data := "sites: [eu-west]\nchecks:\n  - id: acme\n    kind: roundtrip\n    customer: acme\n    target: scout@acme.example\n" +
			"    contacts:\n      - name: Ops\n        phone: \"" + phone + "\"\n"
		if err := os.WriteFile(file, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	getenv := func(string) string { return "" }

	write("+1555555010")
	var out bytes.Buffer
	err := run(context.Background(), []string{"check-config", file}, getenv, &out)
	if exitCode(err) != 2 {
		t.Fatalf("check-config of a short number: err %v (exit %d), want exit 2", err, exitCode(err))
	}
	want := file + `:9: check "acme": contacts[0].phone: "+1555555010" is too short for a number of region US (+1)`
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\nwant it to contain %q", err, want)
	}

	write("+44 (0)20 7946 0018")
	out.Reset()
	if err := run(context.Background(), []string{"check-config", file}, getenv, &out); err != nil {
		t.Fatalf("check-config of a good number: %v", err)
	}
	// The number SMS go to, in E.164: the trunk prefix "(0)" is dropped.
	if !strings.Contains(out.String(), "contacts: Ops +442079460018\n") || !strings.Contains(out.String(), "1 checks OK") {
		t.Errorf("output %q", out.String())
	}
}
