package pool

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
)

// RangeRecordName is the ConfigMap where kubemacpool records the range in
// force, written whenever a valid configuration is applied. A replica that
// starts while the admin's ConfigMap is invalid has no "range in force" of
// its own; it takes this one, so a typo in the ConfigMap followed by a
// rollout or a node drain does not leave every replica unready (and, with
// failurePolicy Fail, every pod with networks uncreatable).
const RangeRecordName = "kubemacpool-mac-range-in-force"

// recordCheckInterval is how often a replica checks the record against
// the range in force, rewriting it after a failed write or an edit.
const recordCheckInterval = 10 * time.Second

// RangeLoader applies the range ConfigMap to the pool, live. It runs on
// every replica. An invalid range is refused loudly (a Warning event on the
// ConfigMap and an error log) and the range in force stays: on a replica
// that has just started, the one recorded in RangeRecordName.
type RangeLoader struct {
	Cache cache.Cache
	// Writer writes the record of the range in force.
	Writer    client.Client
	Pool      *Pool
	Namespace string
	Recorder  events.EventRecorder
	Log       logr.Logger
	// OnError is called once per refused configuration (for metrics).
	OnError func()
	// OnValidity is told whether the configuration in the ConfigMap is
	// valid, on every load (for metrics).
	OnValidity func(valid bool)
	// OnMissing is told whether the range ConfigMap is missing while a
	// range is kept in force (for metrics).
	OnMissing func(missing bool)

	mu      sync.Mutex
	missing bool              // the ConfigMap is gone and the range in force was kept
	current map[string]string // the configuration in force, canonical; nil before the first
	refusal error             // why nothing is in force yet, when a configuration was refused
	refused map[string]string // the configuration last refused, reported once
}

// NeedLeaderElection is false: every replica allocates.
func (l *RangeLoader) NeedLeaderElection() bool { return false }

// NotLoadedReason says why no range is in force yet: the refusal of an
// invalid configuration when there was no earlier range to keep, or that
// the configuration has not been read yet.
func (l *RangeLoader) NotLoadedReason() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.refusal != nil {
		return fmt.Errorf("MAC range configuration in ConfigMap %s/%s refused and no earlier range recorded: %w; fix the ConfigMap",
			l.Namespace, rangeconfig.ConfigMapName, l.refusal)
	}
	return errors.New("MAC range not loaded yet")
}

// Start loads the range once the ConfigMaps are listed and on every
// change, and keeps the record current.
func (l *RangeLoader) Start(ctx context.Context) error {
	informer, err := l.Cache.GetInformer(ctx, &corev1.ConfigMap{})
	if err != nil {
		return err
	}
	reload := func(obj any) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		// The record matters too: a replica with no range in force yet
		// takes it as soon as it appears.
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Namespace == l.Namespace && (cm.Name == rangeconfig.ConfigMapName || cm.Name == RangeRecordName) {
			l.load(ctx)
		}
	}
	registration, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    reload,
		UpdateFunc: func(_, obj any) { reload(obj) },
		DeleteFunc: reload,
	})
	if err != nil {
		return err
	}
	// Wait for the ConfigMaps only: waiting for the whole cache would hold
	// readiness until every pod and VM of the cluster is listed, which the
	// range does not need.
	if !toolscache.WaitForCacheSync(ctx.Done(), registration.HasSynced) {
		return ctx.Err()
	}
	l.load(ctx)
	ticker := time.NewTicker(recordCheckInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			l.mu.Lock()
			waiting := l.current == nil
			l.record(ctx)
			l.mu.Unlock()
			if waiting { // look for a record again
				l.load(ctx)
			}
		}
	}
}

