package main

import (
	"errors"
	"fmt"
	"math"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cpuPeriodMicros is the CFS period of a CPU limit: 100 ms, the kernel's
// and Kubernetes' default, so that a limit here behaves as a pod's
// resources.limits.cpu does.
const cpuPeriodMicros = 100_000

// cpuLimit is a cgroup with a CFS CPU quota (the cgroup v2 cpu.max, or
// cpu.cfs_quota_us of cgroup v1's cpu controller) that processes are
// added to: what a container runtime makes of a Kubernetes CPU limit
// (Linux kernel documentation, "CFS Bandwidth Control").
type cpuLimit struct {
	cores float64
	v1    cgroup1.Cgroup
	v2    *cgroup2.Manager
}

// errNoCPULimit wraps every error of newCPULimit: the machine has no cgroup
// CPU controller this process may write to (it needs root).
var errNoCPULimit = errors.New("cannot limit CPU with a cgroup (it needs root and a writable cgroup cpu controller)")

// newCPULimit creates the cgroup /<name> with a quota of cores CPUs per
// period (cores > 0; 0.25 is a quarter of one CPU). Delete removes it once
// its processes have ended.
func newCPULimit(name string, cores float64) (*cpuLimit, error) {
	if cores <= 0 || math.IsInf(cores, 0) || math.IsNaN(cores) {
		return nil, fmt.Errorf("%w: %v is not a positive number of cores", errNoCPULimit, cores)
	}
	quota := int64(math.Round(cores * cpuPeriodMicros))
	period := uint64(cpuPeriodMicros)
	l := &cpuLimit{cores: cores}
	var err error
	switch cgroups.Mode() {
	case cgroups.Unified:
		l.v2, err = cgroup2.NewManager("/sys/fs/cgroup", "/"+name,
			&cgroup2.Resources{CPU: &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)}})
	case cgroups.Legacy, cgroups.Hybrid:
		l.v1, err = cgroup1.New(cgroup1.StaticPath("/"+name),
			&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}},
			cgroup1.WithHiearchy(cgroup1.SingleSubsystem(cgroup1.Default, cgroup1.Cpu)))
	default:
		err = errors.New("no cgroup file system is mounted")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errNoCPULimit, name, err)
	}
	return l, nil
}

// add moves process pid, all its threads, into the cgroup.
func (l *cpuLimit) add(pid int) error {
	var err error
	if l.v2 != nil {
		err = l.v2.AddProc(uint64(pid))
	} else {
		err = l.v1.Add(cgroup1.Process{Pid: pid})
	}
	if err != nil {
		return fmt.Errorf("%w: add process %d: %v", errNoCPULimit, pid, err)
	}
	return nil
}

// throttled returns the CFS periods so far in which the cgroup ran and
// those in which it used up its quota and waited (cpu.stat's nr_periods
// and nr_throttled).
func (l *cpuLimit) throttled() (periods, throttled uint64, err error) {
	if l.v2 != nil {
		m, err := l.v2.Stat()
		if err != nil || m.CPU == nil {
			return 0, 0, err
		}
		return m.CPU.NrPeriods, m.CPU.NrThrottled, nil
	}
	m, err := l.v1.Stat(cgroup1.IgnoreNotExist)
	if err != nil || m.CPU == nil || m.CPU.Throttling == nil {
		return 0, 0, err
	}
	return m.CPU.Throttling.Periods, m.CPU.Throttling.ThrottledPeriods, nil
}

// delete removes the cgroup; its processes must have ended.
func (l *cpuLimit) delete() error {
	if l.v2 != nil {
		return l.v2.Delete()
	}
	return l.v1.Delete()
}
