package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emailscout/emailscout/internal/platform"
	"github.com/emailscout/emailscout/pkg/checks"
	"github.com/emailscout/emailscout/pkg/events"
	"github.com/emailscout/emailscout/services/evaluator"
	"github.com/emailscout/emailscout/services/scheduler"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

func init() {
	commands = append(commands, newScaleCmd, newScaleRoleCmd)
}

type scaleOptions struct {
	checks   []int
	replicas []int
	sites    int
	interval time.Duration
	rate     float64
	warmup   time.Duration
	window   time.Duration
	workers  int
	// evaluatorCPU limits each evaluator replica to this many cores (a
	// cgroup CPU quota, as a Kubernetes CPU limit does); 0: no limit.
	evaluatorCPU float64
	jsonPath     string
	dataDir      string
}

func newScaleCmd(func(string) string) *cobra.Command {
	var o scaleOptions
	var checksList, replicasList string
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "Simulate N checks x sites through the real scheduler and evaluator, with instant fake senders and receivers",
		Long: `scout scale drives the real scheduler and the real evaluator, each in its own
process (this binary, re-executed), on an embedded NATS server with
JetStream on a temporary directory, on loopback. Senders and receivers are
replaced by an instant fake in this process: for every test.scheduled it
publishes mail.sent and mail.returned at once, so that every attempt ends
ok.

For every N of --checks (one evaluator replica), then for every count of
--replicas (at the last N), it runs N checks x --sites sites at one test per
check and site per --interval (the offered rate is sites x N / interval),
waits --warmup, measures for --for and prints per run: the offered and the
scheduled rate; scheduling lateness p50/p99/max (when the fake got the
test vs the slot it was due, ScheduledAt, for every interval test that
arrived while measuring); check.result per second, in
total and per evaluator replica; the evaluator's backlog at the end; each
service's heap in use after GC and its CPU; the stream's and the KV
buckets' bytes per test. With two or more N it prints each service's heap
per check (the slope between the smallest and the largest N) and its fixed
part. With several replica counts it prints what each added replica
adds, in units of one replica at the same N.

--evaluator-cpu C runs each evaluator replica under a CPU limit of C cores
(a cgroup CPU quota, as Kubernetes applies a pod's resources.limits.cpu;
it needs root). On a machine where NATS would run out of CPU before the
replicas do, a limit small enough that replicas x C plus NATS fit the
cores makes the replicas the bottleneck, so that what a replica adds can
be measured at all (docs/capacity.md). Each run then prints the share of
its CFS periods in which each replica used up its quota ("periods
throttled"): near 100 % means the limit, not NATS, bounded it.

It is a measurement, not a test: the figures move with the machine's load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.checks, err = intList(checksList); err != nil {
				return fmt.Errorf("--checks: %w", err)
			}
			if o.replicas, err = intList(replicasList); err != nil {
				return fmt.Errorf("--replicas: %w", err)
			}
			return runScale(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&checksList, "checks", "2000,8000", "comma-separated check counts N (one run each, one evaluator replica)")
	f.StringVar(&replicasList, "replicas", "2,4", "comma-separated evaluator replica counts, run at the last N (empty: none)")
	f.IntVar(&o.sites, "sites", 3, "sites per check")
	f.DurationVar(&o.interval, "interval", time.Minute, "every check's interval (production default: 20m; shorter to offer 1 M checks' rate with fewer checks)")
	f.Float64Var(&o.rate, "rate", 0, "offered tests/s at every N: sets each run's interval to sites x N / rate (overrides --interval; 1 M checks x 3 sites every 20m is 2500)")
	f.DurationVar(&o.warmup, "warmup", 10*time.Second, "run this long before measuring")
	f.DurationVar(&o.window, "for", 60*time.Second, "measure this long")
	f.IntVar(&o.workers, "workers", 0, "SCOUT_EVALUATOR_WORKERS of each replica (0: the default)")
	f.Float64Var(&o.evaluatorCPU, "evaluator-cpu", 0, "limit each evaluator replica to this many cores, as a Kubernetes CPU limit does (a cgroup CPU quota; needs root), so that the replicas and not NATS run out first (0: no limit)")
	f.StringVar(&o.jsonPath, "json", "", "also write the figures to this file as JSON")
	f.StringVar(&o.dataDir, "data-dir", "", "JetStream data (default: a temporary directory, removed afterwards)")
	return cmd
}

func intList(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", p)
		}
		out = append(out, n)
	}
	return out, nil
}

// roleReport is what a service process says about itself when asked.
type roleReport struct {
	Role         string  `json:"role"`
	HeapInuse    uint64  `json:"heap_inuse"`     // after runtime.GC
	HeapAlloc    uint64  `json:"heap_alloc"`     // live objects, after runtime.GC
	ChecksAlloc  uint64  `json:"checks_alloc"`   // live objects of the check file (HeapAlloc delta)
	HeapChecks   uint64  `json:"heap_checks"`    // after GC, check file parsed, service not started
	HeapBase     uint64  `json:"heap_base"`      // after GC, before the check file
	CPUSeconds   float64 `json:"cpu_seconds"`    // user + system since start
	Published    float64 `json:"published"`      // scheduler: tests published
	Results      float64 `json:"results"`        // evaluator: check.result revision 1
	Goroutines   int     `json:"goroutines"`     //
	HeapSysBytes uint64  `json:"heap_sys_bytes"` //
}

// scaleRun is the figures of one run.
type scaleRun struct {
	Checks           int     `json:"checks"`
	Sites            int     `json:"sites"`
	Replicas         int     `json:"evaluator_replicas"`
	IntervalSeconds  float64 `json:"interval_seconds"`
	OfferedPerSec    float64 `json:"offered_tests_per_second"`
	ScheduledPerSec  float64 `json:"scheduled_tests_per_second"`
	LatenessP50MS    float64 `json:"lateness_p50_ms"`
	LatenessP99MS    float64 `json:"lateness_p99_ms"`
	LatenessMaxMS    float64 `json:"lateness_max_ms"`
	LatenessSamples  int     `json:"lateness_samples"`
	DecisionsPerSec  float64 `json:"decisions_per_second"`
	PerReplicaPerSec []float64
	BacklogAtEnd     uint64  `json:"evaluator_backlog_at_end"`
	SchedulerHeap    uint64  `json:"scheduler_heap_inuse"`
	SchedulerLive    uint64  `json:"scheduler_heap_alloc"`
	EvaluatorLive    uint64  `json:"evaluator_heap_alloc"`
	ChecksLive       uint64  `json:"check_file_heap_alloc"`
	SchedulerChecks  uint64  `json:"scheduler_heap_check_file"`
	EvaluatorHeap    uint64  `json:"evaluator_heap_inuse"` // the busiest replica
	EvaluatorChecks  uint64  `json:"evaluator_heap_check_file"`
	SchedulerCPU     float64 `json:"scheduler_cpu_cores"`
	EvaluatorCPU     []float64
	HarnessCPU       float64 `json:"nats_and_fakes_cpu_cores"`
	// EvaluatorCPULimit is each replica's CPU limit in cores (0: none);
	// EvaluatorThrottled the share of its CFS periods in which it used up
	// its quota while measuring.
	EvaluatorCPULimit  float64   `json:"evaluator_cpu_limit_cores,omitempty"`
	EvaluatorThrottled []float64 `json:"evaluator_throttled_share,omitempty"`
	StreamBytesPerMsg  float64   `json:"stream_bytes_per_message"`
	StreamMsgsPerTest  float64   `json:"stream_messages_per_test"`
	KVBytesPerTest     float64   `json:"kv_bytes_per_test"`
	WindowSeconds      float64   `json:"window_seconds"`
}

type scaleFigures struct {
	Runs []scaleRun `json:"runs"`
	// Per check (slope between the smallest and the largest N) and fixed
	// part (intercept), heap in use after GC.
	SchedulerBytesPerCheck float64        `json:"scheduler_bytes_per_check"`
	SchedulerLivePerCheck  float64        `json:"scheduler_live_bytes_per_check"`
	EvaluatorLivePerCheck  float64        `json:"evaluator_live_bytes_per_check"`
	ChecksLivePerCheck     float64        `json:"check_file_live_bytes_per_check"`
	SchedulerFixedBytes    float64        `json:"scheduler_fixed_bytes"`
	EvaluatorBytesPerCheck float64        `json:"evaluator_bytes_per_check"`
	EvaluatorFixedBytes    float64        `json:"evaluator_fixed_bytes"`
	ReplicaScaling         []replicaScale `json:"replica_scaling,omitempty"`
}

// replicaScale compares a run of several evaluator replicas with the run
// of one at the same checks: TimesOne is its decisions/s over the one
// replica's, AddedPerReplica (TimesOne - 1) / (replicas - 1), what each
// replica beyond the first adds in units of one replica.
type replicaScale struct {
	Replicas        int     `json:"replicas"`
	TimesOne        float64 `json:"times_one_replica"`
	AddedPerReplica float64 `json:"added_per_replica"`
}

// replicaScaling compares every run of two or more replicas with the run
// of one replica at the same number of checks, when there is one that
// decided anything.
func replicaScaling(runs []scaleRun) []replicaScale {
	var out []replicaScale
	for _, r := range runs {
		if r.Replicas < 2 {
			continue
		}
		for _, one := range runs {
			if one.Replicas == 1 && one.Checks == r.Checks && one.DecisionsPerSec > 0 {
				times := r.DecisionsPerSec / one.DecisionsPerSec
				out = append(out, replicaScale{Replicas: r.Replicas, TimesOne: times, AddedPerReplica: (times - 1) / float64(r.Replicas-1)})
				break
			}
		}
	}
	return out
}

// throttling reads each limit's CFS periods and throttled periods (zeros
// where cpu.stat cannot be read: a figure, not a reason to stop the run).
func throttling(limits []*cpuLimit) [][2]uint64 {
	out := make([][2]uint64, len(limits))
	for i, l := range limits {
		p, t, _ := l.throttled()
		out[i] = [2]uint64{p, t}
	}
	return out
}

func runScale(ctx context.Context, o scaleOptions, stdout io.Writer) error {
	if len(o.checks) == 0 || o.sites < 1 || o.interval <= 0 || o.window <= 0 || o.rate < 0 {
		return errors.New("--checks, --sites, --interval and --for must be positive")
	}
	var fig scaleFigures
	type plan struct{ n, r int }
	var plans []plan
	for _, n := range o.checks {
		plans = append(plans, plan{n, 1})
	}
	for _, r := range o.replicas {
		if r > 1 {
			plans = append(plans, plan{o.checks[len(o.checks)-1], r})
		}
	}
	for _, p := range plans {
		if o.rate > 0 {
			o.interval = time.Duration(float64(p.n*o.sites) / o.rate * float64(time.Second)).Round(time.Millisecond)
		}
		fmt.Fprintf(stdout, "run: %d checks x %d sites every %v (%.0f tests/s offered), %d evaluator replica(s); warm-up %v, measuring %v ...\n",
			p.n, o.sites, o.interval, float64(p.n*o.sites)/o.interval.Seconds(), p.r, o.warmup, o.window)
		run, err := scaleOnce(ctx, o, p.n, p.r)
		if err != nil {
			return err
		}
		printScaleRun(stdout, run)
		fig.Runs = append(fig.Runs, run)
	}
	var ones []scaleRun
	for _, r := range fig.Runs {
		if r.Replicas == 1 {
			ones = append(ones, r)
		}
	}
	if len(ones) >= 2 {
		a, b := ones[0], ones[len(ones)-1]
		if b.Checks != a.Checks {
			dn := float64(b.Checks - a.Checks)
			fig.SchedulerBytesPerCheck = (float64(b.SchedulerHeap) - float64(a.SchedulerHeap)) / dn
			fig.SchedulerFixedBytes = float64(a.SchedulerHeap) - fig.SchedulerBytesPerCheck*float64(a.Checks)
			fig.EvaluatorBytesPerCheck = (float64(b.EvaluatorHeap) - float64(a.EvaluatorHeap)) / dn
			fig.EvaluatorFixedBytes = float64(a.EvaluatorHeap) - fig.EvaluatorBytesPerCheck*float64(a.Checks)
			fmt.Fprintf(stdout, "\nheap in use after GC, per check (slope %d -> %d checks) and fixed part:\n", a.Checks, b.Checks)
			fmt.Fprintf(stdout, "  scheduler: %7.0f B/check + %5.1f MiB\n", fig.SchedulerBytesPerCheck, fig.SchedulerFixedBytes/(1<<20))
			fmt.Fprintf(stdout, "  evaluator: %7.0f B/check + %5.1f MiB\n", fig.EvaluatorBytesPerCheck, fig.EvaluatorFixedBytes/(1<<20))
			fmt.Fprintf(stdout, "  together:  %7.0f B/check (target < 1024)\n", fig.SchedulerBytesPerCheck+fig.EvaluatorBytesPerCheck)
			fig.SchedulerLivePerCheck = (float64(b.SchedulerLive) - float64(a.SchedulerLive)) / dn
			fig.EvaluatorLivePerCheck = (float64(b.EvaluatorLive) - float64(a.EvaluatorLive)) / dn
			fig.ChecksLivePerCheck = (float64(b.ChecksLive) - float64(a.ChecksLive)) / dn
			fmt.Fprintf(stdout, "live heap (HeapAlloc) per check: scheduler %.0f B, evaluator %.0f B, together %.0f B; of which the parsed check file %.0f B in each process\n",
				fig.SchedulerLivePerCheck, fig.EvaluatorLivePerCheck, fig.SchedulerLivePerCheck+fig.EvaluatorLivePerCheck, fig.ChecksLivePerCheck)
		}
	}
	fig.ReplicaScaling = replicaScaling(fig.Runs)
	if len(fig.ReplicaScaling) > 0 {
		fmt.Fprintf(stdout, "\nreplica scaling (decisions/s against one replica at the same checks; target: each added replica adds >= 0.8x one):\n")
		for _, s := range fig.ReplicaScaling {
			fmt.Fprintf(stdout, "  %d replicas: %.2fx one replica; each added replica adds %.2fx one\n", s.Replicas, s.TimesOne, s.AddedPerReplica)
		}
	}
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(fig, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func printScaleRun(w io.Writer, r scaleRun) {
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	if r.LatenessSamples == 0 {
		fmt.Fprintf(w, "  scheduled:  %7.1f tests/s (offered %.1f); lateness unknown: no interval test arrived while measuring\n",
			r.ScheduledPerSec, r.OfferedPerSec)
	} else {
		fmt.Fprintf(w, "  scheduled:  %7.1f tests/s (offered %.1f); lateness p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d tests)\n",
			r.ScheduledPerSec, r.OfferedPerSec, r.LatenessP50MS, r.LatenessP99MS, r.LatenessMaxMS, r.LatenessSamples)
	}
	per := make([]string, len(r.PerReplicaPerSec))
	for i, v := range r.PerReplicaPerSec {
		per[i] = fmt.Sprintf("%.1f", v)
	}
	fmt.Fprintf(w, "  decisions:  %7.1f check.result/s (per replica: %s); evaluator backlog at the end: %d events\n",
		r.DecisionsPerSec, strings.Join(per, ", "), r.BacklogAtEnd)
	cpu := make([]string, len(r.EvaluatorCPU))
	for i, v := range r.EvaluatorCPU {
		cpu[i] = fmt.Sprintf("%.2f", v)
	}
	fmt.Fprintf(w, "  heap after GC: scheduler %.1f MiB (check file %.1f MiB), evaluator %.1f MiB (check file %.1f MiB)\n",
		mib(r.SchedulerHeap), mib(r.SchedulerChecks), mib(r.EvaluatorHeap), mib(r.EvaluatorChecks))
	fmt.Fprintf(w, "  live heap after GC: scheduler %.1f MiB, evaluator %.1f MiB; the check file's own %.1f MiB in each\n",
		mib(r.SchedulerLive), mib(r.EvaluatorLive), mib(r.ChecksLive))
	fmt.Fprintf(w, "  CPU (cores): scheduler %.2f, evaluator(s) %s, NATS server + fakes %.2f\n", r.SchedulerCPU, strings.Join(cpu, ", "), r.HarnessCPU)
	if r.EvaluatorCPULimit > 0 {
		th := make([]string, len(r.EvaluatorThrottled))
		for i, v := range r.EvaluatorThrottled {
			th[i] = fmt.Sprintf("%.0f %%", 100*v)
		}
		fmt.Fprintf(w, "  evaluator CPU limit: %.2f cores each; periods throttled: %s\n", r.EvaluatorCPULimit, strings.Join(th, ", "))
	}
	fmt.Fprintf(w, "  JetStream: %.1f stream messages per test, %.0f B per stream message, KV %.0f B written per test\n",
		r.StreamMsgsPerTest, r.StreamBytesPerMsg, r.KVBytesPerTest)
}

// scaleOnce runs one configuration on a fresh NATS server.
func scaleOnce(ctx context.Context, o scaleOptions, n, replicas int) (scaleRun, error) {
	run := scaleRun{Checks: n, Sites: o.sites, Replicas: replicas, IntervalSeconds: o.interval.Seconds(), EvaluatorCPULimit: o.evaluatorCPU,
		OfferedPerSec: float64(n*o.sites) / o.interval.Seconds(), WindowSeconds: o.window.Seconds()}
	dir, err := os.MkdirTemp(o.dataDir, "scout-scale-")
	if err != nil {
		return run, err
	}
	defer os.RemoveAll(dir)
	checkFile := filepath.Join(dir, "checks.yaml")
	if err := os.WriteFile(checkFile, scaleCheckFile(n, o.sites, o.interval), 0o644); err != nil {
		return run, err
	}
	ns, err := startNATS(filepath.Join(dir, "nats"), -1)
	if err != nil {
		return run, err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return run, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return run, err
	}
	if err := platform.Provision(ctx, js, platform.ProvisionOptions{Replicas: 1}); err != nil {
		return run, err
	}

	fake := &fakeMail{js: js, measureFrom: time.Now().Add(o.warmup)}
	sub, err := nc.Subscribe(events.SubjectTestScheduled+".>", fake.onScheduled)
	if err != nil {
		return run, err
	}
	defer sub.Unsubscribe()
	var results atomic.Int64
	rsub, err := nc.Subscribe(events.SubjectCheckResult+".>", func(*nats.Msg) { results.Add(1) })
	if err != nil {
		return run, err
	}
	defer rsub.Unsubscribe()
	for _, s := range []*nats.Subscription{sub, rsub} {
		_ = s.SetPendingLimits(-1, -1)
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	args := []string{"--nats", ns.ClientURL(), "--check-file", checkFile}
	sched, err := startRole(rctx, "scheduler", args)
	if err != nil {
		return run, err
	}
	defer sched.stop()
	var evals []*roleProc
	var limits []*cpuLimit
	for i := 0; i < replicas; i++ {
		var limit *cpuLimit
		if o.evaluatorCPU > 0 {
			if limit, err = newCPULimit(fmt.Sprintf("scout-scale-%d-evaluator-%d", os.Getpid(), i), o.evaluatorCPU); err != nil {
				return run, fmt.Errorf("--evaluator-cpu: %w", err)
			}
			defer func() { // after the process has stopped (defers run last first)
				if err := limit.delete(); err != nil {
					fmt.Fprintf(os.Stderr, "scale: --evaluator-cpu: %v\n", err)
				}
			}()
			limits = append(limits, limit)
		}
		p, err := startRole(rctx, "evaluator", append(slices.Clone(args), "--workers", strconv.Itoa(o.workers)))
		if err != nil {
			return run, err
		}
		defer p.stop()
		if limit != nil {
			if err := limit.add(p.cmd.Process.Pid); err != nil {
				return run, fmt.Errorf("--evaluator-cpu: %w", err)
			}
		}
		evals = append(evals, p)
	}
	all := append([]*roleProc{sched}, evals...)

	select {
	case <-time.After(time.Until(fake.measureFrom)):
	case <-ctx.Done():
		return run, ctx.Err()
	}
	before, err := reportAll(all)
	if err != nil {
		return run, err
	}
	res0, cpu0 := results.Load(), selfCPU()
	throttle0 := throttling(limits)
	st0, kv0, err := jsBytes(ctx, js)
	if err != nil {
		return run, err
	}
	start := time.Now()
	fake.startMeasuring()
	select {
	case <-time.After(o.window):
	case <-ctx.Done():
		return run, ctx.Err()
	}
	elapsed := time.Since(start).Seconds()
	fake.stopMeasuring()
	res1, cpu1 := results.Load(), selfCPU()
	throttle1 := throttling(limits)
	for i := range throttle1 {
		if dp := throttle1[i][0] - throttle0[i][0]; dp > 0 {
			run.EvaluatorThrottled = append(run.EvaluatorThrottled, float64(throttle1[i][1]-throttle0[i][1])/float64(dp))
		}
	}
	lat := fake.latenesses() // one per interval test received while measuring
	st1, kv1, err := jsBytes(ctx, js)
	if err != nil {
		return run, err
	}
	after, err := reportAll(all)
	if err != nil {
		return run, err
	}
	for _, d := range events.EvaluatorConsumer().Durables() {
		if ci, err := js.Consumer(ctx, events.StreamName, d); err == nil {
			if info, err := ci.Info(ctx); err == nil {
				run.BacklogAtEnd += info.NumPending + uint64(info.NumAckPending)
			}
		}
	}
	tests := float64(len(lat))
	run.ScheduledPerSec = tests / elapsed
	run.DecisionsPerSec = float64(res1-res0) / elapsed
	run.HarnessCPU = (cpu1 - cpu0) / elapsed
	if tests > 0 {
		run.StreamMsgsPerTest = float64(st1.msgs-st0.msgs) / tests
		run.KVBytesPerTest = float64(kv1.bytes-kv0.bytes) / tests
	}
	if st1.msgs > st0.msgs {
		run.StreamBytesPerMsg = float64(st1.bytes-st0.bytes) / float64(st1.msgs-st0.msgs)
	}
	run.LatenessSamples = len(lat)
	run.LatenessP50MS, run.LatenessP99MS = percentile(lat, 0.5), percentile(lat, 0.99)
	if len(lat) > 0 {
		run.LatenessMaxMS = slices.Max(lat)
	}
	run.SchedulerHeap, run.SchedulerChecks = after[0].HeapInuse, after[0].HeapChecks-after[0].HeapBase
	run.SchedulerLive, run.ChecksLive = after[0].HeapAlloc, after[0].ChecksAlloc
	run.SchedulerCPU = (after[0].CPUSeconds - before[0].CPUSeconds) / elapsed
	for i := range evals {
		b, a := before[i+1], after[i+1]
		run.PerReplicaPerSec = append(run.PerReplicaPerSec, (a.Results-b.Results)/elapsed)
		run.EvaluatorCPU = append(run.EvaluatorCPU, (a.CPUSeconds-b.CPUSeconds)/elapsed)
		if a.HeapInuse > run.EvaluatorHeap {
			run.EvaluatorHeap, run.EvaluatorChecks = a.HeapInuse, a.HeapChecks-a.HeapBase
		}
		run.EvaluatorLive = max(run.EvaluatorLive, a.HeapAlloc)
	}
	cancel()
	fake.wait()
	return run, nil
}

type jsUsage struct{ msgs, bytes uint64 }

// jsBytes returns the event stream's and the KV buckets' totals.
func jsBytes(ctx context.Context, js jetstream.JetStream) (stream, kv jsUsage, err error) {
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return stream, kv, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return stream, kv, err
	}
	stream = jsUsage{info.State.Msgs, info.State.Bytes}
	for _, b := range []string{events.BucketEvaluator, events.BucketIncidents} {
		s, err := js.Stream(ctx, "KV_"+b)
		if err != nil {
			return stream, kv, err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return stream, kv, err
		}
		// Bytes written: the bucket keeps the last revision per key, so
		// its size alone undercounts; LastSeq counts every write.
		kv.msgs += info.State.LastSeq
		kv.bytes += info.State.Bytes
	}
	return stream, kv, nil
}

// scaleCheckFile is n round-trip checks at every site, all at interval,
// each with one contact (as a customer's check has; a check without one is
// a warning of the check file, which would be kept in memory per check).
func scaleCheckFile(n, sites int, interval time.Duration) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "defaults: {interval: %s, timeout: 2m, slow: 1m, retry_delay: 30s, retries: 1, quorum: 2}\nsites: [", interval)
	for s := 0; s < sites; s++ {
		if s > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "site-%d", s)
	}
	b.WriteString("]\nchecks:\n")
	for c := 0; c < n; c++ {
		fmt.Fprintf(&b, "  - {id: scale-%d, customer: cust-%d, kind: roundtrip, target: probe%d@cust-%d.test, contacts: [{name: on-call, phone: \"+15555550100\"}]}\n",
			c, c%100, c, c%100)
	}
	return []byte(b.String())
}

// fakeMail stands in for every sender and receiver: a test is submitted
// and comes back at once.
type fakeMail struct {
	js          jetstream.JetStream
	measureFrom time.Time

	mu        sync.Mutex
	measuring bool
	stopped   bool
	lateness  []float64
	errOnce   sync.Once
}

func (f *fakeMail) onScheduled(m *nats.Msg) {
	now := time.Now()
	var ev events.TestScheduled
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return
	}
	f.observe(&ev, now)
	started := now.UTC()
	reflected := started
	sent := events.MailSent{V: events.SchemaVersion, TestID: ev.TestID, CheckID: ev.CheckID, Site: ev.Site, Attempt: ev.Attempt,
		Status: events.SentOK, StartedAt: started, SentAt: started, MessageID: ev.TestID + "@scale.test", Hop: "127.0.0.1:25"}
	ret := events.MailReturned{V: events.SchemaVersion, TestID: ev.TestID, CheckID: ev.CheckID, Site: ev.Site, Attempt: ev.Attempt,
		KeyID: "k1", StartedAt: started, ReflectedAt: &reflected, ReceivedAt: started, Via: "smtp", Hops: 2, Path: "reflector"}
	for _, e := range []events.Event{sent, ret} {
		if err := f.publish(e); err != nil {
			f.errOnce.Do(func() { fmt.Fprintln(os.Stderr, "scale: fake publish:", err) })
		}
	}
}

// observe records an interval test that arrives while measuring: its
// lateness (arrival less ScheduledAt), whenever it was due: a scheduler
// that falls behind delivers tests due during the warm-up, and their
// lateness is what it is late by. (Counting only the tests due inside the
// window left out every late one that had not arrived by its end: an
// overloaded run showed p99 0.0 ms over 0 tests.)
func (f *fakeMail) observe(ev *events.TestScheduled, now time.Time) {
	if ev.Reason != events.ReasonInterval {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.measuring && !f.stopped {
		f.lateness = append(f.lateness, float64(now.Sub(ev.ScheduledAt).Microseconds())/1000)
	}
}

func (f *fakeMail) publish(e events.Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(e.Subject())
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, e.MsgID())
	_, err = f.js.PublishMsgAsync(msg)
	return err
}

func (f *fakeMail) startMeasuring() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.measuring = true
}

func (f *fakeMail) stopMeasuring() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
}

func (f *fakeMail) latenesses() []float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lateness)
}

func (f *fakeMail) wait() {
	select {
	case <-f.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
	}
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// roleProc is one service process of the simulation.
type roleProc struct {
	role  string
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	done  chan struct{}
	mu    sync.Mutex
	ended bool
}

// scaleExecutable is the binary the roles run (this one; a test sets its
// own, which dispatches by scaleRoleEnv).
var scaleExecutable = os.Executable

// scaleRoleEnv, when set in a process's environment, names the role
// arguments for a test binary (see scale_test.go).
const scaleRoleEnv = "SCOUT_SCALE_ROLE_ARGS"

func startRole(ctx context.Context, role string, args []string) (*roleProc, error) {
	exe, err := scaleExecutable()
	if err != nil {
		return nil, err
	}
	full := append([]string{"scale-role", role}, args...)
	cmd := exec.Command(exe, full...)
	cmd.Env = append(os.Environ(), scaleRoleEnv+"="+strings.Join(full, "\x1f"))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &roleProc{role: role, cmd: cmd, in: in, out: bufio.NewScanner(out), done: make(chan struct{})}
	p.out.Buffer(make([]byte, 64<<10), 1<<20)
	go func() { _ = cmd.Wait(); close(p.done) }()
	go func() {
		select {
		case <-ctx.Done():
			p.stop()
		case <-p.done:
		}
	}()
	return p, nil
}

func (p *roleProc) report() (roleReport, error) {
	var r roleReport
	if _, err := io.WriteString(p.in, "report\n"); err != nil {
		return r, fmt.Errorf("%s: %w", p.role, err)
	}
	if !p.out.Scan() {
		return r, fmt.Errorf("%s ended: %v", p.role, p.out.Err())
	}
	return r, json.Unmarshal(p.out.Bytes(), &r)
}

// stop closes the process's stdin (it stops and exits) and waits until it
// has ended, killing it after 10 s. Every call waits: the cgroup of a CPU
// limit can be removed only once its process has ended.
func (p *roleProc) stop() {
	p.mu.Lock()
	if !p.ended {
		p.ended = true
		p.in.Close()
	}
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// reportAll asks every process for its report, in order.
func reportAll(ps []*roleProc) ([]roleReport, error) {
	var out []roleReport
	for _, p := range ps {
		r, err := p.report()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func newScaleRoleCmd(func(string) string) *cobra.Command {
	var natsURL, checkFile string
	var workers int
	cmd := &cobra.Command{
		Use:    "scale-role scheduler|evaluator",
		Short:  "One service process of scout scale (internal)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScaleRole(cmd.Context(), args[0], natsURL, checkFile, workers, os.Stdin, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&natsURL, "nats", "", "NATS URL")
	cmd.Flags().StringVar(&checkFile, "check-file", "", "check file")
	cmd.Flags().IntVar(&workers, "workers", 0, "evaluator workers (0: default)")
	return cmd
}

func heapAfterGC() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// runScaleRole runs one service until stdin closes, answering every
// "report" line with a roleReport on stdout.
func runScaleRole(ctx context.Context, role, natsURL, checkFile string, workers int, stdin io.Reader, stdout io.Writer) error {
	base := heapAfterGC()
	data, err := os.ReadFile(checkFile)
	if err != nil {
		return err
	}
	f, err := checks.Parse(checkFile, data)
	if err != nil {
		return err
	}
	data = nil
	withChecks := heapAfterGC()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	var svc platform.Component
	counter := ""
	switch role {
	case "scheduler":
		// No catch-up: at start the slots that began just before are not
		// published in one burst (they would all be late).
		svc, err = scheduler.New(scheduler.Config{CatchUp: time.Millisecond},
			scheduler.Deps{Checks: f, Publisher: platform.JetStreamPublisher{JS: js}, Registerer: reg})
		counter = "scout_scheduler_tests_published_total"
	case "evaluator":
		svc, err = evaluator.New(evaluator.Config{Workers: workers}, evaluator.Deps{Checks: f, JS: js, Registerer: reg})
		counter = "scout_evaluator_results_total"
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- svc.Run(ctx) }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case err := <-errc:
			if err == nil {
				err = errors.New("stopped")
			}
			return fmt.Errorf("%s: %w", role, err)
		case l, ok := <-lines:
			if !ok {
				cancel()
				<-errc
				return nil
			}
			if l != "report" {
				continue
			}
			r := roleReport{Role: role, HeapBase: base.HeapInuse, HeapChecks: withChecks.HeapInuse, CPUSeconds: selfCPU(),
				Goroutines: runtime.NumGoroutine(), ChecksAlloc: withChecks.HeapAlloc - base.HeapAlloc}
			ms := heapAfterGC()
			r.HeapInuse, r.HeapAlloc, r.HeapSysBytes = ms.HeapInuse, ms.HeapAlloc, ms.HeapSys
			v := sumCounter(reg, counter)
			if role == "scheduler" {
				r.Published = v
			} else {
				r.Results = v
			}
			b, _ := json.Marshal(r)
			if _, err := fmt.Fprintf(stdout, "%s\n", b); err != nil {
				return err
			}
		}
	}
}

// sumCounter sums every series of the counter name in reg.
func sumCounter(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
