package heartbeat

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// Collector deletes the Leases of incarnations whose heartbeat ran out and
// whose stock is gone (released or re-owned by the repair): one Lease is
// left by every replica start that did not end in a clean shutdown. It runs
// on the leader.
type Collector struct {
	Tracker *Tracker
	Client  client.Client
	// Holds reports whether the ledger still holds entries for an
	// incarnation of replica.
	Holds func(replica string, incarnation types.UID) bool
	// After is how long past its end a heartbeat's Lease is kept: long
	// enough for the repair to have released its stock.
	After time.Duration
	Every time.Duration
	Log   logr.Logger
}

// NeedLeaderElection is true: one replica collects.
func (c *Collector) NeedLeaderElection() bool { return true }

// Start collects every c.Every until ctx ends.
func (c *Collector) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.Every):
		}
		leases := &coordinationv1.LeaseList{}
		if err := c.Tracker.Cache.List(ctx, leases); err != nil {
			c.Log.Error(err, "listing heartbeat Leases")
			continue
		}
		now := c.Tracker.Clock.Now()
		for i := range leases.Items {
			l := &leases.Items[i]
			inc, ok := incarnationOf(l.Name)
			if !ok || l.Labels[Label] == "" || now.Before(c.Tracker.Expires(inc).Add(c.After)) || c.Holds(l.Labels[Label], inc) {
				continue
			}
			if err := c.Client.Delete(ctx, l, client.Preconditions{ResourceVersion: &l.ResourceVersion}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				c.Log.Error(err, "deleting the heartbeat Lease of a replica gone", "lease", l.Name)
				continue
			}
			c.Log.Info("deleted the heartbeat Lease of a replica gone, its stock released", "lease", l.Name, "replica", l.Labels[Label])
		}
	}
}
