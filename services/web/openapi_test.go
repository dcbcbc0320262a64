package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// apiDoc is the part of services/web/openapi.yaml the test reads.
type apiDoc struct {
	Paths map[string]map[string]struct {
		Responses map[string]struct {
			Ref     string                             `yaml:"$ref"`
			Content map[string]struct{ Schema schema } `yaml:"content"`
		} `yaml:"responses"`
	} `yaml:"paths"`
	Components struct {
		Schemas map[string]schema `yaml:"schemas"`
	} `yaml:"components"`
}

type schema struct {
	Ref        string            `yaml:"$ref"`
	Type       string            `yaml:"type"`
	Required   []string          `yaml:"required"`
	Properties map[string]schema `yaml:"properties"`
	Items      *schema           `yaml:"items"`
	Enum       []string          `yaml:"enum"`
}

// TestOpenAPI loads the embedded OpenAPI document as served, and checks
// that every documented path answers 200 on a populated service and that
// each answer has the documented required properties, types and enum
// values, all the way down.
func TestOpenAPI(t *testing.T) {
	s := newStack(t, fixture)
	s.start(Config{}, false)
	populate(t, s)
	code, served := s.get("/api/v1/openapi.yaml", false)
	if code != http.StatusOK || served != string(openAPI) {
		t.Fatalf("GET /api/v1/openapi.yaml: %d", code)
	}
	var doc apiDoc
	if err := yaml.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if len(paths) < 5 {
		t.Fatalf("openapi.yaml documents %d paths", len(paths))
	}
	for _, p := range paths {
		get, ok := doc.Paths[p]["get"]
		if !ok {
			t.Errorf("%s: no get", p)
			continue
		}
		ok200, found := get.Responses["200"]
		if !found {
			t.Errorf("%s: no 200 response documented", p)
			continue
		}
		// A check path is read for each kind of evidence: none, a
		// service check's dialogue, a bounced round trip's everything.
		concrete := []string{p}
		if strings.Contains(p, "{id}") {
			concrete = nil
			for _, check := range []string{"acme-roundtrip", "acme-smtp", "globex-roundtrip"} {
				concrete = append(concrete, strings.ReplaceAll(p, "{id}", check))
			}
		}
		for _, p := range concrete {
			t.Run(strings.TrimPrefix(p, "/api/v1/"), func(t *testing.T) {
				code, body := s.get(p, true)
				if code != http.StatusOK {
					t.Fatalf("GET %s: %d %s", p, code, body)
				}
				js, isJSON := ok200.Content["application/json"]
				if !isJSON {
					return // the YAML document itself, compared above
				}
				var v any
				if err := json.Unmarshal([]byte(body), &v); err != nil {
					t.Fatal(err)
				}
				for _, err := range conform(doc.Components.Schemas, js.Schema, v, "$") {
					t.Error(err)
				}
			})
		}
	}
	// The example data reaches every schema (no vacuous pass on empty lists).
	var d CheckDetail
	s.getJSON("/api/v1/checks/acme-smtp", &d)
	if len(d.Results) == 0 || d.Check.Sites[0].Timings == nil {
		t.Errorf("acme-smtp detail is thin: %+v", d)
	}
	s.getJSON("/api/v1/checks/globex-roundtrip", &d)
	if e := d.Results[0].Evidence; e == nil || e.Submission == nil || e.Bounce == nil || len(e.Hops) == 0 || e.Deferred == nil {
		t.Errorf("globex-roundtrip's newest result lacks parts of its evidence: %+v", d.Results[0])
	}
}

// conform checks v against sc (required properties, types, enums,
// recursively through properties, items and $ref) and returns every
// mismatch with its JSON path.
func conform(defs map[string]schema, sc schema, v any, at string) []error {
	if sc.Ref != "" {
		name := strings.TrimPrefix(sc.Ref, "#/components/schemas/")
		def, ok := defs[name]
		if !ok {
			return []error{fmt.Errorf("%s: $ref %s is not defined", at, sc.Ref)}
		}
		return conform(defs, def, v, at)
	}
	var errs []error
	switch sc.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return []error{fmt.Errorf("%s: %T, want an object", at, v)}
		}
		for _, r := range sc.Required {
			if _, ok := obj[r]; !ok {
				errs = append(errs, fmt.Errorf("%s: required property %q is missing", at, r))
			}
		}
		for name, val := range obj {
			prop, ok := sc.Properties[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: property %q is not documented", at, name))
				continue
			}
			errs = append(errs, conform(defs, prop, val, at+"."+name)...)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return []error{fmt.Errorf("%s: %T, want an array", at, v)}
		}
		for i, item := range arr {
			errs = append(errs, conform(defs, *sc.Items, item, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return []error{fmt.Errorf("%s: %T, want a string", at, v)}
		}
		if len(sc.Enum) > 0 && !contains(sc.Enum, s) {
			errs = append(errs, fmt.Errorf("%s: %q is not one of %v", at, s, sc.Enum))
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok {
			return []error{fmt.Errorf("%s: %T, want a %s", at, v, sc.Type)}
		}
		if sc.Type == "integer" && f != float64(int64(f)) {
			errs = append(errs, fmt.Errorf("%s: %v is not an integer", at, f))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return []error{fmt.Errorf("%s: %T, want a boolean", at, v)}
		}
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
