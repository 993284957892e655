package repair

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// Ledger is what the repair reads of the ledger's index and how it writes
// a block (ledger.Ledger).
type Ledger interface {
	// Synced: every block that existed at start-up is indexed.
	Synced() bool
	Block(name string) *v1alpha1.MACBlock
	BlockNames() []string
	Lookup(m mac.MAC) (ledger.Entry, bool)
	OwnedBy(kind, namespace, name string) []ledger.Entry
	UpdateAndPrune(ctx context.Context, m mac.MAC, c ledger.Change) error
}

// Heartbeats says when each replica incarnation's heartbeat runs out, on
// this replica's clock (heartbeat.Tracker).
type Heartbeats interface {
	Expires(incarnation types.UID) time.Time
}

// Indexed says how far the carrier index has come.
type Indexed interface {
	// Synced: every object that existed at start-up is indexed.
	Synced() bool
	// KubeVirtIndexed: VMs and VMIs are indexed too.
	KubeVirtIndexed() bool
}

// Reconciler judges one MAC block at a time: every entry in it and every
// MAC in its range that an object carries, by the case table of Decide,
// and writes what changes in one update of the block. Keying the work by
// block is what batches it: a burst of deletes in one block is one write,
// and adopting 20,000 clustered MACs a few hundred.
type Reconciler struct {
	Ledger   Ledger
	Carried  *carriers.Index
	Indexed  Indexed
	Live     client.Reader // uncached, before an owner is taken as gone
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// Grace is how long an entry may wait for its owner to be seen
	// carrying the MAC.
	Grace time.Duration
	// Interval is how often every block and every carried MAC is judged
	// again, whatever events said.
	Interval time.Duration
	// Workers is how many blocks are judged at once.
	Workers int
	// Heartbeats tell when a replica's stock heartbeat runs out.
	Heartbeats Heartbeats
	// MaxHeld is the most MACs one pod holds: those it carries and those
	// edits of its annotation dropped (kept, newest first, since the
	// interface may still have them). Zero: no bound.
	MaxHeld int

	// adoptedEvents and expiredEvents bound the adoption and expiry
	// events, each on its own so that a flood of one never silences the
	// other: adopting the 20,000 MACs an upgrade leaves behind must not
	// queue 20,000 events, whose client-side throttling holds the repair
	// back (the recorder blocks when its queue is full). The log and the
	// counters have every one.
	adoptedEvents, expiredEvents flowcontrol.RateLimiter

	mu        sync.Mutex
	queue     workqueue.TypedRateLimitingInterface[reconcile.Request]
	seenBound map[mac.MAC]int64                 // entries seen bound, by their reservation time (UnixMicro)
	reported  map[mac.MAC]map[carriers.Ref]bool // collisions already told about
	gone      map[mac.MAC]goneOwner             // entries whose StatefulSet owner was found gone, and since when
	unbound   map[mac.MAC]unboundEntry          // entries judged before they were ever seen bound
	seen      map[mac.MAC]seenEntry             // when each entry never seen bound, as it is, was first judged
}

// seenEntry is when this replica first judged an entry, as it is: its
// owner and reservation time. Only entries never seen bound keep one (see
// markBound): the leader judges every entry of the ledger, and a note of
// each, at 100,000 entries, was over 10 MB of its heap.
type seenEntry struct {
	owner    v1alpha1.Owner
	reserved metav1.MicroTime
	at       time.Time
}

// unboundEntry is when an entry was first judged, for its owner, without
// being seen bound.
type unboundEntry struct {
	owner v1alpha1.Owner
	since time.Time
}

// goneOwner is when an entry's owner was first found gone.
type goneOwner struct {
	entry v1alpha1.MACBlockEntry
	since time.Time
}

// Notify asks for the block of m to be judged: the carrier index calls it
// when the carriers of m change, the ledger when its entry does, each once
// its index has the change. It never blocks, and does nothing on a replica
// that is not the leader.
func (r *Reconciler) Notify(m mac.MAC) {
	r.mu.Lock()
	q := r.queue
	r.mu.Unlock()
	if q != nil {
		q.Add(blockRequest(m))
	}
}

