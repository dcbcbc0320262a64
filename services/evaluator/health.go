package evaluator

import (
	"fmt"
	"time"

	"github.com/emailscout/emailscout/pkg/events"
)

// monitorErrorsDown is the number of consecutive monitor_error results after
// which a site's monitor counts as down (it does not vote).
const monitorErrorsDown = 3

// SiteHealth is the monitor's own health at one site (KV key
// health.<site>): can it submit probes and get results? It is for the
// platform team; customers never hear of it.
type SiteHealth struct {
	Site   string    `json:"site"`
	Status string    `json:"status"` // events.MonitorOK, MonitorDegraded, MonitorDown
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	// ConsecutiveMonitorErrors counts monitor_error results since the last
	// result that was not one.
	ConsecutiveMonitorErrors int       `json:"consecutive_monitor_errors"`
	LastMonitorError         string    `json:"last_monitor_error,omitempty"`
	LastGood                 time.Time `json:"last_good,omitempty"` // last result that was not a monitor_error
	// CanaryDown names a canary check whose verdict at this site is down.
	CanaryDown string `json:"canary_down,omitempty"`
}

// eligible reports whether the site may vote: its monitor is not down
// (failing its canary, or monitor errors in a row). A site that has not
// reported at all yet counts as eligible, which only makes an incident
// harder to open: it cannot vote down without results.
func (h *SiteHealth) eligible() bool {
	return h == nil || h.Status != events.MonitorDown
}

// observe updates h with one result at its site and reports whether the
// status changed. canaryVerdict is the site's verdict on the result's check
// when that check is a canary ("" otherwise).
func (h *SiteHealth) observe(r *events.CheckResult, canaryVerdict string, now time.Time) bool {
	if r.Status == events.StatusMonitorError {
		h.ConsecutiveMonitorErrors++
		h.LastMonitorError = fmt.Sprintf("%s: %s %s", r.CheckID, r.ErrorClass, r.Error)
	} else {
		h.ConsecutiveMonitorErrors = 0
		h.LastGood = now
	}
	switch canaryVerdict {
	case VerdictDown:
		h.CanaryDown = r.CheckID
	case VerdictUp, VerdictSlow, VerdictDegraded:
		if h.CanaryDown == r.CheckID {
			h.CanaryDown = ""
		}
	}
	status, reason := events.MonitorOK, "results arrive"
	switch {
	case h.CanaryDown != "":
		status, reason = events.MonitorDown, "canary check "+h.CanaryDown+" is down at this site"
	case h.ConsecutiveMonitorErrors >= monitorErrorsDown:
		status, reason = events.MonitorDown, fmt.Sprintf("%d monitor errors in a row; last: %s", h.ConsecutiveMonitorErrors, h.LastMonitorError)
	case h.ConsecutiveMonitorErrors > 0:
		status, reason = events.MonitorDegraded, "monitor error: "+h.LastMonitorError
	}
	changed := status != h.Status
	if changed {
		h.Since = now
	}
	h.Status, h.Reason = status, reason
	return changed
}
