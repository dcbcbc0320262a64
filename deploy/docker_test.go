package deploy

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// imageServices are the values of the Dockerfile's SERVICE argument: every
// service, and the operator CLI that the provisioning Job runs.
var imageServices = []string{"scheduler", "sender", "receiver", "evaluator", "notifier", "recorder", "web", "scout"}

const (
	dockerfile   = "docker/Dockerfile"
	buildScript  = "docker/build.sh"
	dockerignore = "../.dockerignore"
)

// TestDockerfile checks what can be checked without a Docker engine: one
// multi-stage file with ARG SERVICE, base images pinned by tag, a numeric
// non-root user, OCI labels, and the build done by build.sh.
func TestDockerfile(t *testing.T) {
	df := readFile(t, dockerfile)
	for _, want := range []string{
		"ARG SERVICE\n",
		"sh deploy/docker/build.sh \"${SERVICE}\"",
		"USER 65532:65532\n",
		"org.opencontainers.image.version=\"${VERSION}\"",
		"org.opencontainers.image.source=",
		"ENTRYPOINT [\"/usr/local/bin/entrypoint\"]",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("%s lacks %q", dockerfile, want)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(df, -1)); n != 2 {
		t.Errorf("%s: %d stages, want 2 (build, runtime)", dockerfile, n)
	}
	images := regexp.MustCompile(`(?m)^ARG (GO_IMAGE|RUNTIME_IMAGE)=(\S+)$`).FindAllStringSubmatch(df, -1)
	if len(images) != 2 {
		t.Fatalf("%s: want ARG GO_IMAGE=... and ARG RUNTIME_IMAGE=..., found %v", dockerfile, images)
	}
	for _, m := range images {
		ref := m[2]
		tag := ref[strings.LastIndex(ref, "/")+1:]
		if !strings.Contains(tag, ":") || strings.HasSuffix(ref, ":latest") {
			t.Errorf("%s: %s=%s is not pinned to a tag", dockerfile, m[1], ref)
		}
	}
	if !strings.Contains(images[1][2], "distroless/static") || !strings.HasSuffix(images[1][2], ":nonroot") {
		t.Errorf("%s: runtime image %s, want distroless static nonroot", dockerfile, images[1][2])
	}
	if !regexp.MustCompile(`golang:1\.26\.\d+-`).MatchString(images[0][2]) {
		t.Errorf("%s: build image %s is not Go 1.26 (go.work)", dockerfile, images[0][2])
	}
	m := regexp.MustCompile(`(?m)^services="([^"]+)"$`).FindStringSubmatch(readFile(t, buildScript))
	if m == nil || !slices.Equal(strings.Fields(m[1]), imageServices) {
		t.Errorf("%s: services %v, want %v", buildScript, m, imageServices)
	}
}

// buildContext copies the files that .dockerignore lets into a Docker
// build context (from the repository root) into a new directory, as
// `docker build` would send them.
func buildContext(t *testing.T) string {
	t.Helper()
	f, err := os.Open(dockerignore)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	// A directory that is excluded is still walked when an exception
	// ("!pattern") may re-include something below it.
	var exceptions []string
	for _, p := range pm.Patterns() {
		if p.Exclusion() {
			exceptions = append(exceptions, p.String())
		}
	}
	dst := t.TempDir()
	root := ".."
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if excluded && !slices.ContainsFunc(exceptions, func(e string) bool { return strings.HasPrefix(e, rel+"/") }) {
				return filepath.SkipDir
			}
			return nil
		}
		if excluded || !d.Type().IsRegular() {
			return nil
		}
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return copyFile(path, target)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestImageBinaries builds every SERVICE's binary with build.sh (the
// Dockerfile's build step) from a copy of the build context that
// .dockerignore produces, checks that it is static, and runs it: each
// service stops at once with a configuration error that names itself (the
// environment is empty), the CLI prints its provision command's help.
func TestImageBinaries(t *testing.T) {
	ctx := buildContext(t)
	for _, leaked := range []string{".git", "docs", "test/e2e", "deploy/k8s", "deploy/go.mod", "cmd/scout/provision_test.go"} {
		if _, err := os.Stat(filepath.Join(ctx, leaked)); err == nil {
			t.Errorf("the build context holds %s", leaked)
		}
	}
	out := t.TempDir()
	for _, service := range imageServices {
		t.Run(service, func(t *testing.T) {
			bctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			build := exec.CommandContext(bctx, "sh", "deploy/docker/build.sh", service, out)
			build.Dir = ctx
			build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "VERSION=9.9.9-test", "REVISION=0123456789abcdef")
			if msg, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build.sh %s: %v\n%s", service, err, msg)
			}
			bin := filepath.Join(out, service)
			checkStatic(t, bin)
			// The version and revision given to build.sh are linked in.
			if v, err := exec.Command(bin, "--version").Output(); err != nil ||
				!strings.HasPrefix(string(v), service+" 9.9.9-test (revision 0123456789ab, go") {
				t.Errorf("%s --version: %v, %q", service, err, v)
			}

			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			run := exec.CommandContext(rctx, bin)
			if service == "scout" {
				run.Args = append(run.Args, "provision", "--help")
			}
			run.Env = []string{"SCOUT_CHECKS_FILE=/nonexistent/checks.yaml", "SCOUT_NATS_URL=nats://127.0.0.1:1", "SCOUT_HTTP_ADDR="}
			run.Stdout, run.Stderr = &stdout, &stderr
			err := run.Run()
			if service == "scout" {
				if err != nil || !strings.Contains(stdout.String(), "scout provision [flags]") {
					t.Errorf("scout provision --help: %v\n%s%s", err, stdout.String(), stderr.String())
				}
				return
			}
			if rctx.Err() != nil {
				t.Fatalf("%s did not stop on an empty environment", service)
			}
			if code := run.ProcessState.ExitCode(); code != 1 || !strings.HasPrefix(stderr.String(), service+": ") {
				t.Errorf("%s with an empty environment: exit %d, stderr %q; want exit 1 and a configuration error naming the service", service, code, stderr.String())
			}
		})
	}
}

// checkStatic fails when bin is not a statically linked ELF executable.
func checkStatic(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (program header %s)", bin, p.Type)
		}
	}
}