// init makes what the reconciler notes of entries, and its event budgets.
func (r *Reconciler) init() {
	r.seenBound = map[mac.MAC]int64{}
	r.reported = map[mac.MAC]map[carriers.Ref]bool{}
	r.gone = map[mac.MAC]goneOwner{}
	r.unbound = map[mac.MAC]unboundEntry{}
	r.seen = map[mac.MAC]seenEntry{}
	r.adoptedEvents = flowcontrol.NewTokenBucketRateLimiter(eventsPerSecond, eventBurst)
	r.expiredEvents = flowcontrol.NewTokenBucketRateLimiter(eventsPerSecond, eventBurst)
}

func blockRequest(m mac.MAC) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Name: ledger.BlockName(m)}}
}

// SetupWithManager registers the controller. The ledger and the carrier
// index tell it of every change through Notify, once their indexes have it
// (a watch of the blocks here would only race the ledger's index); it
// watches pod deletes (a pod whose annotation was edited keeps its MACs,
// and no longer carries them, until it is deleted); and every Interval,
// and when it becomes the leader, it judges everything.
func (r *Reconciler) SetupWithManager(mgr manager.Manager) error {
	r.init()
	return builder.ControllerManagedBy(mgr).
		Named("repair").
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.blocksOf), builder.WithPredicates(deletesOnly)).
		Watches(&appsv1.StatefulSet{}, handler.EnqueueRequestsFromMapFunc(r.blocksOfStatefulSet)).
		WatchesRawSource(source.Func(r.startPasses)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		Complete(r)
}

var deletesOnly = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
}

// blocksOfStatefulSet maps a StatefulSet (scaled, opted out, deleted) to
// the blocks of the entries held for its pods.
func (r *Reconciler) blocksOfStatefulSet(_ context.Context, obj client.Object) []reconcile.Request {
	seen := map[string]bool{}
	var out []reconcile.Request
	for _, e := range r.Ledger.OwnedBy(sticky.Kind, obj.GetNamespace(), obj.GetName()) {
		if req := blockRequest(e.MAC); !seen[req.Name] {
			seen[req.Name] = true
			out = append(out, req)
		}
	}
	return out
}

// blocksOf maps a deleted pod to the blocks of the MACs it carried and of
// the entries held for it.
func (r *Reconciler) blocksOf(_ context.Context, obj client.Object) []reconcile.Request {
	seen := map[string]bool{}
	var out []reconcile.Request
	add := func(m mac.MAC) {
		if req := blockRequest(m); !seen[req.Name] {
			seen[req.Name] = true
			out = append(out, req)
		}
	}
	for _, c := range carriers.Of(obj) {
		add(c.MAC)
	}
	for _, e := range r.Ledger.OwnedBy(carriers.Pod, obj.GetNamespace(), obj.GetName()) {
		add(e.MAC)
	}
	return out
}

// startPasses keeps the controller's queue for Notify and queues every
// block now and every Interval.
func (r *Reconciler) startPasses(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	r.mu.Lock()
	r.queue = q
	r.mu.Unlock()
	go func() {
		ticker := time.NewTicker(r.Interval)
		defer ticker.Stop()
		for {
			r.queueAll(ctx, q)
			select {
			case <-ctx.Done():
				r.mu.Lock()
				r.queue = nil
				r.mu.Unlock()
				return
			case <-ticker.C:
			}
		}
	}()
	return nil
}