func (l *RangeLoader) load(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cm := &corev1.ConfigMap{}
	err := l.Cache.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: rangeconfig.ConfigMapName}, cm)
	var data map[string]string
	switch {
	case apierrors.IsNotFound(err):
		if l.keepWithoutConfigMap(ctx) {
			return
		}
		cm = nil // a first start with nothing recorded: the default range
	case err != nil:
		l.Log.Error(err, "reading the range ConfigMap; the range in force stays")
		return
	default:
		data = cm.Data
	}
	l.setMissing(false)
	alloc, err := rangeconfig.Parse(data)
	if l.OnValidity != nil {
		l.OnValidity(err == nil)
	}
	if err != nil {
		// The same configuration is seen more than once (informer add,
		// the load after sync, resyncs, record changes): report it once,
		// not per sighting.
		report := !maps.Equal(data, l.refused)
		l.refused = data
		l.refuse(ctx, cm, err, report)
		return
	}
	l.refused = nil
	l.apply(alloc, cm)
	l.record(ctx)
}

// keepWithoutConfigMap handles a missing range ConfigMap: deleting it must
// not widen the range to the default at once (clusters sharing an L2
// network through disjoint ranges would start to overlap), so the range in
// force stays, or on a replica that has none yet the recorded one. It
// reports false only on a first start with no record: then the default
// range applies. Called with l.mu held.
func (l *RangeLoader) keepWithoutConfigMap(ctx context.Context) bool {
	// No ConfigMap holds a refused configuration any more.
	l.refused = nil
	if l.OnValidity != nil {
		l.OnValidity(true)
	}
	if l.current == nil {
		alloc, ok := l.recordedRange(ctx)
		if !ok {
			return false
		}
		l.apply(alloc, nil)
	}
	if defaults, err := rangeconfig.Parse(nil); err == nil && maps.Equal(l.current, rangeconfig.Data(defaults)) {
		// No ConfigMap, the default range: nothing is kept that a
		// missing ConfigMap would change.
		l.setMissing(false)
		l.record(ctx)
		return true
	}
	if !l.missing {
		l.Log.Error(errors.New("range ConfigMap not found"), "the range ConfigMap is gone; the range in force stays (recreate the ConfigMap to change it)",
			"configmap", l.Namespace+"/"+rangeconfig.ConfigMapName, "inForce", l.current)
		l.warnOnRecord(ctx, "ConfigMap %s was deleted; the MAC range in force (%s-%s) stays. Recreate it to change the range.",
			rangeconfig.ConfigMapName, l.current[rangeconfig.KeyStart], l.current[rangeconfig.KeyEnd])
	}
	l.setMissing(true)
	l.record(ctx)
	return true
}

func (l *RangeLoader) setMissing(missing bool) {
	l.missing = missing
	if l.OnMissing != nil {
		l.OnMissing(missing)
	}
}

// warnOnRecord puts a Warning event RangeConfigMapMissing on the record of
// the range in force: the range ConfigMap itself is gone.
func (l *RangeLoader) warnOnRecord(ctx context.Context, format string, args ...any) {
	record := &corev1.ConfigMap{}
	if err := l.Cache.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: RangeRecordName}, record); err != nil {
		return // the log line says it all the same
	}
	l.Recorder.Eventf(record, nil, corev1.EventTypeWarning, "RangeConfigMapMissing", "LoadRange", format, args...)
}

// refuse reports an invalid configuration (unless report is false: it was
// reported already). On a replica with no range in force yet it falls back
// to the recorded one, trying again on every call until there is one.
func (l *RangeLoader) refuse(ctx context.Context, cm *corev1.ConfigMap, err error, report bool) {
	if report && l.OnError != nil {
		l.OnError()
	}
	if l.current == nil {
		if alloc, ok := l.recordedRange(ctx); ok {
			l.Log.Error(err, "refusing the MAC range configuration; using the range last in force, recorded in ConfigMap "+RangeRecordName,
				"configmap", l.Namespace+"/"+rangeconfig.ConfigMapName, "range", alloc.Range().String())
			l.warn(cm, "MAC range configuration refused, the range last in force (%s, recorded in ConfigMap %s) stays: %v", alloc.Range(), RangeRecordName, err)
			l.apply(alloc, nil)
			return
		}
		l.refusal = err
		if report {
			l.Log.Error(err, "refusing the MAC range configuration; no earlier range is recorded, so this replica stays not ready until the ConfigMap is fixed",
				"configmap", l.Namespace+"/"+rangeconfig.ConfigMapName)
			l.warn(cm, "MAC range configuration refused and no earlier range is recorded; kubemacpool is not ready until this is fixed: %v", err)
		}
		return
	}
	if !report {
		return
	}
	l.Log.Error(err, "refusing the MAC range configuration; the range in force stays", "configmap", l.Namespace+"/"+rangeconfig.ConfigMapName)
	l.warn(cm, "MAC range configuration refused, the range in force stays: %v", err)
}

