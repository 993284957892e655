package controller

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/pool"
)

// PoolSync keeps a replica's pool index in step with the MACAddress objects
// of the cluster. It runs on every replica, leader or not, because every
// replica serves the webhook.
type PoolSync struct {
	Cache cache.Cache
	Pool  *pool.Pool
	// Resync is how often the whole index is rebuilt from the cache, healing
	// a hint that went stale (a reservation deleted before its watch event
	// was seen, or an in-flight pick that was never created).
	Resync time.Duration
	Log    logr.Logger

	synced  atomic.Bool
	pending atomic.Int64
}

// Pending is the number of reservations not bound yet.
func (s *PoolSync) Pending() int64 { return s.pending.Load() }

// Synced reports whether the index has seen every MACAddress that existed
// when the replica started: until then candidates are more likely taken.
func (s *PoolSync) Synced() bool { return s.synced.Load() }

// NeedLeaderElection is false: every replica needs its index.
func (s *PoolSync) NeedLeaderElection() bool { return false }

// Start registers the event handler and rebuilds periodically until ctx ends.
func (s *PoolSync) Start(ctx context.Context) error {
	informer, err := s.Cache.GetInformer(ctx, &v1alpha1.MACAddress{})
	if err != nil {
		return err
	}
	registration, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			s.mark(obj, true)
			s.count(obj, 1)
		},
		UpdateFunc: func(old, obj any) {
			s.mark(obj, true)
			s.count(old, -1)
			s.count(obj, 1)
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			s.mark(obj, false)
			s.count(obj, -1)
		},
	})
	if err != nil {
		return err
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), registration.HasSynced) {
		return ctx.Err()
	}
	s.synced.Store(true)
	ticker := time.NewTicker(s.Resync)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if err := s.rebuild(ctx); err != nil {
				s.Log.Error(err, "rebuilding the pool index; keeping the current one")
			}
		}
	}
}

func (s *PoolSync) mark(obj any, held bool) {
	m, ok := obj.(*v1alpha1.MACAddress)
	if !ok {
		return
	}
	address, err := mac.ParseObjectName(m.Name)
	if err != nil {
		return
	}
	if held {
		s.Pool.MarkHeld(address)
	} else {
		s.Pool.MarkFree(address)
	}
}

// count adds delta to the pending count if obj is an unbound reservation.
func (s *PoolSync) count(obj any, delta int64) {
	if m, ok := obj.(*v1alpha1.MACAddress); ok && !m.IsBound() {
		s.pending.Add(delta)
	}
}

func (s *PoolSync) rebuild(ctx context.Context) error {
	list := &v1alpha1.MACAddressList{}
	if err := s.Cache.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	held := make([]mac.MAC, 0, len(list.Items))
	for i := range list.Items {
		if m, err := mac.ParseObjectName(list.Items[i].Name); err == nil {
			held = append(held, m)
		}
	}
	s.Pool.Replace(held)
	return nil
}