// queueAll queues every block of the ledger and of every carried MAC,
// once both indexes are synced.
func (r *Reconciler) queueAll(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	for !r.Ledger.Synced() || !r.Indexed.Synced() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.pruneUnbound()
	for _, name := range r.Ledger.BlockNames() {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
	for _, m := range r.Carried.MACs() {
		q.Add(blockRequest(m))
	}
}

// The budget of adoption events, and of expiry events: a burst as large as
// a normal pass produces, then a trickle.
const (
	eventsPerSecond = 5
	eventBurst      = 100
)

// judged is a decision on one MAC, with the entry it was made on.
type judged struct {
	mac      mac.MAC
	decision Decision
	entry    *v1alpha1.MACBlockEntry // as read, for Reown, Release, Expire
	applied  bool
}

// Reconcile judges the block req.Name.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	start, err := mac.ParseObjectName(req.Name)
	if err != nil || start != ledger.BlockStart(start) {
		return reconcile.Result{}, nil // not the name of a block
	}
	if !r.Ledger.Synced() || !r.Indexed.Synced() {
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}
	log := logf.FromContext(ctx)
	block := r.Ledger.Block(req.Name)
	now := r.Clock.Now()
	var changes []*judged
	var wait time.Duration
	var failed error // owner look-ups that failed
	reads := r.ownerReads(block)
	for off := int32(0); off < ledger.BlockSize; off++ {
		m := start + mac.MAC(off)
		f := Facts{MAC: m, Carriers: r.Carried.Of(m)}
		if block != nil {
			if e := ledger.Find(block, off); e != nil {
				copied := *e
				f.Entry = &copied
			}
		}
		if f.Entry == nil {
			// What this replica noted of an entry goes with it: a later
			// entry for the same MAC and owner starts afresh.
			r.forget(m, true)
			if len(f.Carriers) == 0 {
				continue
			}
		}
		if f.Entry != nil {
			f.OwnerKindWatched = !isKubeVirtKind(f.Entry.Owner.Kind) || r.Indexed.KubeVirtIndexed()
			f.SeenBound = r.wasBound(m, f.Entry)
			if !f.SeenBound {
				// Only an entry never seen bound waits out a grace from
				// when it was first seen (case 10).
				f.FirstSeen = r.firstSeen(m, f.Entry, now)
			}
			// Noted for every entry: one seen bound that stops being
			// bound and is then renewed for the same owner still waits
			// at most twice the grace from when it was first judged
			// unbound. A bound entry's note goes in the same pass.
			f.UnboundSince = r.unboundSince(m, f.Entry, now)
			if heartbeat.IsStock(f.Entry.Owner) {
				f.Stock = true
				f.StockExpires = now.Add(r.Grace) // no tracker (tests): alive
				if r.Heartbeats != nil {
					f.StockExpires = r.Heartbeats.Expires(f.Entry.Owner.UID)
				}
			}
		}
		d := Decide(f, now, r.Grace, r.MaxHeld)
		if d.Action == LookUpOwner {
			var lookErr error
			if f.Owner, f.OwnerCreated, lookErr = r.lookUpOwner(ctx, reads, m, f.Entry); lookErr != nil {
				// Judge the rest of the block; this MAC is judged again
				// when the error is returned (with backoff).
				failed = errors.Join(failed, lookErr)
				continue
			}
			f.OwnerGoneSince = r.goneSince(m, f.Entry, f.Owner == OwnerGone, now)
			if f.Owner == OwnerExists && f.Entry.Owner.Kind == carriers.Pod {
				f.DroppedNewer = r.droppedNewer(m, f.Entry)
			}
			d = Decide(f, now, r.Grace, r.MaxHeld)
		}
		if d.Bound {
			r.markBound(m, f.Entry)
		}
		r.reportCollisions(m, d)
		switch d.Action {
		case Wait:
			if wait == 0 || d.After < wait {
				wait = d.After
			}
		case Adopt, Reown, Release, Expire:
			changes = append(changes, &judged{mac: m, decision: d, entry: f.Entry})
		}
	}
	emptyBlock := block != nil && len(block.Spec.Entries) == 0
	if len(changes) == 0 && !emptyBlock {
		return reconcile.Result{RequeueAfter: wait}, failed
	}
	err = r.Ledger.UpdateAndPrune(ctx, start, func(b *v1alpha1.MACBlock) (bool, error) {
		changed := false
		for _, j := range changes {
			j.applied = apply(b, j)
			changed = changed || j.applied
		}
		return changed, nil
	})
	if err != nil {
		return reconcile.Result{}, err
	}
	for _, j := range changes {
		if j.applied {
			r.report(log, j)
		}
	}
	return reconcile.Result{RequeueAfter: wait}, failed
}

