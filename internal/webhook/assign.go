package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
	"github.com/kubemacpool/kubemacpool/internal/pool"
)

// slot is one interface of an object that needs a MAC.
type slot struct {
	Network   string
	Interface string
	// Requested is the MAC the user wrote ("" to get one from the pool).
	Requested string
	// Held marks a requested MAC this object already holds (an update
	// keeping its MACs): nothing is reserved again.
	Held bool
}

// assigner reserves MACs for the slots of one admission request.
type assigner struct {
	pool   *pool.Pool
	log    logr.Logger
	owner  v1alpha1.Owner
	dryRun bool
	// receiver: the owner is a VM waiting to receive a migration
	receiver bool
	// create: the object is being created (not updated)
	create bool
	// what the pool gave the request, to give back if it is refused after all
	res *pool.Result
	// how each MAC was obtained, counted once the request succeeds
	outcomes []string
}

// assign returns a MAC for every slot: the requested one, reserved, or a
// free one from the pool, all in one reservation (one ledger write per
// block). On any refusal what was reserved is released.
func (a *assigner) assign(ctx context.Context, slots []slot) ([]mac.MAC, error) {
	out := make([]mac.MAC, len(slots))
	seen := map[mac.MAC]bool{}
	req := pool.Request{Owner: a.owner, DryRun: a.dryRun, Receiver: a.receiver, Create: a.create}
	var reqSlot []int // req.Slots[j] is slots[reqSlot[j]]
	for i, s := range slots {
		ps := pool.Slot{Network: s.Network, Interface: s.Interface}
		if s.Requested != "" {
			m, err := mac.Parse(s.Requested)
			if err != nil {
				return nil, a.fail(ctx, &invalidError{fmt.Sprintf("%s: %v", s.describe(), err)})
			}
			if m.IsMulticast() {
				return nil, a.fail(ctx, &invalidError{fmt.Sprintf("%s: MAC address %s is a multicast address (lowest bit of the first octet set) and cannot be given to an interface; choose a unicast MAC", s.describe(), m)})
			}
			if seen[m] {
				return nil, a.fail(ctx, &invalidError{fmt.Sprintf("MAC address %s is asked for by two interfaces of the same %s; every interface needs its own MAC", m, a.owner.Kind)})
			}
			seen[m] = true
			out[i] = m
			if s.Held {
				continue // the object has it already: nothing to reserve
			}
			ps.Requested = m
			a.outcomes = append(a.outcomes, metrics.OutcomeUserChosen)
		} else {
			a.outcomes = append(a.outcomes, metrics.OutcomeAllocated)
		}
		req.Slots = append(req.Slots, ps)
		reqSlot = append(reqSlot, i)
	}
	if len(req.Slots) == 0 {
		return out, nil
	}
	res, err := a.pool.Reserve(ctx, req)
	a.res = res
	if err != nil {
		return nil, a.fail(ctx, err)
	}
	for j, m := range res.MACs {
		out[reqSlot[j]] = m
	}
	return out, nil
}

func (s slot) describe() string {
	if s.Interface != "" {
		return fmt.Sprintf("interface %s (network %s)", s.Interface, s.Network)
	}
	return "network " + s.Network
}

func (a *assigner) fail(ctx context.Context, err error) error {
	a.release(ctx)
	if outcome := refusalOutcome(err); outcome != "" && !a.dryRun {
		metrics.Allocations.WithLabelValues(outcome).Inc()
	}
	return err
}

func refusalOutcome(err error) string {
	var held *holders.HeldError
	var exhausted *pool.ExhaustedError
	var invalid *invalidError
	var excluded *pool.ExcludedError
	var pending *pool.PendingLimitError
	switch {
	case errors.As(err, &held):
		return metrics.OutcomeRefusedHeld
	case errors.As(err, &excluded):
		return metrics.OutcomeRefusedInvalid
	case errors.As(err, &pending):
		return metrics.OutcomeExhausted
	case errors.As(err, &exhausted):
		return metrics.OutcomeExhausted
	case errors.As(err, &invalid):
		return metrics.OutcomeRefusedInvalid
	default:
		return "" // the API server or the pool failed: no user outcome
	}
}

// release gives back what the request reserved. A failed removal is logged
// and left to the repair, which removes entries never used after the grace
// period.
func (a *assigner) release(ctx context.Context) {
	if a.res != nil {
		if err := a.pool.Release(ctx, a.owner, a.res); err != nil {
			a.log.Error(err, "releasing the reservations of a refused request; they expire after the grace period")
		}
		a.pool.Done(a.res)
	}
	a.res, a.outcomes = nil, nil
}

// done ends a request that succeeded: its reservations stay and are counted.
func (a *assigner) done() {
	if a.res != nil {
		a.pool.Done(a.res)
	}
	if !a.dryRun {
		for _, o := range a.outcomes {
			metrics.Allocations.WithLabelValues(o).Inc()
		}
	}
	a.res, a.outcomes = nil, nil
}

// AdmissionTimeout bounds one admission. It stays inside the webhook
// configuration's timeoutSeconds (10), so a request that cannot finish is
// answered with kubemacpool's own reason (and gives back what it reserved)
// before the API server gives up on it with a bare timeout.
const AdmissionTimeout = 8 * time.Second

// Timed wraps a handler to record its admission latency by resource. It
// also detaches the admission from the replica's shutdown: the webhook
// server's request contexts end when the manager stops, which would fail
// reservations in flight during a graceful shutdown; each admission runs
// to completion, bounded by AdmissionTimeout, instead.
func Timed(h admission.Handler) admission.Handler {
	return admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AdmissionTimeout)
		defer cancel()
		start := time.Now()
		defer func() {
			metrics.AdmissionDuration.WithLabelValues(req.Resource.Resource).Observe(time.Since(start).Seconds())
		}()
		return h.Handle(ctx, req)
	})
}

// tooMany refuses a request for more than limit MACs, before anything is
// reserved: one object must not take thousands of MACs and writes.
func tooMany(n int, what string, limit int, dryRun *bool) *admission.Response {
	if limit <= 0 || n <= limit {
		return nil
	}
	if dryRun == nil || !*dryRun {
		metrics.Allocations.WithLabelValues(metrics.OutcomeRefusedInvalid).Inc()
	}
	r := admission.Denied(fmt.Sprintf("kubemacpool: this object asks for %d %s; at most %d may get MACs from kubemacpool (its --max-interfaces flag): ask for fewer, or have the limit raised", n, what, limit))
	return &r
}

// invalidError is a refusal caused by what the user wrote.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// refusal turns an assignment error into the answer the user sees.
func refusal(err error) admission.Response {
	var held *holders.HeldError
	var exhausted *pool.ExhaustedError
	var invalid *invalidError
	var excluded *pool.ExcludedError
	var pending *pool.PendingLimitError
	switch {
	case errors.As(err, &held), errors.As(err, &exhausted), errors.As(err, &invalid), errors.As(err, &excluded), errors.As(err, &pending):
		return admission.Denied("kubemacpool: " + err.Error())
	case errors.Is(err, pool.ErrNotReady):
		return admission.Errored(http.StatusServiceUnavailable, err)
	default:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("kubemacpool: %w", err))
	}
}

// escapePointer escapes a map key for use in a JSON pointer (RFC 6901).
func escapePointer(key string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}
