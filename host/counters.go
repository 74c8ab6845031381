package host

import (
	"sync/atomic"

	"github.com/propolis-mqtt/propolis/abi"
)

// This file is the counters of an extension folder that outlive its
// versions: a reload starts a new extension with its folder's counters,
// so they only ever grow while the host lists the folder (Status), and
// go when the folder goes. They are plain atomics; Status copies them,
// and a metrics collector reads Status at scrape time (host imports no
// metrics library).

// folderCounters are one extension folder's counters.
type folderCounters struct {
	// folder is the folder's number (Status.Folder, Call.Folder).
	folder uint64
	// waits counts the calls that found no idle instance and waited for
	// one (pool.wait, pool.getAuth), whatever they got: once per call,
	// also when it waited on a stopped version and then on its successor
	// (Host.acquire).
	waits atomic.Int64
	// crashLoopStops counts the times the running version was stopped
	// after a crash loop (Host.fail).
	crashLoopStops atomic.Int64
	// reloads counts the times a new version replaced the running one
	// (Host.start).
	reloads atomic.Int64
	// services counts host service calls by abi.Service and status:
	// index service*len(abi.Statuses) + the status's row in abi.Statuses.
	services []atomic.Int64
}

func newFolderCounters() *folderCounters {
	return &folderCounters{services: make([]atomic.Int64, int(abi.NumServices)*len(abi.Statuses))}
}

// countService counts one call of a host function of service s that
// returned st (a length >= 0 is OK). Every host service call passes here,
// from instantiateHostFuncs' one wrapper, refusals included.
func (c *folderCounters) countService(s abi.Service, st int32) {
	c.services[int(s)*len(abi.Statuses)+statusRow(st)].Add(1)
}

// statusRows maps -code to a status code's row in abi.Statuses (codes are
// 0 and below).
var statusRows = func() []int {
	var rows []int
	for i, s := range abi.Statuses {
		for len(rows) <= int(-s.Code) {
			rows = append(rows, -1)
		}
		rows[-s.Code] = i
	}
	return rows
}()

// statusRow returns st's row in abi.Statuses: OK's for a result >= 0 (a
// length), INTERNAL's for a code ABI.md does not define (no body returns
// one).
func statusRow(st int32) int {
	if st >= 0 {
		st = abi.StatusOK
	}
	if n := -int(st); n < len(statusRows) && statusRows[n] >= 0 {
		return statusRows[n]
	}
	return statusRows[-abi.StatusInternal]
}

// ServiceCalls is one count of Status.ServiceCalls.
type ServiceCalls struct {
	// Service is the service's name (abi.ServiceNames), Status the
	// status code's (abi.Statuses: "OK", "RATE_LIMITED", ...).
	Service, Status string
	Calls           int64
}

// Refused is how many of the folder's service calls ended with status
// (an abi.Statuses name: "RATE_LIMITED", "NOT_PERMITTED", ...), every
// service together, read from ServiceCalls (the one count of them).
func (s Status) Refused(status string) int64 {
	var n int64
	for _, sc := range s.ServiceCalls {
		if sc.Status == status {
			n += sc.Calls
		}
	}
	return n
}

// serviceCalls lists the non-zero counts, in table order.
func (c *folderCounters) serviceCalls() []ServiceCalls {
	var out []ServiceCalls
	for s := abi.ServiceNone + 1; s < abi.NumServices; s++ {
		for row, st := range abi.Statuses {
			if n := c.services[int(s)*len(abi.Statuses)+row].Load(); n > 0 {
				out = append(out, ServiceCalls{Service: s.String(), Status: st.Name, Calls: n})
			}
		}
	}
	return out
}

// countersFor returns the folder's counters, creating them at its first
// load. setStatus drops them with the folder.
func (h *Host) countersFor(name string) *folderCounters {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.counters[name]
	if c == nil {
		c = newFolderCounters()
		h.folderSeq++
		c.folder = h.folderSeq
		h.counters[name] = c
	}
	return c
}