// apply makes one judged change to a fresh copy of the block, only if the
// block still is as judged: an entry added, renewed or re-owned meanwhile
// (a request accepted it again) is left alone and judged anew.
func apply(b *v1alpha1.MACBlock, j *judged) bool {
	off := ledger.Offset(j.mac)
	current := ledger.Find(b, off)
	switch j.decision.Action {
	case Adopt:
		if current != nil {
			return false
		}
		ledger.Put(b, j.decision.Entry)
		return true
	case Reown:
		if !ledger.SameEntry(current, j.entry) {
			return false
		}
		ledger.Put(b, j.decision.Entry)
		return true
	case Release, Expire:
		if !ledger.SameEntry(current, j.entry) {
			return false
		}
		return ledger.Remove(b, off)
	}
	return false
}

// report counts and tells about a change that was stored.
func (r *Reconciler) report(log logr.Logger, j *judged) {
	d := j.decision
	switch d.Action {
	case Reown, Expire:
		if heartbeat.IsStock(j.entry.Owner) {
			// A dead replica's stock: no event (no object of the
			// replica's kind exists to carry one).
			if d.Action == Reown {
				metrics.Adoptions.Inc()
				log.Info("MAC handed out from the stock of a replica whose heartbeat ran out; passed to its carrier", "case", d.Case,
					"mac", j.mac.String(), "replica", j.entry.Owner.Name, "incarnation", j.entry.Owner.UID, "carrier", d.Carrier.Object.String())
			} else {
				metrics.ExpiredReservations.Inc()
				log.Info("stock of a replica whose heartbeat ran out, unused; released", "case", d.Case,
					"mac", j.mac.String(), "replica", j.entry.Owner.Name, "incarnation", j.entry.Owner.UID)
				r.forget(j.mac, true)
			}
			return
		}
	}
	switch d.Action {
	case Adopt, Reown:
		metrics.Adoptions.Inc()
		c := d.Carrier
		log.Info("MAC carried without an entry of its own; adopted", "case", d.Case, "mac", j.mac.String(), "carrier", c.Object.String(), "for", c.For.String())
		if r.adoptedEvents.TryAccept() {
			r.Recorder.Eventf(c.Object.Reference(), nil, corev1.EventTypeNormal, "MACAdopted", "Adopt",
				"MAC %s was carried without a reservation; kubemacpool now holds it for %s", j.mac, c.For)
		}
	case Release:
		metrics.Releases.Inc()
		log.Info("owner gone or no longer carries the MAC; released", "case", d.Case, "mac", j.mac.String(), "owner", ownerString(j.entry.Owner))
	case Expire:
		metrics.ExpiredReservations.Inc()
		log.Info("reservation not used within the grace period; released", "case", d.Case, "mac", j.mac.String(), "owner", ownerString(j.entry.Owner))
		o := j.entry.Owner
		if r.expiredEvents.TryAccept() {
			r.Recorder.Eventf((carriers.Ref{Kind: o.Kind, Namespace: o.Namespace, Name: o.DisplayName(), UID: o.UID}).Reference(), nil,
				corev1.EventTypeWarning, "ReservationExpired", "Release",
				"MAC %s was reserved for %s, which was not seen carrying it within %s (refused by a later admission step, or abandoned); released",
				j.mac, ownerString(o), r.Grace)
		}
	}
	if d.Action == Release || d.Action == Expire {
		// What was noted of the entry goes with it: a later entry for the
		// same MAC, even for the same owner, is judged afresh.
		r.forget(j.mac, true)
	}
}

