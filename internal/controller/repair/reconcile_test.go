package repair

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Reconcile is unit-tested on a fake clock, against a ledger and a carrier
// index fed by hand and a fake API for owner look-ups (the integration
// tests run it against a real API server).

const grace = 3 * time.Minute

type indexed struct{}

// synced is a ledger fed by hand, complete from the start.
type synced struct{ *ledger.Ledger }

func (synced) Synced() bool { return true }

func (indexed) Synced() bool          { return true }
func (indexed) KubeVirtIndexed() bool { return true }

// world is one block's worth of state for Reconcile.
type world struct {
	t      *testing.T
	clk    *clocktesting.FakeClock
	api    client.Client
	ledger *ledger.Ledger
	index  *carriers.Index
	r      *Reconciler
	start  mac.MAC
}

// newWorld stores block b (its entries) and the objects, and indexes both.
// failGet makes live reads of that pod name fail.
func newWorld(t *testing.T, clk *clocktesting.FakeClock, b *v1alpha1.MACBlock, failGet string, objs ...client.Object) *world {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	api := fake.NewClientBuilder().WithScheme(scheme).WithObjects(append(objs, b)...).
		WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if key.Name == failGet && failGet != "" {
				return errors.New("the API server is unavailable")
			}
			return c.Get(ctx, key, obj, opts...)
		}}).Build()
	stored := &v1alpha1.MACBlock{}
	if err := api.Get(t.Context(), client.ObjectKeyFromObject(b), stored); err != nil {
		t.Fatal(err)
	}
	l := &ledger.Ledger{Writer: api, Live: api, Log: logr.Discard()}
	l.Observe(stored, false)
	w := &world{t: t, clk: clk, api: api, ledger: l, index: carriers.NewIndex(nil), start: mac.MAC(0x020000000100)}
	w.r = &Reconciler{Ledger: synced{l}, Carried: w.index, Indexed: indexed{}, Live: api, Recorder: events.NewFakeRecorder(100),
		Clock: clk, Grace: grace, Interval: time.Hour, Workers: 1, MaxHeld: 32}
	w.r.init()
	return w
}

// reconcile judges the block once.
func (w *world) reconcile() (reconcile.Result, error) {
	return w.r.Reconcile(w.t.Context(), reconcile.Request{NamespacedName: client.ObjectKey{Name: w.start.ObjectName()}})
}

// held reports whether the stored block still has an entry at off.
func (w *world) held(off int32) bool {
	b := &v1alpha1.MACBlock{}
	if err := w.api.Get(w.t.Context(), client.ObjectKey{Name: w.start.ObjectName()}, b); err != nil {
		return false // deleted once empty
	}
	return ledger.Find(b, off) != nil
}

func podEntry(off int32, name string, reserved time.Time) v1alpha1.MACBlockEntry {
	m := mac.MAC(0x020000000100) + mac.MAC(off)
	return v1alpha1.MACBlockEntry{Offset: off, MAC: m.String(), Owner: v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", Name: name},
		Network: "ns/net", Reserved: metav1.NewMicroTime(reserved.UTC().Truncate(time.Microsecond))}
}

func blockOf(entries ...v1alpha1.MACBlockEntry) *v1alpha1.MACBlock {
	b := ledger.NewBlock(0x020000000100)
	for _, e := range entries {
		ledger.Put(b, e)
	}
	return b
}

func newClock() *clocktesting.FakeClock {
	return clocktesting.NewFakeClock(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC))
}

// Hole 8: an owner whose look-up fails is judged again later; the other
// entries of its block are judged now.
func TestReconcileJudgesTheRestOfABlockPastAFailedLookUp(t *testing.T) {
	clk := newClock()
	old := clk.Now().Add(-2 * grace)
	unreadable := podEntry(1, "unreadable", old)
	unreadable.Owner.Namespace = "elsewhere" // read alone, not in a list of ns
	w := newWorld(t, clk, blockOf(unreadable, podEntry(2, "gone", old)), "unreadable")
	clk.Step(grace + time.Second) // past the grace from when the repair first saw them
	w.reconcile()                 // first sight
	clk.Step(grace + time.Second)
	if _, err := w.reconcile(); err == nil {
		t.Fatal("a failed look-up was not reported, so the block would not be judged again")
	}
	if w.held(2) {
		t.Error("the entry of a gone pod stayed because another owner's look-up failed")
	}
	if !w.held(1) {
		t.Error("the entry whose owner could not be read was removed")
	}
}

// Hole 9: an entry seen bound is released as soon as its owner is gone,
// not the grace after it was reserved.
func TestReconcileReleasesAtOnceWhatAGoneOwnerHad(t *testing.T) {
	clk := newClock()
	e := podEntry(3, "p", clk.Now())
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u"}}
	w := newWorld(t, clk, blockOf(e), "")
	ref := carriers.Ref{Kind: carriers.Pod, Namespace: "ns", Name: "p", UID: "u"}
	w.index.Set(carriers.Pod, "ns", "p", []carriers.Carrier{{MAC: w.start + 3, Object: ref, For: ref}})
	if _, err := w.reconcile(); err != nil || !w.held(3) {
		t.Fatalf("bound entry: %v, held %v", err, w.held(3))
	}
	// The leader notes every entry; of one seen bound it keeps only that
	// (at 100,000 entries, the rest was 10 MB of its heap).
	if len(w.r.seen) != 0 || len(w.r.unbound) != 0 || len(w.r.seenBound) != 1 {
		t.Errorf("a bound entry left %d first-seen and %d unbound notes, %d bound ones", len(w.r.seen), len(w.r.unbound), len(w.r.seenBound))
	}
	_ = p                                   // never stored: the pod is deleted
	w.index.Delete(carriers.Pod, "ns", "p") // its delete seen
	clk.Step(10 * time.Second)              // well within the grace
	if _, err := w.reconcile(); err != nil || w.held(3) {
		t.Fatalf("deleted owner, seen bound: %v, still held %v", err, w.held(3))
	}
}

