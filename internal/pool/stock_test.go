package pool

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// fakeBeat is a heartbeat the test turns on and off.
type fakeBeat struct {
	mu    sync.Mutex
	owner v1alpha1.Owner
	fresh bool
}

func (b *fakeBeat) Current() (v1alpha1.Owner, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owner, b.fresh
}

func (b *fakeBeat) set(inc string, fresh bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.owner = v1alpha1.Owner{Kind: heartbeat.Kind, Namespace: "kubemacpool-system", Name: "replica-a", UID: types.UID(inc)}
	b.fresh = fresh
}

type stockFixture struct {
	pool    *Pool
	keeper  *StockKeeper
	beat    *fakeBeat
	api     client.Client
	carried *carriers.Index
	clock   *clocktesting.FakeClock
}

// newStockFixture is a pool with a stock over a range of size addresses,
// writing through a fake API client (the integration tests use the real
// API server; this one exercises the keeper's steps one by one).
func newStockFixture(t *testing.T, size uint64) *stockFixture {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	api := fake.NewClientBuilder().WithScheme(scheme).Build()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	l := &ledger.Ledger{Writer: api, Live: api, Log: logr.Discard()}
	p := New(l, clk)
	// The stream delivers ledger changes to the pool in production; the
	// test hands them over directly.
	l.OnChange = func(m mac.MAC, on bool) { go p.SetReserved(m, on) }
	ix := carriers.NewIndex(func(m mac.MAC, on bool) { go p.SetCarried(m, on) })
	p.WatchCarried(ix)
	alloc, err := mac.NewAllocatable(mac.Range{Start: 0x0a0000000000, End: 0x0a0000000000 + mac.MAC(size-1)}, false)
	if err != nil {
		t.Fatal(err)
	}
	p.SetRange(alloc)
	beat := &fakeBeat{}
	beat.set("inc-1", true)
	p.UseStock(beat, 512, logr.Discard())
	k := &StockKeeper{Pool: p, Grace: time.Minute}
	if !k.follow() {
		t.Fatal("a fresh heartbeat must be followed")
	}
	return &stockFixture{pool: p, keeper: k, beat: beat, api: api, carried: ix, clock: clk}
}

func (f *stockFixture) entries(t *testing.T) map[mac.MAC]v1alpha1.MACBlockEntry {
	t.Helper()
	list := &v1alpha1.MACBlockList{}
	if err := f.api.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	out := map[mac.MAC]v1alpha1.MACBlockEntry{}
	for i := range list.Items {
		start, _ := ledger.StartOf(&list.Items[i])
		for _, e := range list.Items[i].Spec.Entries {
			out[start+mac.MAC(e.Offset)] = e
		}
	}
	return out
}

