package heartbeat

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// Tracker is a replica's view of every replica's heartbeat, on its own
// clock: a heartbeat lasts its duration from when this replica last saw its
// Lease change, never from the time another replica's clock wrote into it
// (clocks differ; durations agree). It runs on every replica; the leader's
// repair asks it.
type Tracker struct {
	Cache cache.Cache
	Clock clock.PassiveClock
	// Duration is the heartbeat duration assumed for an incarnation whose
	// Lease this replica never saw (gone, or not here yet).
	Duration time.Duration

	mu     sync.Mutex
	synced bool
	seen   map[types.UID]sighting
	// missing is when an incarnation without a Lease was first asked about.
	missing map[types.UID]time.Time
}

// sighting is the last change of a Lease this replica saw, and when.
type sighting struct {
	resourceVersion string
	at              time.Time
	duration        time.Duration
}

// NeedLeaderElection is false: the informer is cheap, and a new leader
// must not start with an empty view.
func (t *Tracker) NeedLeaderElection() bool { return false }

// Start feeds the tracker from the heartbeat Leases until ctx ends.
func (t *Tracker) Start(ctx context.Context) error {
	informer, err := t.Cache.GetInformer(ctx, &coordinationv1.Lease{})
	if err != nil {
		return fmt.Errorf("watching heartbeat Leases: %w", err)
	}
	reg, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj) },
		UpdateFunc: func(_, obj any) { t.observe(obj) },
		// A deleted Lease keeps its last sighting: its heartbeat runs out
		// from there, as if it had stopped renewing.
	})
	if err != nil {
		return fmt.Errorf("watching heartbeat Leases: %w", err)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil
	}
	t.mu.Lock()
	t.synced = true
	t.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (t *Tracker) observe(obj any) {
	lease, ok := obj.(*coordinationv1.Lease)
	if !ok || lease.Labels[Label] == "" {
		return
	}
	inc, ok := incarnationOf(lease.Name)
	if !ok {
		return
	}
	d := t.Duration
	if s := lease.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		d = time.Duration(*s) * time.Second
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[types.UID]sighting{}
	}
	if prev, ok := t.seen[inc]; ok && prev.resourceVersion == lease.ResourceVersion {
		return
	}
	t.seen[inc] = sighting{resourceVersion: lease.ResourceVersion, at: t.Clock.Now(), duration: d}
	delete(t.missing, inc)
}

func incarnationOf(leaseName string) (types.UID, bool) {
	const prefix = "kubemacpool-stock-"
	if len(leaseName) <= len(prefix) || leaseName[:len(prefix)] != prefix {
		return "", false
	}
	return types.UID(leaseName[len(prefix):]), true
}

// Expires is when incarnation's heartbeat runs out on this replica's clock:
// its duration after this replica last saw its Lease change. One whose
// Lease it never saw runs out a duration after it was first asked about
// (a replica creates its Lease before it writes any stock, so a Lease
// missing that long is gone). Before the Leases are listed, nothing runs
// out: the answer is a duration from now.
func (t *Tracker) Expires(incarnation types.UID) time.Time {
	now := t.Clock.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.synced {
		return now.Add(t.Duration)
	}
	if s, ok := t.seen[incarnation]; ok {
		return s.at.Add(s.duration)
	}
	if t.missing == nil {
		t.missing = map[types.UID]time.Time{}
	}
	first, ok := t.missing[incarnation]
	if !ok {
		first = now
		t.missing[incarnation] = now
	}
	return first.Add(t.Duration)
}