// Hole 6: an entry's age is judged on the repair's clock: one reserved by
// a replica whose clock is an hour behind waits the grace all the same.
func TestReconcileJudgesAgeOnItsOwnClock(t *testing.T) {
	clk := newClock()
	w := newWorld(t, clk, blockOf(podEntry(4, "p", clk.Now().Add(-time.Hour))), "")
	res, err := w.reconcile()
	if err != nil || !w.held(4) || res.RequeueAfter != grace {
		t.Fatalf("first sight of an entry stamped an hour ago: %v, held %v, judged again in %s (want %s)", err, w.held(4), res.RequeueAfter, grace)
	}
	clk.Step(grace)
	if _, err := w.reconcile(); err != nil || w.held(4) {
		t.Fatalf("a grace after first sight, no pod: %v, still held %v", err, w.held(4))
	}
}

// The owners of a block's entries in one namespace are read with one list
// of it, not a read each.
func TestReconcileListsANamespaceOnce(t *testing.T) {
	clk := newClock()
	old := clk.Now().Add(-2 * grace)
	var entries []v1alpha1.MACBlockEntry
	for off := int32(0); off < 10; off++ {
		entries = append(entries, podEntry(off, fmt.Sprintf("gone-%d", off), old))
	}
	kept := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gone-3", UID: "u",
		CreationTimestamp: metav1.NewTime(old.Truncate(time.Second))}}
	w := newWorld(t, clk, blockOf(entries...), "gone-1", kept) // a read of gone-1 alone would fail
	w.reconcile()
	clk.Step(grace + time.Second)
	if _, err := w.reconcile(); err != nil {
		t.Fatalf("the owners were read one by one: %v", err)
	}
	for off := int32(0); off < 10; off++ {
		if w.held(off) != (off == 3) {
			t.Errorf("entry %d held %v", off, w.held(off))
		}
	}
}

// Hole 2: a UID-less entry of a named pod that a later pod of that name
// (created well after) does not carry expires; the pod it was made for,
// stored at once, keeps it.
func TestReconcileTellsTheEntrysPodFromALaterOne(t *testing.T) {
	clk := newClock()
	reserved := clk.Now()
	later := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "retried", UID: "u2",
		CreationTimestamp: metav1.NewTime(reserved.Add(RequestWindow + time.Minute))}}
	same := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "edited", UID: "u1",
		CreationTimestamp: metav1.NewTime(reserved.Add(time.Second).Truncate(time.Second))}}
	w := newWorld(t, clk, blockOf(podEntry(5, "retried", reserved), podEntry(6, "edited", reserved)), "", later, same)
	w.reconcile()
	clk.Step(grace + time.Second)
	if _, err := w.reconcile(); err != nil {
		t.Fatal(err)
	}
	if w.held(5) {
		t.Error("a later pod of the name kept the entry of a refused create")
	}
	if !w.held(6) {
		t.Error("the pod the entry was made for lost it (an edit dropped the network; its interface may still have it)")
	}
}

// An entry seen bound whose pod then stops carrying the MAC (an edit), and
// that is later renewed for the same name with no pod behind it (a create
// refused after admission), waits at most twice the grace from when it was
// first judged unbound, as any renewed entry does: not a grace more from
// the renewal.
func TestReconcileBoundsTheWaitOfAnEntryOnceBound(t *testing.T) {
	clk := newClock()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u",
		CreationTimestamp: metav1.NewTime(clk.Now().Truncate(time.Second))}}
	w := newWorld(t, clk, blockOf(podEntry(5, "p", clk.Now())), "", p)
	ref := carriers.Ref{Kind: carriers.Pod, Namespace: "ns", Name: "p", UID: "u"}
	w.index.Set(carriers.Pod, "ns", "p", []carriers.Carrier{{MAC: w.start + 5, Object: ref, For: ref}})
	if _, err := w.reconcile(); err != nil || !w.held(5) {
		t.Fatalf("bound: %v, held %v", err, w.held(5))
	}
	w.index.Delete(carriers.Pod, "ns", "p") // an edit dropped the network; the pod stays
	if _, err := w.reconcile(); err != nil || !w.held(5) {
		t.Fatalf("its pod exists: %v, held %v", err, w.held(5))
	}
	clk.Step(3 * grace)
	if err := w.api.Delete(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	b := &v1alpha1.MACBlock{}
	if err := w.api.Get(t.Context(), client.ObjectKey{Name: w.start.ObjectName()}, b); err != nil {
		t.Fatal(err)
	}
	ledger.Find(b, 5).Reserved = metav1.NewMicroTime(clk.Now().UTC().Truncate(time.Microsecond))
	if err := w.api.Update(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	w.ledger.Observe(b, false)
	if _, err := w.reconcile(); err != nil || w.held(5) {
		t.Fatalf("renewed three graces after it was first judged unbound, no pod: %v, still held %v", err, w.held(5))
	}
}