// reportCollisions puts a Warning event on the holder of m and on each
// object that carries m for someone else, once per colliding object.
func (r *Reconciler) reportCollisions(m mac.MAC, d Decision) {
	r.mu.Lock()
	var fresh []carriers.Carrier
	if len(d.Collisions) == 0 {
		delete(r.reported, m)
	} else if d.Holder != nil {
		if r.reported[m] == nil {
			r.reported[m] = map[carriers.Ref]bool{}
		}
		for _, c := range d.Collisions {
			if !r.reported[m][c.Object] {
				r.reported[m][c.Object] = true
				fresh = append(fresh, c)
			}
		}
	}
	r.mu.Unlock()
	for _, c := range fresh {
		h := d.Holder
		r.Recorder.Eventf(h.Object.Reference(), c.Object.Reference(), corev1.EventTypeWarning, "MACCollision", "Collide",
			"MAC %s is also carried by %s; two interfaces with one MAC on a network break both", m, c.Object)
		r.Recorder.Eventf(c.Object.Reference(), h.Object.Reference(), corev1.EventTypeWarning, "MACCollision", "Collide",
			"MAC %s is also carried by %s; two interfaces with one MAC on a network break both", m, h.Object)
	}
}

// lookUpOwner finds the owner an entry names: in the carrier index (what
// the replica's cache shows it carrying), and live unless the index already
// shows it carrying the MAC. A lagging cache must never free a MAC in use,
// whether it lacks the owner or has an old version of it.
// It also returns when the owner found was created, for Decide to tell the
// object an entry was made for from a later one of the same name.
func (r *Reconciler) lookUpOwner(ctx context.Context, reads *ownerReads, m mac.MAC, e *v1alpha1.MACBlockEntry) (OwnerState, time.Time, error) {
	o := e.Owner
	if o.Kind == sticky.Kind {
		state, err := r.lookUpStatefulSet(ctx, m, e)
		return state, time.Time{}, err
	}
	obj := newObject(o.Kind)
	if obj == nil {
		return OwnerGone, time.Time{}, nil // not a kind that carries MACs
	}
	if r.Carried.ObjectCarries(o.Kind, o.Namespace, o.Name, o.UID, m) {
		return OwnerCarries, time.Time{}, nil
	}
	obj, err := reads.get(ctx, o.Kind, o.Namespace, o.Name, obj)
	switch {
	case apierrors.IsNotFound(err):
		return OwnerGone, time.Time{}, nil
	case err != nil:
		return OwnerNotLookedUp, time.Time{}, fmt.Errorf("reading %s, owner of MAC %s: %w", ownerString(o), m, err)
	case o.UID != "" && obj.GetUID() != o.UID:
		return OwnerGone, time.Time{}, nil // another object of the same name
	}
	created := obj.GetCreationTimestamp().Time
	for _, c := range carriers.Of(obj) {
		if c.MAC == m {
			return OwnerCarries, created, nil
		}
	}
	return OwnerExists, created, nil
}

// droppedNewer counts, for an entry of a pod that the pod exists without
// carrying (an edit dropped it), the pod's entries that it carries or that
// were reserved after this one: Decide keeps at most MaxHeld. When the pod
// holds more than that, the blocks of its other dropped entries are judged
// again, so the oldest go first whichever block was notified.
func (r *Reconciler) droppedNewer(m mac.MAC, e *v1alpha1.MACBlockEntry) int {
	o := e.Owner
	owned := r.Ledger.OwnedBy(o.Kind, o.Namespace, o.Name)
	newer := 0
	for _, other := range owned {
		if other.MAC == m || !holders.SameOwner(other.Owner, o) {
			continue
		}
		carried := r.Carried.ObjectCarries(o.Kind, o.Namespace, o.Name, o.UID, other.MAC)
		if carried || other.Reserved.After(e.Reserved.Time) ||
			(other.Reserved.Equal(&e.Reserved) && other.MAC > m) {
			newer++
		}
	}
	if r.MaxHeld > 0 && len(owned) > r.MaxHeld {
		for _, other := range owned {
			if other.MAC != m {
				r.Notify(other.MAC)
			}
		}
	}
	return newer
}