// warn puts an InvalidRange Warning event on the range ConfigMap.
func (l *RangeLoader) warn(cm *corev1.ConfigMap, format string, args ...any) {
	if cm != nil { // absent means the default range, which is never refused
		l.Recorder.Eventf(cm, nil, corev1.EventTypeWarning, "InvalidRange", "LoadRange", format, args...)
	}
}

// apply puts alloc in force, unless it already is.
func (l *RangeLoader) apply(alloc mac.Allocatable, cm *corev1.ConfigMap) {
	data := rangeconfig.Data(alloc)
	if maps.Equal(data, l.current) {
		return
	}
	l.Pool.SetRange(alloc)
	l.current, l.refusal = data, nil
	l.Log.Info("MAC range in force", "range", alloc.Range().String(), "allowUniversal", alloc.AllowUniversal(), "allocatable", alloc.Size())
	if cm != nil {
		l.Recorder.Eventf(cm, nil, corev1.EventTypeNormal, "RangeApplied", "LoadRange",
			"MAC range %s in force (%d allocatable addresses)", alloc.Range(), alloc.Size())
	}
}

// recordedRange reads the record of the range last in force.
func (l *RangeLoader) recordedRange(ctx context.Context) (mac.Allocatable, bool) {
	cm := &corev1.ConfigMap{}
	if err := l.Cache.Get(ctx, client.ObjectKey{Namespace: l.Namespace, Name: RangeRecordName}, cm); err != nil {
		if !apierrors.IsNotFound(err) {
			l.Log.Error(err, "reading the record of the range last in force")
		}
		return mac.Allocatable{}, false
	}
	if len(cm.Data) == 0 {
		l.Log.Info("ignoring an empty record of the range last in force", "configmap", l.Namespace+"/"+RangeRecordName)
		return mac.Allocatable{}, false
	}
	alloc, err := rangeconfig.Parse(cm.Data)
	if err != nil {
		l.Log.Error(err, "ignoring an unreadable record of the range last in force", "configmap", l.Namespace+"/"+RangeRecordName)
		return mac.Allocatable{}, false
	}
	return alloc, true
}

// record writes the range in force to RangeRecordName when the record (as
// cached) says otherwise; a failed write is retried by the ticker in Start.
// Every replica does it. Replicas agree on the range in force once they
// have all seen the same valid configuration; while the ConfigMap stays
// invalid, two replicas that last applied different ranges would each
// rewrite the record, so a replica overwriting a different range says so.
// Called with l.mu held.
func (l *RangeLoader) record(ctx context.Context) {
	if l.current == nil {
		return
	}
	key := client.ObjectKey{Namespace: l.Namespace, Name: RangeRecordName}
	cm := &corev1.ConfigMap{}
	err := l.Cache.Get(ctx, key, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
		cm.Annotations = map[string]string{recordNoteAnnotation: recordNote}
		cm.Data = l.current
		err = l.Writer.Create(ctx, cm)
	case err == nil && maps.Equal(cm.Data, l.current):
	case err == nil:
		if len(cm.Data) > 0 {
			l.Log.Info("recording the range in force over a different one", "configmap", l.Namespace+"/"+RangeRecordName,
				"recorded", cm.Data, "inForce", l.current)
		}
		cm = cm.DeepCopy()
		cm.Data = l.current
		err = l.Writer.Update(ctx, cm)
	}
	if err != nil {
		l.Log.Info("could not record the range in force yet; will retry", "configmap", l.Namespace+"/"+RangeRecordName, "error", err.Error())
	}
}

const (
	recordNoteAnnotation = "kubemacpool.io/note"
	recordNote           = "Written by kubemacpool: the MAC range last in force, used by a replica that starts while " +
		rangeconfig.ConfigMapName + " is invalid. Edit " + rangeconfig.ConfigMapName + ", not this."
)
