package platform

import (
	"fmt"
	"io"

	"github.com/emailscout/emailscout/pkg/buildinfo"
	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfoCollector is the gauge scout_build_info{version,revision,goversion},
// always 1, of this binary's build (pkg/buildinfo): join it to any series
// by pod to see which release runs where.
func BuildInfoCollector() prometheus.Collector {
	in := buildinfo.Read()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "scout_build_info",
		Help: "Always 1; the labels name this binary's release version, source revision and Go version.",
		ConstLabels: prometheus.Labels{
			"version": in.Version, "revision": in.Revision, "goversion": in.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// printVersion writes "<name> <version> (revision <commit>, <go version>)".
func printVersion(w io.Writer, name string) {
	fmt.Fprintf(w, "%s %s\n", name, buildinfo.Read())
}

// wantsVersion is true when args ask for the version and nothing else.
func wantsVersion(args []string) bool {
	return len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version")
}