// lookUpStatefulSet judges an entry held for a StatefulSet's ordinal, with
// live reads (a lagging cache must never release a MAC a pod is about to
// get back): the StatefulSet must still keep the ordinal, and the pod of
// that name, if it was created again since the entry was made and does not
// carry the MAC, no longer asks for that network.
func (r *Reconciler) lookUpStatefulSet(ctx context.Context, m mac.MAC, e *v1alpha1.MACBlockEntry) (OwnerState, error) {
	o := e.Owner
	set := &appsv1.StatefulSet{}
	switch err := r.Live.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.Name}, set); {
	case apierrors.IsNotFound(err):
		return OwnerGone, nil
	case err != nil:
		return OwnerNotLookedUp, fmt.Errorf("reading %s, owner of MAC %s: %w", ownerString(o), m, err)
	case !sticky.Keeps(set, o):
		return OwnerGone, nil
	}
	pod := &corev1.Pod{}
	switch err := r.Live.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: sticky.PodName(o.Name, o.Ordinal)}, pod); {
	case apierrors.IsNotFound(err):
		return OwnerExists, nil // the pod is away: its MACs wait for it
	case err != nil:
		return OwnerNotLookedUp, fmt.Errorf("reading the pod of %s, owner of MAC %s: %w", ownerString(o), m, err)
	}
	for _, c := range carriers.Of(pod) {
		if c.MAC == m {
			return OwnerCarries, nil
		}
	}
	// Created again well after the entry was made (a second covers the
	// creation timestamp's rounding), without this MAC: the pod no longer
	// asks for that network. The pod the entry was made for keeps it, like
	// any pod, until it is deleted.
	if pod.CreationTimestamp.After(e.Reserved.Add(time.Second)) {
		return OwnerGone, nil
	}
	return OwnerExists, nil
}

// goneSince returns when this replica first found the owner of m's entry
// gone (now, if it just did), or zero while it is not.
func (r *Reconciler) goneSince(m mac.MAC, e *v1alpha1.MACBlockEntry, gone bool, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !gone {
		delete(r.gone, m)
		return time.Time{}
	}
	g, ok := r.gone[m]
	if !ok || !ledger.SameEntry(&g.entry, e) {
		g = goneOwner{entry: *e, since: now}
		r.gone[m] = g
	}
	return g.since
}

// isKubeVirtKind reports whether kind is one of KubeVirt's: those are
// indexed only once KubeVirt is found.
func isKubeVirtKind(kind string) bool {
	return kind == carriers.VirtualMachine || kind == carriers.VirtualMachineInstance
}

// ownerReads reads the owners of one block's entries live. A block often
// holds many entries of one namespace (adopted together, or a burst of one
// workload), and its owners are gone together (a namespace emptied): where
// two or more entries of a kind and namespace may need a look-up, one list
// of that namespace, read live, answers them all instead of a read each
// (thousands of reads at the controllers' rate limit would hold the repair
// up for minutes).
type ownerReads struct {
	live   client.Reader
	want   map[ownerGroup]int
	listed map[ownerGroup]map[string]client.Object
}

// ownerGroup is a kind of owner in a namespace.
type ownerGroup struct{ kind, namespace string }

// ownerReads counts the block's entries whose owner may be looked up.
func (r *Reconciler) ownerReads(block *v1alpha1.MACBlock) *ownerReads {
	reads := &ownerReads{live: r.Live, want: map[ownerGroup]int{}, listed: map[ownerGroup]map[string]client.Object{}}
	if block == nil {
		return reads
	}
	for _, e := range block.Spec.Entries {
		if e.Owner.Name != "" && newObject(e.Owner.Kind) != nil {
			reads.want[ownerGroup{e.Owner.Kind, e.Owner.Namespace}]++
		}
	}
	return reads
}

