// Package heartbeat tells a live replica from a dead one without guessing.
// Every replica keeps a coordination.k8s.io Lease per incarnation (each
// process start, and each time it lost its heartbeat and began again) and
// renews it; the MACs it keeps in stock are held for that incarnation. The
// leader's repair reads the Leases (Tracker) and releases a stock only once
// its incarnation's heartbeat has run out on the leader's own clock, and the
// grace period after that has passed too. A replica hands out its stock only
// while its heartbeat is fresh: it stops well before anyone may release it.
package heartbeat

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
)

// Kind is the owner kind of the ledger entries a replica keeps in stock:
// Owner.Namespace is kubemacpool's namespace, Owner.Name the replica (its
// pod), Owner.UID the incarnation.
const Kind = "KubemacpoolReplica"

// Label marks the heartbeat Leases (value: the replica's name).
const Label = "kubemacpool.io/stock-heartbeat"

// LeaseName is the name of an incarnation's Lease.
func LeaseName(incarnation types.UID) string { return "kubemacpool-stock-" + string(incarnation) }

// IsStock reports whether an entry held for o is kept in a replica's stock.
func IsStock(o v1alpha1.Owner) bool { return o.Kind == Kind }

// Beat keeps this replica's Lease. It runs on every replica.
type Beat struct {
	Client    client.Client
	Namespace string
	// Replica is this replica's name: its pod's.
	Replica string
	// Duration is how long a heartbeat lasts without renewal. The replica
	// renews it four times per Duration and stops handing out its stock
	// once half of it has passed since its last renewal that succeeded.
	Duration time.Duration
	Clock    clock.Clock
	Log      logr.Logger

	mu sync.Mutex
	// incarnation is the current one; empty while none has a Lease.
	incarnation types.UID
	lease       *coordinationv1.Lease
	// renewed is when the last renewal that succeeded was sent.
	renewed time.Time
}

// NeedLeaderElection is false: every replica keeps a stock.
func (b *Beat) NeedLeaderElection() bool { return false }

// Current is the owner of the entries this replica may hand out now, and
// false while its heartbeat is not fresh (no Lease yet, or half its
// duration passed since the last renewal that succeeded).
func (b *Beat) Current() (v1alpha1.Owner, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.incarnation == "" || b.Clock.Since(b.renewed) >= b.Duration/2 {
		return v1alpha1.Owner{}, false
	}
	return b.ownerLocked(), true
}

func (b *Beat) ownerLocked() v1alpha1.Owner {
	return v1alpha1.Owner{Kind: Kind, Namespace: b.Namespace, Name: b.Replica, UID: b.incarnation}
}

// Start renews the Lease until ctx ends. A heartbeat that went stale (the
// API server could not be reached for half its duration) is never taken
// up again: the next success starts a new incarnation with a Lease of its
// own, and the old one's stock is left to the leader, which may already be
// counting down to releasing it.
func (b *Beat) Start(ctx context.Context) error {
	every := b.Duration / 4
	for {
		b.beat(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-b.Clock.After(every):
		}
	}
}

func (b *Beat) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, b.Duration/4)
	defer cancel()
	b.mu.Lock()
	stale := b.incarnation != "" && b.Clock.Since(b.renewed) >= b.Duration/2
	if stale {
		b.Log.Info("heartbeat went stale: this incarnation's stock is left to the leader; starting a new one", "incarnation", b.incarnation)
		b.incarnation, b.lease = "", nil
	}
	lease := b.lease
	b.mu.Unlock()
	sent := b.Clock.Now()
	if lease == nil {
		b.create(ctx, sent)
		return
	}
	lease = lease.DeepCopy()
	lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(sent))
	if err := b.Client.Update(ctx, lease); err != nil {
		b.Log.Error(err, "renewing the stock heartbeat", "lease", lease.Name)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// Someone else wrote or deleted it: read it again next time.
			fresh := &coordinationv1.Lease{}
			if getErr := b.Client.Get(ctx, client.ObjectKeyFromObject(lease), fresh); getErr == nil {
				b.mu.Lock()
				if b.lease != nil && b.lease.Name == fresh.Name {
					b.lease = fresh
				}
				b.mu.Unlock()
			}
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lease != nil && b.lease.Name == lease.Name {
		b.lease, b.renewed = lease, sent
	}
}

// create starts a new incarnation with a Lease of its own.
func (b *Beat) create(ctx context.Context, sent time.Time) {
	inc := uuid.NewUUID()
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: LeaseName(inc), Namespace: b.Namespace,
			Labels: map[string]string{Label: b.Replica},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(b.Replica),
			LeaseDurationSeconds: ptr.To(int32(max(1, b.Duration.Round(time.Second)/time.Second))),
			AcquireTime:          ptr.To(metav1.NewMicroTime(sent)),
			RenewTime:            ptr.To(metav1.NewMicroTime(sent)),
		},
	}
	if err := b.Client.Create(ctx, lease); err != nil {
		b.Log.Error(err, "creating the stock heartbeat Lease; MACs are reserved directly until it exists", "lease", lease.Name)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.incarnation, b.lease, b.renewed = inc, lease, sent
	b.Log.Info("stock heartbeat started", "lease", lease.Name, "incarnation", inc)
}

// Stop deletes the Lease of the current incarnation, for a replica that
// has given its stock back on the way out: nothing is left for the leader
// to wait for. It is not called when entries may still be held for it.
func (b *Beat) Stop(ctx context.Context) error {
	b.mu.Lock()
	lease := b.lease
	b.incarnation, b.lease = "", nil
	b.mu.Unlock()
	if lease == nil {
		return nil
	}
	if err := b.Client.Delete(ctx, lease); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the stock heartbeat Lease %s: %w", lease.Name, err)
	}
	return nil
}
