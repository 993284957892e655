package applied

import (
	"context"
	"slices"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Checker watches pods on the leader and puts a Warning event
// MACNotApplied on a pod whose network-status disagrees with the MACs
// kubemacpool gave it, once per disagreement; Count reports how many pods
// disagree now. A pod leaves the count when they agree, or when it goes.
type Checker struct {
	Cache    cache.Cache
	Recorder events.EventRecorder
	Log      logr.Logger
	// Gave reports whether kubemacpool gave MAC m to the pod: the ledger
	// holds it for that pod.
	Gave func(pod metav1.Object, m mac.MAC) bool
	// OnCount is told how many pods disagree, whenever that changes.
	OnCount func(n int)

	mu   sync.Mutex
	seen map[types.UID][]Mismatch // pods that disagree, and how
}

// NeedLeaderElection is true: one replica reports.
func (c *Checker) NeedLeaderElection() bool { return true }

// Start watches pods until ctx ends.
func (c *Checker) Start(ctx context.Context) error {
	c.seen = map[types.UID][]Mismatch{}
	informer, err := c.Cache.GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return err
	}
	_, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    c.judge,
		UpdateFunc: func(_, o any) { c.judge(o) },
		DeleteFunc: func(o any) {
			if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = tomb.Obj
			}
			if pod, ok := o.(client.Object); ok {
				c.set(pod, nil)
			}
		},
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// judge compares what the cache derived of a pod (carriers.Cached), or a
// whole pod, with what kubemacpool gave it.
func (c *Checker) judge(o any) {
	var networks []carriers.NetworkMAC
	switch pod := o.(type) {
	case *carriers.Cached:
		networks = pod.Applied
	case *corev1.Pod:
		networks = carriers.NetworkMACs(pod)
	default:
		return
	}
	pod := o.(client.Object)
	c.set(pod, Check(networks, func(m mac.MAC) bool { return c.Gave(pod, m) }))
}

// set records how pod disagrees now (nil: it agrees), reporting a new
// disagreement.
func (c *Checker) set(pod client.Object, ms []Mismatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	before, had := c.seen[pod.GetUID()]
	switch {
	case len(ms) == 0 && !had:
		return
	case len(ms) == 0:
		delete(c.seen, pod.GetUID())
		c.Log.Info("MACs applied", "namespace", pod.GetNamespace(), "pod", pod.GetName())
	case slices.Equal(before, ms):
		return
	default:
		c.seen[pod.GetUID()] = ms
		c.Log.Info("MAC not applied", "namespace", pod.GetNamespace(), "pod", pod.GetName(), "detail", Describe(ms))
		c.Recorder.Eventf(pod, nil, corev1.EventTypeWarning, "MACNotApplied", "CheckApplied", "%s", Describe(ms))
	}
	if c.OnCount != nil {
		c.OnCount(len(c.seen))
	}
}
