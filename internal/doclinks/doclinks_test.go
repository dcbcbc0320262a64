package doclinks

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// root is the repository root, seen from this package's directory.
const root = "../.."

// pending are link targets that another branch adds (see the comment of
// each). A pending target that exists fails the test, so that the entry is
// removed once the branch is merged and the target is checked like any
// other.
var pending = map[string]string{}

var (
	// inlineLink matches [text](target) and [text](target "title").
	inlineLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan   = regexp.MustCompile("`[^`]*`")
	headingRE  = regexp.MustCompile(`^(#{1,6})\s+(.*?)\s*#*\s*$`)
	linkText   = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// doc is one Markdown file: its links and the anchors its headings make.
type doc struct {
	links   []link
	anchors map[string]bool
}

type link struct {
	line   int
	target string
}

// parse reads a Markdown file, ignoring fenced code blocks and code spans
// when it collects links (headings keep their code spans, whose text is
// part of the anchor).
func parse(path string) (*doc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &doc{anchors: map[string]bool{}}
	seen := map[string]int{}
	fence := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			slug := Slug(m[2])
			if k := seen[slug]; k > 0 {
				d.anchors[fmt.Sprintf("%s-%d", slug, k)] = true
			} else {
				d.anchors[slug] = true
			}
			seen[slug]++
		}
		for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
			d.links = append(d.links, link{line: n, target: m[1]})
		}
	}
	return d, sc.Err()
}

// Slug is GitHub's anchor for a heading's text: link targets and
// formatting dropped, lower case, every character that is not a letter,
// digit, '_', '-' or space dropped, spaces turned into hyphens.
func Slug(heading string) string {
	heading = linkText.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || r == '_' || r == '-':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Service checks (kinds `smtp`, `imap`, `pop3`)": "service-checks-kinds-smtp-imap-pop3",
		"`scout dev`: the demo host `demo.scout.test`":  "scout-dev-the-demo-host-demoscouttest",
		"Probe keys (`SCOUT_PROBE_KEYS`)":               "probe-keys-scout_probe_keys",
		"6. Test it: `scout-reflector check`":           "6-test-it-scout-reflector-check",
		"Hourly p50 / p90 / p99 round-trip time":        "hourly-p50--p90--p99-round-trip-time",
		"See [the guide](guide.md) — Łódź":              "see-the-guide--łódź",
		"The test mail stack (`scripts/mailstack.sh`)":  "the-test-mail-stack-scriptsmailstacksh",
	} {
		if got := Slug(heading); got != want {
			t.Errorf("Slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestLinksResolve checks every relative link of README.md and docs/*.md:
// the file exists, and a #anchor names a heading of the target Markdown
// file.
func TestLinksResolve(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	docs := map[string]*doc{}
	load := func(path string) (*doc, error) {
		path = filepath.Clean(path)
		if d, ok := docs[path]; ok {
			return d, nil
		}
		d, err := parse(path)
		if err == nil {
			docs[path] = d
		}
		return d, err
	}
	checked := 0
	for _, file := range files {
		d, err := load(file)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, file)
		for _, l := range d.links {
			if isExternal(l.target) {
				continue
			}
			checked++
			where := fmt.Sprintf("%s:%d: link %s", rel, l.line, l.target)
			path, anchor, _ := strings.Cut(l.target, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
			}
			repoPath, _ := filepath.Rel(root, target)
			repoPath = filepath.ToSlash(repoPath)
			if why, ok := pending[repoPath]; ok {
				if _, err := os.Stat(target); err == nil {
					t.Errorf("%s: %s exists now: remove it from pending (%s)", where, repoPath, why)
				}
				continue
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: %s does not exist", where, repoPath)
				continue
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				t.Errorf("%s: an anchor into a file that is not Markdown", where)
				continue
			}
			td, err := load(target)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if !td.anchors[anchor] {
				t.Errorf("%s: no heading of %s has the anchor #%s", where, repoPath, anchor)
			}
		}
	}
	t.Logf("%d relative links in %d files resolve", checked, len(files))
	if checked < 20 {
		t.Errorf("only %d relative links found: the parser is broken", checked)
	}
}

func isExternal(target string) bool {
	for _, p := range []string{"http://", "https://", "mailto:"} {
		if strings.HasPrefix(target, p) {
			return true
		}
	}
	return false
}