// get reads the object kind namespace/name into obj, or from the list of
// its namespace; a NotFound error when it does not exist.
func (o *ownerReads) get(ctx context.Context, kind, namespace, name string, obj client.Object) (client.Object, error) {
	g := ownerGroup{kind, namespace}
	if o.want[g] < 2 {
		return obj, o.live.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj)
	}
	objects, ok := o.listed[g]
	if !ok {
		list := newList(kind)
		if err := o.live.List(ctx, list, client.InNamespace(namespace)); err != nil {
			return nil, err
		}
		objects = map[string]client.Object{}
		_ = meta.EachListItem(list, func(item runtime.Object) error {
			if co, ok := item.(client.Object); ok {
				objects[co.GetName()] = co
			}
			return nil
		})
		o.listed[g] = objects
	}
	if found, ok := objects[name]; ok {
		return found, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: kind}, name)
}

func newList(kind string) client.ObjectList {
	switch kind {
	case carriers.Pod:
		return &corev1.PodList{}
	case carriers.VirtualMachine:
		return &kubevirtv1.VirtualMachineList{}
	}
	return &kubevirtv1.VirtualMachineInstanceList{}
}

func newObject(kind string) client.Object {
	switch kind {
	case carriers.Pod:
		return &corev1.Pod{}
	case carriers.VirtualMachine:
		return &kubevirtv1.VirtualMachine{}
	case carriers.VirtualMachineInstance:
		return &kubevirtv1.VirtualMachineInstance{}
	}
	return nil
}

func (r *Reconciler) wasBound(m mac.MAC, e *v1alpha1.MACBlockEntry) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.seenBound[m]
	return ok && t == e.Reserved.UnixMicro()
}

func (r *Reconciler) markBound(m mac.MAC, e *v1alpha1.MACBlockEntry) {
	if e == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seenBound[m] = e.Reserved.UnixMicro()
	delete(r.unbound, m)
	// When it was first seen counts no more while it is seen bound; a
	// renewal, which ends that, is an entry seen afresh all the same.
	delete(r.seen, m)
}

// pruneUnbound forgets the unbound marks of MACs that have had no entry
// for long: what they guard against (the same owner reserving again at
// once) is over.
func (r *Reconciler) pruneUnbound() {
	stale := r.Clock.Now().Add(-4 * r.Grace)
	r.mu.Lock()
	var old []mac.MAC
	for m, u := range r.unbound {
		if u.since.Before(stale) {
			old = append(old, m)
		}
	}
	r.mu.Unlock()
	for _, m := range old {
		if _, held := r.Ledger.Lookup(m); !held {
			r.mu.Lock()
			delete(r.unbound, m)
			r.mu.Unlock()
		}
	}
}

// unboundSince returns when this replica first judged m's entry, for the
// same owner, without seeing it bound (now, the first time), renewals
// notwithstanding.
func (r *Reconciler) unboundSince(m mac.MAC, e *v1alpha1.MACBlockEntry, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.unbound[m]
	if !ok || u.owner != e.Owner {
		u = unboundEntry{owner: e.Owner, since: now}
		r.unbound[m] = u
	}
	return u.since
}

func (r *Reconciler) forget(m mac.MAC, unbound bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.seenBound, m)
	delete(r.gone, m)
	delete(r.seen, m)
	if unbound {
		delete(r.unbound, m)
	}
}

// firstSeen returns when this replica first judged m's entry as it is
// (now, the first time): the entry's age is judged on this replica's
// clock alone.
func (r *Reconciler) firstSeen(m mac.MAC, e *v1alpha1.MACBlockEntry, now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.seen[m]
	if !ok || s.owner != e.Owner || !s.reserved.Equal(&e.Reserved) {
		s = seenEntry{owner: e.Owner, reserved: e.Reserved, at: now}
		r.seen[m] = s
	}
	return s.at
}

func ownerString(o v1alpha1.Owner) string {
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.DisplayName())
}

func microTime(t time.Time) metav1.MicroTime {
	return metav1.NewMicroTime(t.UTC().Truncate(time.Microsecond))
}
