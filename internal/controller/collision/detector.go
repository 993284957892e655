package collision

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// Detector watches running pods and VMIs and reports every MAC two of them
// use: a Warning event MACCollision on each object involved, and the gauge
// kmp_mac_collisions{mac}; both end when the collision does. It runs on the
// leader only, so each collision is reported once.
type Detector struct {
	Cache    cache.Cache
	Recorder events.EventRecorder
	Log      logr.Logger
	// Mapper tells whether KubeVirt's kinds are served; VMIs are watched
	// once they are, looked for every KubeVirtPoll.
	Mapper       meta.RESTMapper
	KubeVirtPoll time.Duration

	mu       sync.Mutex
	byObject map[types.UID]entry
	byMAC    map[mac.MAC]map[types.UID]bool
	reported map[mac.MAC]map[types.UID]bool // who was told about each collision
	ignored  int                            // network-status entries left unread, over all pods
}

type entry struct {
	reporter Reporter
	object   runtime.Object // for events
}

// NeedLeaderElection is true: events and the gauge come from one replica.
func (d *Detector) NeedLeaderElection() bool { return true }

// Start watches pods now, and VMIs once KubeVirt is served.
func (d *Detector) Start(ctx context.Context) error {
	if err := d.watch(ctx, &corev1.Pod{}); err != nil {
		return err
	}
	for d.Mapper != nil && !kubevirt.Served(d.Mapper) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.KubeVirtPoll):
		}
	}
	if d.Mapper != nil {
		if err := d.WatchVMIs(ctx); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// WatchVMIs adds VirtualMachineInstances, when KubeVirt's CRDs are served.
func (d *Detector) WatchVMIs(ctx context.Context) error {
	return d.watch(ctx, &kubevirtv1.VirtualMachineInstance{})
}

// Reporting is what the cache holds of a pod or VMI (carriers.Cached): it
// says what the object reported when it was cached.
type Reporting interface {
	runtime.Object
	Reports() (Reporter, bool)
}

// read is what an object from an informer reports.
func read(obj any) (Reporter, runtime.Object, bool) {
	switch o := obj.(type) {
	case Reporting:
		r, ok := o.Reports()
		return r, o, ok
	case *corev1.Pod:
		r, ok := FromPod(o)
		return r, o, ok
	case *kubevirtv1.VirtualMachineInstance:
		r, ok := FromVMI(o)
		return r, o, ok
	}
	return Reporter{}, nil, false
}

func (d *Detector) watch(ctx context.Context, obj client.Object) error {
	informer, err := d.Cache.GetInformer(ctx, obj)
	if err != nil {
		return err
	}
	update := func(o any) {
		if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
			o = tomb.Obj
		}
		r, object, ok := read(o)
		uid := uidOf(o)
		d.set(uid, r, object, ok)
	}
	_, err = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    update,
		UpdateFunc: func(_, o any) { update(o) },
		DeleteFunc: func(o any) {
			if tomb, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = tomb.Obj
			}
			d.set(uidOf(o), Reporter{}, nil, false)
		},
	})
	return err
}

func uidOf(o any) types.UID {
	if m, ok := o.(interface{ GetUID() types.UID }); ok {
		return m.GetUID()
	}
	return ""
}

// set records what an object reports now (nothing when !ok) and re-judges
// every MAC it reported before or reports now.
func (d *Detector) set(uid types.UID, r Reporter, object runtime.Object, ok bool) {
	if uid == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byObject == nil {
		d.byObject = map[types.UID]entry{}
		d.byMAC = map[mac.MAC]map[types.UID]bool{}
		d.reported = map[mac.MAC]map[types.UID]bool{}
	}
	affected := map[mac.MAC]bool{}
	if old, had := d.byObject[uid]; had {
		d.ignored -= old.reporter.Ignored
		for _, m := range old.reporter.MACs {
			affected[m] = true
			delete(d.byMAC[m], uid)
			if len(d.byMAC[m]) == 0 {
				delete(d.byMAC, m)
			}
		}
		delete(d.byObject, uid)
	}
	if ok {
		d.ignored += r.Ignored
		d.byObject[uid] = entry{reporter: r, object: object}
		for _, m := range r.MACs {
			affected[m] = true
			if d.byMAC[m] == nil {
				d.byMAC[m] = map[types.UID]bool{}
			}
			d.byMAC[m][uid] = true
		}
	}
	metrics.NetworkStatusIgnored.Set(float64(d.ignored))
	for m := range affected {
		d.judge(m)
	}
}

// judge updates the gauge and events of one MAC. Callers hold d.mu.
func (d *Detector) judge(m mac.MAC) {
	var reporters []Reporter
	for uid := range d.byMAC[m] {
		reporters = append(reporters, d.byObject[uid].reporter)
	}
	sort.Slice(reporters, func(i, j int) bool { return reporters[i].String() < reporters[j].String() })
	colliding := Colliding(reporters)
	if len(colliding) < 2 {
		if len(d.reported[m]) > 0 {
			metrics.Collisions.DeleteLabelValues(m.String())
			d.Log.Info("MAC collision ended", "mac", m.String())
		}
		delete(d.reported, m)
		return
	}
	metrics.Collisions.WithLabelValues(m.String()).Set(float64(len(colliding)))
	if d.reported[m] == nil {
		d.reported[m] = map[types.UID]bool{}
		d.Log.Info("MAC collision", "mac", m.String(), "objects", len(colliding))
	}
	for _, r := range colliding {
		if d.reported[m][r.UID] {
			continue
		}
		d.reported[m][r.UID] = true
		var others []string
		for _, o := range colliding {
			if o.UID != r.UID {
				others = append(others, o.String())
			}
		}
		d.Recorder.Eventf(d.byObject[r.UID].object, nil, corev1.EventTypeWarning, "MACCollision", "DetectCollision",
			"MAC %s is in use by %d running objects: this one and %s; traffic to either is unreliable until one changes MAC",
			m, len(colliding), joinNames(others))
	}
}

func joinNames(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:3], ", ") + " and " + strconv.Itoa(len(names)-3) + " more"
}