func podRequest(name string) Request {
	return Request{Owner: v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", Name: name}, Create: true, Slots: []Slot{{Network: "ns/a"}, {Network: "ns/b"}}}
}

// The life of stock MACs: written as the replica's entries before any is
// handed out; handed out with no write; passed to the object once it is
// seen carrying the MAC; a hand-out never carried comes back only after
// the grace period; a refused request's hand-outs come back at once.
func TestStockLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newStockFixture(t, 1<<16)
	f.keeper.refill(ctx)
	stocked := f.entries(t)
	if len(stocked) < stockMin || len(stocked) >= stockMin+ledger.BlockSize {
		t.Fatalf("first refill wrote %d entries, want %d and the rest of the last block", len(stocked), stockMin)
	}
	last := mac.MAC(0)
	for m := range stocked {
		last = max(last, m)
	}
	if ledger.Offset(last) != ledger.BlockSize-1 {
		t.Fatalf("the refill stopped at %s, not at the end of its block", last)
	}
	owner, _ := f.beat.Current()
	for m, e := range stocked {
		if e.Owner != owner {
			t.Fatalf("stock entry %s is held for %+v, want the replica's incarnation", m, e.Owner)
		}
	}

	res, err := f.pool.Reserve(ctx, podRequest("p1"))
	if err != nil {
		t.Fatal(err)
	}
	f.pool.Done(res)
	if len(res.Stocked) != 2 || len(res.Written) != 0 {
		t.Fatalf("a pod with two networks took %d MACs from the stock and wrote %d; want 2 and 0", len(res.Stocked), len(res.Written))
	}
	for _, m := range res.MACs {
		if _, ok := stocked[m]; !ok {
			t.Fatalf("MAC %s handed out is not a stock entry", m)
		}
	}
	if got := f.pool.HandedTo(carriers.Pod, "ns", "p1"); len(got) != 2 {
		t.Fatalf("HandedTo = %v, want the two MACs of p1", got)
	}

	// The pod is stored carrying the first MAC only (say the second network
	// was dropped by another webhook): the first is re-owned, the second
	// waits.
	pod := carriers.Ref{Kind: carriers.Pod, Namespace: "ns", Name: "p1", UID: "uid-p1"}
	f.carried.Set(carriers.Pod, "ns", "p1", []carriers.Carrier{{MAC: res.MACs[0], Object: pod, For: pod, Network: "ns/a"}})
	f.pool.noteCarried(res.MACs[0]) // what SetCarried does, without waiting for the goroutine
	// An edit drops it again before the re-own is written: the pod keeps
	// the MAC it was given all the same.
	f.carried.Delete(carriers.Pod, "ns", "p1")
	f.keeper.reown(ctx)
	e := f.entries(t)[res.MACs[0]]
	if e.Owner.Kind != carriers.Pod || e.Owner.Name != "p1" || e.Owner.UID != "uid-p1" || e.Network != "ns/a" {
		t.Fatalf("re-owned entry = %+v, want pod p1's on network ns/a", e)
	}

	// A retried create of p1 gets the uncarried MAC back without a write.
	retry := podRequest("p1")
	retry.Slots = []Slot{{Network: "ns/b", Requested: res.MACs[1]}}
	again, err := f.pool.Reserve(ctx, retry)
	if err != nil || again.MACs[0] != res.MACs[1] || len(again.Written) != 0 {
		t.Fatalf("retried create: %v, %v (wrote %d)", again.MACs, err, len(again.Written))
	}
	f.pool.Done(again)

	// Within the grace period it is never handed out again.
	free, _ := f.pool.StockNumbers()
	for range free {
		r, err := f.pool.Reserve(ctx, Request{Owner: v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", GenerateName: "x-"}, Create: true, Slots: []Slot{{}}})
		if err != nil {
			t.Fatal(err)
		}
		if r.MACs[0] == res.MACs[1] {
			t.Fatalf("MAC %s handed out twice within the grace period", r.MACs[0])
		}
		f.pool.Done(r)
	}
	f.clock.Step(time.Minute)
	f.keeper.recall(f.clock.Now())
	if f.pool.stock.has(res.MACs[1]) != true {
		t.Fatalf("MAC %s handed out and never carried is not back in stock after the grace period", res.MACs[1])
	}

	// A refused request gives its stock MACs back at once.
	before, _ := f.pool.StockNumbers()
	refused, err := f.pool.Reserve(ctx, podRequest("refused"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.pool.Release(ctx, podRequest("refused").Owner, refused); err != nil {
		t.Fatal(err)
	}
	if after, _ := f.pool.StockNumbers(); after != before {
		t.Fatalf("stock after a refused request = %d, want %d", after, before)
	}
}

// Without a fresh heartbeat nothing comes from the stock: admissions write.
// A new incarnation starts with an empty stock, the old one's entries left
// to the leader.
func TestStockNeedsAFreshHeartbeat(t *testing.T) {
	ctx := context.Background()
	f := newStockFixture(t, 1<<16)
	f.keeper.refill(ctx)
	stocked := len(f.entries(t))
	f.beat.set("inc-1", false)
	res, err := f.pool.Reserve(ctx, podRequest("p"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Stocked) != 0 || len(res.Written) != 2 {
		t.Fatalf("stale heartbeat: %d from stock, %d written; want 0 and 2", len(res.Stocked), len(res.Written))
	}
	f.pool.Done(res)
	f.beat.set("inc-2", true)
	if !f.keeper.follow() {
		t.Fatal("fresh again")
	}
	if free, _ := f.pool.StockNumbers(); free != 0 {
		t.Fatalf("a new incarnation starts with %d MACs of the old one's stock", free)
	}
	old := 0
	for _, e := range f.entries(t) {
		if e.Owner.UID == "inc-1" {
			old++
		}
	}
	if old != stocked {
		t.Fatalf("the old incarnation's entries: %d, want %d left for the leader", old, stocked)
	}
}

// A range change gives back the stock outside it; a pool nearly full keeps
// no stock at all, so every free address is reachable by every replica.
func TestStockFollowsRangeAndFill(t *testing.T) {
	ctx := context.Background()
	f := newStockFixture(t, 1<<16)
	f.keeper.refill(ctx)
	var inside mac.MAC
	for m := range f.entries(t) {
		inside = m
		break
	}
	// The new range holds one of the stock MACs and space enough to keep
	// a stock.
	alloc, err := mac.NewAllocatable(mac.Range{Start: inside, End: inside + 1<<15}, false)
	if err != nil {
		t.Fatal(err)
	}
	f.pool.SetRange(alloc)
	f.keeper.trim(ctx)
	for m := range f.entries(t) {
		if !alloc.Contains(m) {
			t.Fatalf("stock MAC %s outside the new range %s was kept", m, alloc.Range())
		}
	}
	// EXCLUDED_MACS applies to the stock: an excluded stock MAC is never
	// handed out, and given back.
	var excluded mac.MAC
	for m := range f.entries(t) {
		excluded = m
		break
	}
	f.pool.SetRange(alloc.Excluding(mac.Range{Start: excluded, End: excluded}))
	free, _ := f.pool.StockNumbers()
	for range free + 1 {
		r, err := f.pool.Reserve(ctx, Request{Owner: v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", GenerateName: "x-"}, Create: true, Slots: []Slot{{}}})
		if err != nil {
			t.Fatal(err)
		}
		if r.MACs[0] == excluded {
			t.Fatalf("excluded MAC %s handed out from the stock", excluded)
		}
		f.pool.Done(r)
	}
	f.keeper.trim(ctx)
	if e, ok := f.entries(t)[excluded]; ok && e.Owner.Kind == heartbeat.Kind {
		t.Fatalf("excluded MAC %s kept in stock", excluded)
	}
	// (What was handed out above waits for its objects; past the grace it
	// is back in the stock.)
	f.clock.Step(time.Minute)
	f.keeper.recall(f.clock.Now())
	// A small range: below stockFloor free addresses, the stock goes.
	small, err := mac.NewAllocatable(mac.Range{Start: 0x0a0000000000, End: 0x0a0000000000 + stockFloor - 2}, false)
	if err != nil {
		t.Fatal(err)
	}
	f.pool.SetRange(small)
	f.keeper.trim(ctx)
	f.keeper.refill(ctx)
	n := 0
	for _, e := range f.entries(t) {
		if e.Owner.Kind == heartbeat.Kind {
			n++
		}
	}
	if n != 0 {
		t.Fatalf("a pool with fewer than %d free addresses keeps %d in stock", stockFloor, n)
	}
}

// has reports whether m is in the stock's free list.
func (st *stock) has(m mac.MAC) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, x := range st.free {
		if x == m {
			return true
		}
	}
	return false
}
