//go:build integration

package main

// The three-node cluster test runs in CI's integration step, on its own:
// three raft-replicated JetStream servers in one process are too slow to
// share two cores with the whole race-enabled unit suite.

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
	"github.com/nats-io/nats-server/v2/server"
)

// TestProvisionThreeNodeCluster provisions replicas 3 on a real three-node
// JetStream cluster on loopback, as the production Job does, then scales
// the stream and buckets down and up again.
func TestProvisionThreeNodeCluster(t *testing.T) {
	urls := startCluster(t, 3)
	natsURL := strings.Join(urls, ",")
	out, err := runProvision(t, map[string]string{"SCOUT_NATS_URL": natsURL, "SCOUT_STREAM_REPLICAS": "3"})
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	if want := "stream SCOUT: created (replicas 3, max age 7d, file storage)\n"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	js := jetStream(t, urls[1])
	for _, name := range []string{events.StreamName, kvStream(events.BucketEvaluator), kvStream(events.BucketIncidents), kvStream(events.BucketNotifications)} {
		if sc := mustStreamConfig(t, js, name); sc.Replicas != 3 {
			t.Errorf("%s: replicas %d, want 3", name, sc.Replicas)
		}
	}
	out, err = runProvision(t, nil, "--nats", natsURL, "--replicas", "3")
	if err != nil || strings.Count(out, ": unchanged (replicas 3,") != 1+len(events.Buckets) {
		t.Errorf("second run: %v\n%s", err, out)
	}
	out, err = runProvision(t, nil, "--nats", natsURL, "--replicas", "1")
	if err != nil || !strings.Contains(out, "stream SCOUT: updated (replicas 3 -> 1)\n") || !strings.Contains(out, "kv scout_incidents: updated (replicas 3 -> 1)\n") {
		t.Errorf("scale down: %v\n%s", err, out)
	}
}

// startCluster runs n JetStream servers clustered on loopback and returns
// their client URLs once JetStream has a meta leader.
func startCluster(t *testing.T, n int) []string {
	t.Helper()
	// Every server routes to every other, so the cluster ports are chosen
	// first.
	routes := make([]*url.URL, n)
	ports := make([]int, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	servers := make([]*server.Server, n)
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("scout-%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "scout-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		servers[i] = s
	}
	urls := make([]string, n)
	for i, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server %d not ready", i)
		}
		urls[i] = s.ClientURL()
	}
	// Placing a stream with replicas n needs a meta leader that has heard
	// from every peer, and every server current with the meta group.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ready := true
		leaderSeesAll := false
		for _, s := range servers {
			ready = ready && s.JetStreamIsCurrent()
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == n {
				leaderSeesAll = true
			}
		}
		if ready && leaderSeesAll {
			return urls
		}
		if time.Now().After(deadline) {
			t.Fatal("the JetStream cluster did not form in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
