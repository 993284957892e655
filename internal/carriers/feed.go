package carriers

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// Feed keeps an Index in step with the pods, VMs and VMIs of the whole
// cluster, from the replica's cache. It runs on every replica, leader or
// not: every replica serves the webhook and must not pick a carried MAC.
type Feed struct {
	Cache cache.Cache
	// Mapper tells whether KubeVirt's kinds are served.
	Mapper meta.RESTMapper
	Index  *Index
	// KubeVirtPoll is how often to look for KubeVirt's CRDs until they are
	// installed.
	KubeVirtPoll time.Duration
	Log          logr.Logger

	synced   atomic.Bool
	kubeVirt atomic.Bool
	mu       sync.Mutex
	reason   string
	// uncounted is how many MACs each object lists beyond MaxCarried, and
	// uncountedTotal their sum (kmp_carried_macs_ignored).
	uncounted      map[objectKey]int
	uncountedTotal int
}

// count records how many MACs the object lists beyond MaxCarried (0 when
// it is deleted), logging an object when it first goes beyond.
func (f *Feed) count(key objectKey, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	before := f.uncounted[key]
	if n == before {
		return
	}
	if f.uncounted == nil {
		f.uncounted = map[objectKey]int{}
	}
	if n == 0 {
		delete(f.uncounted, key)
	} else {
		f.uncounted[key] = n
	}
	if before == 0 {
		f.Log.Info("object lists more MACs than are counted as carried", "kind", key.kind, "namespace", key.namespace,
			"name", key.name, "counted", MaxCarried, "leftOut", n)
	}
	f.uncountedTotal += n - before
	metrics.CarriedIgnored.Set(float64(f.uncountedTotal))
}

// NeedLeaderElection is false: every replica needs the index.
func (f *Feed) NeedLeaderElection() bool { return false }

// Synced reports whether every object that existed at start-up (pods, and
// VMs and VMIs if KubeVirt was served then) is in the index.
func (f *Feed) Synced() bool { return f.synced.Load() }

// KubeVirtIndexed reports whether VMs and VMIs are indexed too: KubeVirt
// was served at start-up, or has been found since.
func (f *Feed) KubeVirtIndexed() bool { return f.kubeVirt.Load() }

// NotSyncedReason says what the index still waits for.
func (f *Feed) NotSyncedReason() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Errorf("carried-MAC index not synced yet (%s)", f.reason)
}

func (f *Feed) waitingFor(s string) {
	f.mu.Lock()
	f.reason = s
	f.mu.Unlock()
}

// Start indexes pods, and VMs and VMIs once KubeVirt is served, until ctx
// ends.
func (f *Feed) Start(ctx context.Context) error {
	// KubeVirt installed now must be indexed before the replica serves;
	// KubeVirt installed later has no VMs yet that could be missed. The
	// lists run side by side: each is seconds at 10,000 objects.
	kubeVirt := kubevirt.Served(f.Mapper)
	f.waitingFor("listing pods")
	pods, err := f.watch(ctx, &corev1.Pod{}, Pod)
	if err != nil {
		return err
	}
	var vms, vmis toolscache.ResourceEventHandlerRegistration
	if kubeVirt {
		f.waitingFor("listing pods, VirtualMachines and VirtualMachineInstances")
		if vms, vmis, err = f.watchKubeVirt(ctx); err != nil {
			return err
		}
	}
	for _, r := range []toolscache.ResourceEventHandlerRegistration{pods, vms, vmis} {
		if r != nil && !toolscache.WaitForCacheSync(ctx.Done(), r.HasSynced) {
			return nil
		}
	}
	f.synced.Store(true)
	f.kubeVirt.Store(kubeVirt)
	f.Log.Info("carried MACs indexed", "macs", f.Index.Len(), "kubevirt", kubeVirt)
	for !kubeVirt {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(f.KubeVirtPoll):
		}
		if kubeVirt = kubevirt.Served(f.Mapper); kubeVirt {
			vms, vmis, err := f.watchKubeVirt(ctx)
			if err != nil {
				return err
			}
			if !toolscache.WaitForCacheSync(ctx.Done(), vms.HasSynced, vmis.HasSynced) {
				return nil
			}
			f.kubeVirt.Store(true)
			f.Log.Info("KubeVirt found: indexing the MACs of VirtualMachines and VirtualMachineInstances")
		}
	}
	<-ctx.Done()
	return nil
}

func (f *Feed) watchKubeVirt(ctx context.Context) (vms, vmis toolscache.ResourceEventHandlerRegistration, err error) {
	if vms, err = f.watch(ctx, &kubevirtv1.VirtualMachine{}, VirtualMachine); err != nil {
		return nil, nil, err
	}
	if vmis, err = f.watch(ctx, &kubevirtv1.VirtualMachineInstance{}, VirtualMachineInstance); err != nil {
		return nil, nil, err
	}
	return vms, vmis, nil
}

// watch feeds the index from the informer of obj's kind.
func (f *Feed) watch(ctx context.Context, obj client.Object, kind string) (toolscache.ResourceEventHandlerRegistration, error) {
	// Not blocking until synced: the caller waits for every kind at once.
	informer, err := f.Cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("watching %s for carried MACs: %w", kind, err)
	}
	set := func(o any) {
		if c, ok := o.(*Cached); ok {
			// The index keeps the cache's own Carries.
			f.Index.SetCarries(kind, c.GetNamespace(), c.GetName(), c.Carries)
			f.count(objectKey{kind, c.GetNamespace(), c.GetName()}, c.Uncounted)
		} else if m, ok := o.(client.Object); ok {
			f.Index.Set(kind, m.GetNamespace(), m.GetName(), Of(o))
		}
	}
	r, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, o any) { set(o) },
		DeleteFunc: func(o any) {
			if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = tomb.Obj
			}
			if m, ok := o.(client.Object); ok {
				f.Index.Delete(kind, m.GetNamespace(), m.GetName())
				f.count(objectKey{kind, m.GetNamespace(), m.GetName()}, 0)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watching %s for carried MACs: %w", kind, err)
	}
	return r, nil
}
