package checks

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// positions maps a check file's structure to lines, so that every problem,
// whatever found it (the YAML decoder or validation), names the line of the
// field, the check it belongs to and the field itself.
type positions struct {
	checks []checkPos
}

type checkPos struct {
	line, end int            // the item's first line and the last line before the next item
	id        string         // the item's id, as written
	keys      map[string]int // field path ("timeout", "contacts[0].phone") -> line
}

// positionsOf reads data (already known to be YAML) as a node tree.
func positionsOf(data []byte) positions {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return positions{}
	}
	root := doc.Content[0]
	var p positions
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "checks" {
			continue
		}
		items := root.Content[i+1].Content
		for j, item := range items {
			cp := checkPos{line: item.Line, end: int(^uint(0) >> 1), keys: map[string]int{}}
			if j+1 < len(items) {
				cp.end = items[j+1].Line - 1
			}
			collectKeys(item, "", cp.keys)
			if item.Kind == yaml.MappingNode {
				for k := 0; k+1 < len(item.Content); k += 2 {
					if item.Content[k].Value == "id" {
						cp.id = item.Content[k+1].Value
					}
				}
			}
			p.checks = append(p.checks, cp)
		}
	}
	return p
}

// collectKeys records the line of every key below n, by path.
func collectKeys(n *yaml.Node, prefix string, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for k := 0; k+1 < len(n.Content); k += 2 {
			path := prefix + n.Content[k].Value
			out[path] = n.Content[k].Line
			collectKeys(n.Content[k+1], path, out)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			path := fmt.Sprintf("%s[%d]", prefix, i)
			out[path] = item.Line
			collectKeys(item, path+".", out)
		}
	}
}

// at returns the check item containing line (nil when none does).
func (p positions) at(line int) *checkPos {
	for i := range p.checks {
		if line >= p.checks[i].line && line <= p.checks[i].end {
			return &p.checks[i]
		}
	}
	return nil
}

// line returns the line of field in check item index, or 0.
func (p positions) line(index int, field string) int {
	if index < 0 || index >= len(p.checks) {
		return 0
	}
	return p.checks[index].keys[field]
}

// fieldAt returns the field of a check item whose key is on line.
func (cp *checkPos) fieldAt(line int) string {
	best := ""
	for k, l := range cp.keys {
		if l == line && (best == "" || len(k) < len(best)) {
			best = k
		}
	}
	return best
}

// decodeErrors turns yaml.v3's "line N: ..." messages into *Error values
// naming the check and field where the line falls inside a check.
func decodeErrors(name string, te *yaml.TypeError, pos positions) []error {
	var errs []error
	for _, m := range te.Errors {
		line, msg := 0, m
		if n, rest, ok := splitLine(m); ok {
			line, msg = n, rest
		}
		e := &Error{File: name, Line: line}
		cp := pos.at(line)
		if cp != nil {
			e.Check = cp.id
			if e.Check == "" {
				e.Check = fmt.Sprintf("#%d", indexOf(pos, cp)+1)
			}
		}
		if field, ok := unknownField(msg); ok {
			e.Field = field
			e.Msg = "unknown field"
			if cp != nil && strings.Contains(msg, "checks.rawOAuth") {
				e.Field = "oauth." + field
				if s := suggest(field, knownOAuthFields()); s != "" {
					e.Msg += fmt.Sprintf("; did you mean oauth.%s?", s)
				}
			} else if cp != nil {
				if s := suggest(field, knownCheckFields()); s != "" {
					e.Msg += fmt.Sprintf("; did you mean %s?", s)
				}
			} else if strings.Contains(msg, "checks.rawSettings") {
				e.Field = "defaults." + field
				if s := suggest(field, yamlNames(reflect.TypeOf(rawSettings{}))); s != "" {
					e.Msg += fmt.Sprintf("; did you mean defaults.%s?", s)
				}
			} else if s := suggest(field, []string{"sites", "defaults", "checks"}); s != "" {
				e.Msg += fmt.Sprintf("; did you mean %s?", s)
			}
		} else {
			if cp != nil {
				e.Field = cp.fieldAt(line)
			}
			e.Msg = strings.NewReplacer("in type checks.rawCheck", "in a check", "in type checks.rawFile", "at the top level",
				"in type checks.rawSettings", "in defaults", "in type checks.Contact", "in a contact",
				"in type checks.rawService", "in a check", "in type checks.rawOAuth", "in an oauth block").Replace(msg)
		}
		errs = append(errs, e)
	}
	return errs
}

func indexOf(p positions, cp *checkPos) int {
	for i := range p.checks {
		if &p.checks[i] == cp {
			return i
		}
	}
	return -1
}

// unknownField parses yaml.v3's "field X not found in type T".
func unknownField(msg string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, "field ")
	if !ok {
		return "", false
	}
	field, _, ok := strings.Cut(rest, " not found in type")
	return field, ok
}

// knownCheckFields lists the keys a check may have, from the YAML tags.
func knownCheckFields() []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if strings.HasSuffix(tag, ",inline") {
				walk(f.Type)
				continue
			}
			if name, _, _ := strings.Cut(tag, ","); name != "" && name != "-" {
				out = append(out, name)
			}
		}
	}
	walk(reflect.TypeOf(rawCheck{}))
	return out
}

// knownOAuthFields lists the keys of a service check's oauth block.
func knownOAuthFields() []string { return yamlNames(reflect.TypeOf(rawOAuth{})) }

// yamlNames returns the YAML keys of struct type t's fields.
func yamlNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// suggest returns the known word closest to w (at most 2 edits away).
func suggest(w string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(w, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sortErrors orders problems by line, so that a file reads top to bottom.
func sortErrors(errs []error) []error {
	sort.SliceStable(errs, func(i, j int) bool {
		var a, b *Error
		errors.As(errs[i], &a)
		errors.As(errs[j], &b)
		if a == nil || b == nil {
			return a == nil && b != nil
		}
		return a.Line < b.Line
	})
	return errs
}

// typeError reports a value of the wrong shape from an UnmarshalYAML
// method as a *yaml.TypeError, so that the decoder records it and goes on
// with the rest of the file instead of stopping there.
func typeError(format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(format, args...)}}
}
