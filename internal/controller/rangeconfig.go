package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/pool"
)

// Keys of the range ConfigMap. The START/END_POOL_RANGE names are the
// documented contract; RANGE_START/RANGE_END are what upstream kubemacpool
// writes, accepted so an existing ConfigMap keeps working.
const (
	RangeConfigMapName = "kubemacpool-mac-range-config"

	KeyStart         = "START_POOL_RANGE"
	KeyEnd           = "END_POOL_RANGE"
	KeyStartUpstream = "RANGE_START"
	KeyEndUpstream   = "RANGE_END"
	// KeyAllowUniversal set to "true" lets the pool hand out universally
	// administered MACs, for an admin who owns the OUI of the range.
	KeyAllowUniversal = "ALLOW_UNIVERSAL_MACS"
)

// ParseRangeConfig reads the allocatable set from the ConfigMap data. A nil
// map (no ConfigMap) gives the default range.
func ParseRangeConfig(data map[string]string) (mac.Allocatable, error) {
	start := firstOf(data, KeyStart, KeyStartUpstream)
	end := firstOf(data, KeyEnd, KeyEndUpstream)
	r := mac.DefaultRange
	switch {
	case start == "" && end == "":
	case start == "" || end == "":
		return mac.Allocatable{}, fmt.Errorf("set both %s and %s (or neither, for the default range %s)", KeyStart, KeyEnd, mac.DefaultRange)
	default:
		var err error
		if r, err = mac.ParseRange(start, end); err != nil {
			return mac.Allocatable{}, err
		}
	}
	allowUniversal := false
	if v, ok := data[KeyAllowUniversal]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return mac.Allocatable{}, fmt.Errorf("%s must be true or false, not %q", KeyAllowUniversal, v)
		}
		allowUniversal = b
	}
	return mac.NewAllocatable(r, allowUniversal)
}

func firstOf(data map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(data[k]); v != "" {
			return v
		}
	}
	return ""
}

// RangeLoader applies the range ConfigMap to the pool, live. It runs on
// every replica. An invalid range is refused loudly (a Warning event on the
// ConfigMap and an error log) and the range in force stays.
type RangeLoader struct {
	Cache     cache.Cache
	Pool      *pool.Pool
	Namespace string
	Recorder  events.EventRecorder
	Log       logr.Logger
	// OnError is called when a configuration is refused (for metrics).
	OnError func()

	mu      sync.Mutex
	current string // the last applied configuration, to skip no-op reloads
}

// NeedLeaderElection is false: every replica allocates.
func (l *RangeLoader) NeedLeaderElection() bool { return false }

// Start loads the range once the cache is synced and on every change.
func (l *RangeLoader) Start(ctx context.Context) error {
	informer, err := l.Cache.GetInformer(ctx, &corev1.ConfigMap{})
	if err != nil {
		return err
	}
	reload := func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == RangeConfigMapName && cm.Namespace == l.Namespace {
			l.load(ctx)
		}
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    reload,
		UpdateFunc: func(_, obj any) { reload(obj) },
		DeleteFunc: reload,
	}); err != nil {
		return err
	}
	if !l.Cache.WaitForCacheSync(ctx) {
		return ctx.Err()
	}
	l.load(ctx)
	<-ctx.Done()
	return nil
}

func (l *RangeLoader) load(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cm := &corev1.ConfigMap{}
	err := l.Cache.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: RangeConfigMapName}, cm)
	var data map[string]string
	switch {
	case apierrors.IsNotFound(err):
		cm = nil
	case err != nil:
		l.Log.Error(err, "reading the range ConfigMap; the range in force stays")
		return
	default:
		data = cm.Data
	}
	alloc, err := ParseRangeConfig(data)
	if err != nil {
		if l.OnError != nil {
			l.OnError()
		}
		l.Log.Error(err, "refusing the MAC range configuration; the range in force stays", "configmap", l.Namespace+"/"+RangeConfigMapName)
		if cm != nil {
			l.Recorder.Eventf(cm, nil, corev1.EventTypeWarning, "InvalidRange", "LoadRange",
				"MAC range configuration refused, the range in force stays: %v", err)
		}
		return
	}
	key := fmt.Sprintf("%s universal=%v", alloc.Range(), alloc.AllowUniversal())
	if key == l.current {
		return
	}
	l.Pool.SetRange(alloc)
	l.current = key
	l.Log.Info("MAC range in force", "range", alloc.Range().String(), "allowUniversal", alloc.AllowUniversal(), "allocatable", alloc.Size())
	if cm != nil {
		l.Recorder.Eventf(cm, nil, corev1.EventTypeNormal, "RangeApplied", "LoadRange",
			"MAC range %s in force (%d allocatable addresses)", alloc.Range(), alloc.Size())
	}
}
