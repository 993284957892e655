package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
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
	// what this request reserved (or picked, in a dry run), to give back
	// if the request is refused after all
	taken []mac.MAC
	// how each MAC was obtained, counted once the request succeeds
	outcomes []string
}

// assign returns a MAC for every slot: the requested one, reserved, or a
// free one from the pool. On any refusal what was reserved is released.
func (a *assigner) assign(ctx context.Context, slots []slot) ([]mac.MAC, error) {
	out := make([]mac.MAC, len(slots))
	seen := map[mac.MAC]bool{}
	// Requested MACs first, so a refused one costs no pool allocation.
	for i, s := range slots {
		if s.Requested == "" {
			continue
		}
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
			continue
		}
		created, err := a.pool.Claim(ctx, m, a.request(s))
		if err != nil {
			return nil, a.fail(ctx, err)
		}
		if created { // an accepted earlier reservation is not ours to release
			a.taken = append(a.taken, m)
		}
		a.outcomes = append(a.outcomes, metrics.OutcomeUserChosen)
	}
	// The pool's reservations are independent API writes: make them at
	// once, so a pod with several networks waits for one round trip, not
	// one per network.
	var wg sync.WaitGroup
	errs := make([]error, len(slots))
	for i, s := range slots {
		if s.Requested != "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = a.pool.Allocate(ctx, a.request(s))
		}()
	}
	wg.Wait()
	var failed error
	for i, s := range slots {
		if s.Requested != "" {
			continue
		}
		if errs[i] != nil {
			if failed == nil {
				failed = errs[i]
			}
			continue
		}
		a.taken = append(a.taken, out[i])
		a.outcomes = append(a.outcomes, metrics.OutcomeAllocated)
	}
	if failed != nil {
		return nil, a.fail(ctx, failed)
	}
	return out, nil
}

func (a *assigner) request(s slot) pool.Request {
	return pool.Request{Owner: a.owner, Network: s.Network, Interface: s.Interface, DryRun: a.dryRun}
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
	var held *pool.HeldError
	var exhausted *pool.ExhaustedError
	var invalid *invalidError
	switch {
	case errors.As(err, &held):
		return metrics.OutcomeRefusedHeld
	case errors.As(err, &exhausted):
		return metrics.OutcomeExhausted
	case errors.As(err, &invalid):
		return metrics.OutcomeRefusedInvalid
	default:
		return "" // the API server or the pool failed: no user outcome
	}
}

// release gives back what the request took: reservations are deleted,
// dry-run picks only unmarked in memory. A failed delete is logged and left
// to the reservation expiry, which exists for exactly this.
func (a *assigner) release(ctx context.Context) {
	for _, m := range a.taken {
		if a.dryRun {
			a.pool.Unmark(m)
			continue
		}
		if err := a.pool.Release(ctx, m); err != nil {
			a.log.Error(err, "releasing a reservation of a refused request; it expires after the grace period", "mac", m.String())
		}
	}
	a.taken, a.outcomes = nil, nil
}

// done ends a request that succeeded: a dry run's picks are unmarked, real
// reservations stay and are counted.
func (a *assigner) done() {
	if a.dryRun {
		for _, m := range a.taken {
			a.pool.Unmark(m)
		}
	} else {
		for _, o := range a.outcomes {
			metrics.Allocations.WithLabelValues(o).Inc()
		}
	}
	a.taken, a.outcomes = nil, nil
}

// AdmissionTimeout bounds one admission: the API server gives up after the
// webhook configuration's timeoutSeconds (10) anyway.
const AdmissionTimeout = 10 * time.Second

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

// invalidError is a refusal caused by what the user wrote.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// refusal turns an assignment error into the answer the user sees.
func refusal(err error) admission.Response {
	var held *pool.HeldError
	var exhausted *pool.ExhaustedError
	var invalid *invalidError
	switch {
	case errors.As(err, &held), errors.As(err, &exhausted), errors.As(err, &invalid):
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
