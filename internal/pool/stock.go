package pool

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// The stock: MACs this replica holds in the ledger for itself ahead of
// need, so that an admission hands one out from memory and writes nothing.
//
//   - Refill: the keeper takes candidates at the pool's cursor and writes
//     them as entries held for this replica's incarnation (heartbeat.Kind),
//     one block write per block, off the admission path. The entry exists
//     before any admission answers with its MAC: a replica that dies loses
//     nothing.
//   - Hand-out: an admission takes MACs from the stock while the heartbeat
//     is fresh, checks each is still this incarnation's entry, allocatable
//     and carried by nobody, and remembers whom it went to.
//   - Re-own: once an object is seen carrying a stock MAC, the keeper passes
//     the entry to it, batched per block (every reownEvery).
//   - A MAC handed out and never seen carried (the object was refused by a
//     later admission step, the client gave up) goes back to the stock after
//     the grace period, never earlier.
//   - Size: enough for the admissions of a few refill latencies, at least a
//     block's worth; at most 1/32 of the free addresses, and nothing once
//     fewer than stockFloor are free, so that a nearly full pool is never
//     split into stocks that some replica cannot reach. Surplus, MACs outside
//     a new range and MACs excluded since are given back.
//   - When the heartbeat is not fresh, the stock is empty or off, admissions
//     reserve directly (one block write), as without a stock.
//
// The leader's repair never touches a live incarnation's stock; it re-owns
// what a dead incarnation's objects carry and removes the rest once the
// heartbeat has run out and the grace period passed (repair.Decide).

// Heartbeat says which incarnation's stock may be handed out now.
type Heartbeat interface {
	// Current is the owner of the incarnation's stock entries, and false
	// while its heartbeat is not fresh.
	Current() (v1alpha1.Owner, bool)
}

const (
	// stockMin is the smallest stock worth keeping: four blocks' worth, so
	// a refill (from half of it) fills two or three blocks.
	stockMin = 4 * ledger.BlockSize
	// stockShare: a replica keeps at most 1/stockShare of the free
	// addresses.
	stockShare = 32
	// stockFloor: below this many free addresses, no replica keeps a stock.
	stockFloor = 1024
	// keepEvery is how often the keeper looks at the stock; an admission
	// that leaves it below half its target wakes it at once.
	keepEvery = 250 * time.Millisecond
	// reownEvery is how often handed-out MACs seen carried are passed to
	// their objects: the longer, the more of them share a block write (a
	// MACBlock write costs the API server about four times a pod create's
	// CPU, measured with hack/bench -api-cpu).
	reownEvery = 2 * time.Second
	// sweepEvery is how often the stock is checked against the ledger's
	// entries held for the incarnation (an entry left by a hand-out that
	// failed its checks is given back).
	sweepEvery = 10 * time.Second
)

// handout is a stock MAC given to an admission and not yet seen carried.
type handout struct {
	owner              v1alpha1.Owner
	network, iface     string
	at                 time.Time
}

// stock is the pool's stock; nil when it has none.
type stock struct {
	beat Heartbeat
	max  int
	log  logr.Logger
	wake chan struct{}

	mu sync.Mutex
	// owner is the incarnation free and handed are held for; zero before
	// the first fresh heartbeat.
	owner   v1alpha1.Owner
	closing bool
	free    []mac.MAC
	handed  map[mac.MAC]handout
	// inNamespace indexes handed by the owner's namespace: an admission
	// looks only at its namespace's (HandedTo, waitingIn).
	inNamespace map[string]map[mac.MAC]struct{}
	// loose are this incarnation's entries in neither free nor handed (a
	// hand-out that failed its checks): given back, or re-owned if carried.
	loose map[mac.MAC]bool
	// reowns are the stock MACs an object was seen carrying, with the
	// entry that passes each to it, decided when it was first seen: an
	// edit that drops the MAC from the object before the write does not
	// undo it (a pod keeps the MACs it was given until it is deleted).
	reowns map[mac.MAC]v1alpha1.MACBlockEntry
	// sizing
	handedOut  int     // hand-outs since the last sizing
	rate       float64 // MACs handed out per second, smoothed
	refillTook float64 // seconds a refill write takes, smoothed
	target     int
}

// UseStock gives the pool a stock of at most max MACs, handed out while
// beat is fresh. The keeper (StockKeeper) fills it.
func (p *Pool) UseStock(beat Heartbeat, max int, log logr.Logger) {
	if max <= 0 {
		return
	}
	p.stock = &stock{beat: beat, max: max, log: log, wake: make(chan struct{}, 1),
		handed: map[mac.MAC]handout{}, inNamespace: map[string]map[mac.MAC]struct{}{}, loose: map[mac.MAC]bool{}, reowns: map[mac.MAC]v1alpha1.MACBlockEntry{}, target: stockMin}
}

// fromStock reports whether r's automatic MACs may come from the stock:
// the create of a pod or VM (a StatefulSet's pod gets MACs held for its
// name, a receiver its source's, an update keeps and adds MACs under the
// object's name and UID; all write as before).
func (r Request) fromStock() bool {
	return r.Create && !r.DryRun && !r.Receiver && (r.Owner.Kind == carriers.Pod || r.Owner.Kind == carriers.VirtualMachine)
}

// takeStock gives slot s of r a MAC from the stock, if it has a usable one.
func (p *Pool) takeStock(r Request, s Slot) (mac.MAC, bool) {
	st := p.stock
	owner, fresh := st.beat.Current()
	for {
		st.mu.Lock()
		if !fresh || st.closing || st.owner != owner || len(st.free) == 0 {
			st.mu.Unlock()
			st.signal()
			return 0, false
		}
		m := st.free[len(st.free)-1]
		st.free = st.free[:len(st.free)-1]
		st.hand(m, handout{owner: r.Owner, network: s.Network, iface: s.Interface, at: p.clock.Now()})
		st.handedOut++
		low := len(st.free) < st.target/2
		st.mu.Unlock()
		if low {
			st.signal()
		}
		if p.stockUsable(m, owner) {
			return m, true
		}
		st.mu.Lock()
		if _, ok := st.handed[m]; ok && st.owner == owner {
			st.unhand(m)
			st.loose[m] = true
		}
		st.mu.Unlock()
	}
}

// stockUsable reports whether stock MAC m may be handed out: the ledger
// still holds it for this incarnation, it is allocatable in the range in
// force (excluded ones are not), and no object carries it.
func (p *Pool) stockUsable(m mac.MAC, owner v1alpha1.Owner) bool {
	if e, ok := p.ledger.Lookup(m); !ok || e.Owner != owner {
		return false
	}
	p.mu.Lock()
	_, allocatable := p.alloc.IndexOf(m)
	p.mu.Unlock()
	return allocatable && !p.Carried(m)
}

// hand records that m went to h.owner.
func (st *stock) hand(m mac.MAC, h handout) {
	st.handed[m] = h
	ns := st.inNamespace[h.owner.Namespace]
	if ns == nil {
		ns = map[mac.MAC]struct{}{}
		st.inNamespace[h.owner.Namespace] = ns
	}
	ns[m] = struct{}{}
}

// unhand forgets that m was handed out.
func (st *stock) unhand(m mac.MAC) {
	h, ok := st.handed[m]
	if !ok {
		return
	}
	delete(st.handed, m)
	if ns := st.inNamespace[h.owner.Namespace]; ns != nil {
		delete(ns, m)
		if len(ns) == 0 {
			delete(st.inNamespace, h.owner.Namespace)
		}
	}
}

func (st *stock) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// takeBack accepts explicit MAC m for r without a write when the stock
// handed it to the same named object before and nothing carries it (a
// create retried after a later admission step refused it).
func (p *Pool) takeBack(m mac.MAC, r Request) bool {
	st := p.stock
	if st == nil || p.Carried(m) {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	h, ok := st.handed[m]
	if !ok || !holders.SameOwner(h.owner, r.Owner) {
		return false
	}
	h.at = p.clock.Now()
	st.handed[m] = h
	return true
}

// HandedOut is a stock MAC handed to an object not seen carrying it yet.
type HandedOut struct {
	MAC                mac.MAC
	Network, Interface string
}

// HandedTo lists the stock MACs handed to the named object of kind in
// namespace that no object carries yet: a create of that name retried
// asks for them again and gets them back.
func (p *Pool) HandedTo(kind, namespace, name string) []HandedOut {
	st := p.stock
	if st == nil || name == "" {
		return nil
	}
	st.mu.Lock()
	var out []HandedOut
	for m := range st.inNamespace[namespace] {
		h := st.handed[m]
		if _, carried := st.reowns[m]; !carried && h.owner.Kind == kind && h.owner.Namespace == namespace && h.owner.Name == name {
			out = append(out, HandedOut{MAC: m, Network: h.network, Interface: h.iface})
		}
	}
	st.mu.Unlock()
	return out
}

// giveBack returns MACs a refused request took from the stock: its answer
// never went out, so nothing can carry them.
func (p *Pool) giveBack(macs []mac.MAC) {
	st := p.stock
	if st == nil || len(macs) == 0 {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, m := range macs {
		if _, ok := st.handed[m]; ok {
			st.unhand(m)
			st.free = append(st.free, m)
		}
	}
}

// waitingIn counts the stock MACs handed to objects of namespace since
// then and not seen carried: they wait for their objects like reservations.
func (p *Pool) waitingIn(namespace string, since time.Time) int {
	st := p.stock
	if st == nil {
		return 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for m := range st.inNamespace[namespace] {
		if _, carried := st.reowns[m]; !carried && !st.handed[m].at.Before(since) {
			n++
		}
	}
	return n
}

// noteCarried records, for a stock MAC an object carries now, the entry
// that passes it to that object: the object it was handed to if that one
// carries it, else the oldest carrier. The keeper writes it (reown).
func (p *Pool) noteCarried(m mac.MAC) {
	st := p.stock
	if st == nil {
		return
	}
	st.mu.Lock()
	h, handed := st.handed[m]
	_, noted := st.reowns[m]
	known := handed || st.loose[m] || st.has(m)
	owner := st.owner
	st.mu.Unlock()
	if !known || noted {
		return
	}
	cs := p.carried.Of(m)
	if len(cs) == 0 {
		return
	}
	c := cs[0]
	for _, x := range cs {
		if handed && holders.CarriesFor(h.owner, x) {
			c = x
			break
		}
	}
	e := v1alpha1.MACBlockEntry{Offset: ledger.Offset(m), MAC: m.String(), Owner: holders.OwnerOf(c.For),
		Network: c.Network, Interface: c.Interface, Reserved: metav1.NewMicroTime(p.clock.Now().UTC().Truncate(time.Microsecond))}
	if handed && holders.CarriesFor(h.owner, c) {
		e.Network, e.Interface = h.network, h.iface
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.owner == owner {
		st.reowns[m] = e
	}
}

// has reports whether m is in the free list (linear: the list is short and
// this runs only for MACs an object started carrying).
func (st *stock) has(m mac.MAC) bool {
	for _, x := range st.free {
		if x == m {
			return true
		}
	}
	return false
}

// StockNumbers is this replica's stock: free MACs, and handed out but not
// seen carried.
func (p *Pool) StockNumbers() (free, handed int) {
	st := p.stock
	if st == nil {
		return 0, 0
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	waiting := 0
	for m := range st.handed {
		if _, carried := st.reowns[m]; !carried {
			waiting++
		}
	}
	return len(st.free), waiting
}

// StockKeeper fills and tends the pool's stock. It runs on every replica.
type StockKeeper struct {
	Pool *Pool
	// Grace is how long a handed-out MAC waits for its object before it
	// goes back to the stock.
	Grace time.Duration
}

// NeedLeaderElection is false: every replica keeps a stock.
func (k *StockKeeper) NeedLeaderElection() bool { return false }

// Start tends the stock until ctx ends, then gives back what was never
// handed out.
func (k *StockKeeper) Start(ctx context.Context) error {
	p := k.Pool
	st := p.stock
	if st == nil {
		<-ctx.Done()
		return nil
	}
	var lastReown, lastSweep, lastSize time.Time
	for {
		select {
		case <-ctx.Done():
			k.shutdown()
			return nil
		case <-st.wake:
		case <-time.After(keepEvery):
		}
		now := p.clock.Now()
		if !k.follow() || p.Synced() != nil || !p.Ready() {
			continue
		}
		if now.Sub(lastSize) >= time.Second {
			k.size(now.Sub(lastSize))
			lastSize = now
		}
		if now.Sub(lastSweep) >= sweepEvery {
			k.sweep()
			lastSweep = now
		}
		if now.Sub(lastReown) >= reownEvery {
			k.reown(ctx)
			k.recall(now)
			lastReown = now
		}
		k.trim(ctx)
		k.refill(ctx)
	}
}

// follow keeps the stock on the current incarnation, and reports whether
// the heartbeat is fresh. A new incarnation (the old one's heartbeat went
// stale) starts empty: the old stock is the leader's to re-own or release.
func (k *StockKeeper) follow() bool {
	st := k.Pool.stock
	owner, fresh := st.beat.Current()
	if !fresh {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.owner != owner {
		if st.owner.UID != "" {
			st.log.Info("new heartbeat incarnation: the old stock is left to the leader", "old", st.owner.UID, "new", owner.UID,
				"free", len(st.free), "handed", len(st.handed))
		}
		st.owner, st.free = owner, nil
		st.handed, st.loose, st.reowns = map[mac.MAC]handout{}, map[mac.MAC]bool{}, map[mac.MAC]v1alpha1.MACBlockEntry{}
		st.inNamespace = map[string]map[mac.MAC]struct{}{}
	}
	return true
}

// size sets the target from the hand-out rate and the refill latency:
// enough for the admissions of four refill latencies (at least of a
// second: the keeper looks every keepEvery), so a refill started at half
// the target lands before the stock runs dry.
func (k *StockKeeper) size(since time.Duration) {
	st := k.Pool.stock
	st.mu.Lock()
	defer st.mu.Unlock()
	if since > 0 && since < time.Minute {
		st.rate = 0.5*st.rate + 0.5*float64(st.handedOut)/since.Seconds()
	}
	st.handedOut = 0
	want := int(math.Ceil(st.rate * max(st.refillTook, keepEvery.Seconds()) * 4))
	st.target = min(max(want, stockMin), st.max)
}

// capacity is the most the stock may hold now: 1/stockShare of the free
// addresses, none below stockFloor.
func (k *StockKeeper) capacity() int {
	s := k.Pool.Stats()
	if s.Size <= s.Held || s.Size-s.Held < stockFloor {
		return 0
	}
	return int(min(uint64(k.Pool.stock.max), (s.Size-s.Held)/stockShare))
}

// refill adds entries for this incarnation up to the target, when the
// stock is below half of it.
func (k *StockKeeper) refill(ctx context.Context) {
	p, st := k.Pool, k.Pool.stock
	capacity := k.capacity() // (the pool's lock, never under the stock's)
	st.mu.Lock()
	owner, have, target := st.owner, len(st.free), min(st.target, capacity)
	st.mu.Unlock()
	if have >= target/2 || target == 0 {
		return
	}
	// Candidates up to the target, then on to the end of the last one's
	// block: a block write costs the same for one entry or 64, so a refill
	// fills the blocks it writes.
	var picks []mac.MAC
	for {
		m, err := p.candidate()
		if err != nil {
			break
		}
		if len(picks) >= target-have && ledger.BlockStart(m) != ledger.BlockStart(picks[len(picks)-1]) {
			p.Done(&Result{picked: []mac.MAC{m}}) // the next block: not this time
			break
		}
		picks = append(picks, m)
	}
	defer p.Done(&Result{picked: picks})
	reserved := metav1.NewMicroTime(p.clock.Now().UTC().Truncate(time.Microsecond))
	start := time.Now()
	written := p.writeByBlock(ctx, picks, func(b *v1alpha1.MACBlock, ms []mac.MAC) ([]mac.MAC, bool) {
		var out []mac.MAC
		for _, m := range ms {
			if ledger.Find(b, ledger.Offset(m)) != nil || p.Carried(m) {
				continue // another replica was first, or it is carried
			}
			ledger.Put(b, v1alpha1.MACBlockEntry{Offset: ledger.Offset(m), MAC: m.String(), Owner: owner, Reserved: reserved})
			out = append(out, m)
		}
		return out, len(out) > 0
	}, metrics.StockRefills.Inc)
	took := time.Since(start).Seconds()
	st.mu.Lock()
	defer st.mu.Unlock()
	st.refillTook = 0.7*st.refillTook + 0.3*took
	if st.owner != owner {
		return // the incarnation changed meanwhile: the entries are the old one's
	}
	st.free = append(st.free, written...)
}

// trim gives back free MACs the stock may not keep: outside the range in
// force or excluded, and beyond its capacity as the pool fills.
func (k *StockKeeper) trim(ctx context.Context) {
	p, st := k.Pool, k.Pool.stock
	capacity := k.capacity()
	p.mu.Lock()
	alloc := p.alloc
	p.mu.Unlock()
	st.mu.Lock()
	var give []mac.MAC
	kept := st.free[:0]
	for _, m := range st.free {
		if _, ok := alloc.IndexOf(m); !ok {
			give = append(give, m)
		} else {
			kept = append(kept, m)
		}
	}
	st.free = kept
	if extra := len(st.free) - capacity; extra > 0 {
		give = append(give, st.free[len(st.free)-extra:]...)
		st.free = st.free[:len(st.free)-extra]
	}
	var loose []mac.MAC
	for m := range st.loose {
		if _, carried := st.reowns[m]; !carried {
			loose = append(loose, m)
		}
	}
	owner := st.owner
	st.mu.Unlock()
	// A loose entry nothing carries is given back (release checks again in
	// the write); a carried one waits for its re-own.
	for _, m := range loose {
		if !p.Carried(m) {
			give = append(give, m)
		}
	}
	if len(give) > 0 {
		k.release(ctx, owner, give)
	}
}

// release removes the entries of macs that are still this incarnation's
// and that nothing carries (a carried one is re-owned instead, later).
func (k *StockKeeper) release(ctx context.Context, owner v1alpha1.Owner, macs []mac.MAC) {
	p := k.Pool
	released := p.writeByBlock(ctx, macs, func(b *v1alpha1.MACBlock, ms []mac.MAC) ([]mac.MAC, bool) {
		var out []mac.MAC
		for _, m := range ms {
			if e := ledger.Find(b, ledger.Offset(m)); e != nil && e.Owner == owner && !p.Carried(m) {
				ledger.Remove(b, ledger.Offset(m))
				out = append(out, m)
			}
		}
		return out, len(out) > 0
	}, nil)
	metrics.StockReleased.Add(float64(len(released)))
	st := p.stock
	st.mu.Lock()
	for _, m := range released {
		delete(st.loose, m)
	}
	st.mu.Unlock()
	if len(released) < len(macs) {
		// A write failed or the MAC is carried now: the sweep finds what
		// is still this incarnation's and tries again.
		k.Pool.stock.log.V(1).Info("some stock entries were not given back yet", "asked", len(macs), "released", len(released))
	}
}

// reown passes every stock entry whose MAC an object was seen carrying to
// that object (noteCarried decided the entry), one write per block.
func (k *StockKeeper) reown(ctx context.Context) {
	p, st := k.Pool, k.Pool.stock
	st.mu.Lock()
	owner := st.owner
	entries := make(map[mac.MAC]v1alpha1.MACBlockEntry, len(st.reowns))
	var macs []mac.MAC
	for m, e := range st.reowns {
		entries[m] = e
		macs = append(macs, m)
	}
	st.mu.Unlock()
	if len(macs) == 0 {
		return
	}
	var countMu sync.Mutex
	reownedIn := map[string]int{} // per block, from its last attempt
	done := p.writeByBlock(ctx, macs, func(b *v1alpha1.MACBlock, ms []mac.MAC) ([]mac.MAC, bool) {
		changed := 0
		for _, m := range ms {
			if e := ledger.Find(b, ledger.Offset(m)); e != nil && e.Owner == owner {
				ledger.Put(b, entries[m])
				changed++
			}
			// One that is not the stock's any more (the leader re-owned
			// it, or it was removed) is done all the same.
		}
		countMu.Lock()
		reownedIn[b.Name] = changed
		countMu.Unlock()
		return ms, changed > 0
	}, nil)
	stored := map[string]bool{}
	for _, m := range done {
		stored[ledger.BlockName(m)] = true
	}
	for name, n := range reownedIn {
		if stored[name] {
			metrics.StockReowns.Add(float64(n))
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.owner != owner {
		return
	}
	for _, m := range done {
		delete(st.reowns, m)
		st.unhand(m)
		delete(st.loose, m)
		st.dropFree(m)
	}
}

// dropFree takes m out of the free list.
func (st *stock) dropFree(m mac.MAC) {
	for i, x := range st.free {
		if x == m {
			st.free = append(st.free[:i], st.free[i+1:]...)
			return
		}
	}
}

// recall puts handed-out MACs back into the stock once their grace has
// passed without an object carrying them.
func (k *StockKeeper) recall(now time.Time) {
	st := k.Pool.stock
	st.mu.Lock()
	defer st.mu.Unlock()
	for m, h := range st.handed {
		if _, carried := st.reowns[m]; !carried && now.Sub(h.at) >= k.Grace {
			st.unhand(m)
			st.free = append(st.free, m)
		}
	}
}

// sweep finds this incarnation's entries that the stock lost track of and
// marks them loose (given back, or re-owned if carried).
func (k *StockKeeper) sweep() {
	p, st := k.Pool, k.Pool.stock
	st.mu.Lock()
	owner := st.owner
	st.mu.Unlock()
	entries := p.ledger.OwnedBy(owner.Kind, owner.Namespace, owner.Name)
	var loose []mac.MAC
	defer func() {
		for _, m := range loose {
			p.noteCarried(m) // re-owned if carried
		}
	}()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.owner != owner {
		return
	}
	known := make(map[mac.MAC]bool, len(st.free))
	for _, m := range st.free {
		known[m] = true
	}
	for _, e := range entries {
		if e.Owner != owner || known[e.MAC] || st.loose[e.MAC] {
			continue
		}
		if _, ok := st.handed[e.MAC]; ok {
			continue
		}
		st.loose[e.MAC] = true
		loose = append(loose, e.MAC)
	}
}

// shutdown gives back the stock never handed out. What was handed out and
// not re-owned stays held for the incarnation: its object may be on the
// way, and the leader re-owns it once its heartbeat has run out. Only when
// nothing is left does the heartbeat Lease go too.
func (k *StockKeeper) shutdown() {
	p, st := k.Pool, k.Pool.stock
	st.mu.Lock()
	st.closing = true
	owner, give := st.owner, st.free
	st.free = nil
	for m := range st.loose {
		give = append(give, m)
	}
	waiting := len(st.handed)
	st.mu.Unlock()
	if owner.UID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if waiting > 0 {
		k.reown(ctx)
	}
	k.release(ctx, owner, give)
	st.mu.Lock()
	waiting = len(st.handed)
	st.mu.Unlock()
	left := 0
	for _, e := range p.ledger.OwnedBy(owner.Kind, owner.Namespace, owner.Name) {
		if e.Owner == owner {
			left++
		}
	}
	st.log.Info("stock given back", "released", len(give), "stillHeld", left, "handedNotCarried", waiting)
	if stopper, ok := st.beat.(interface{ Stop(context.Context) error }); ok && left == 0 {
		if err := stopper.Stop(ctx); err != nil {
			st.log.Error(err, "deleting the heartbeat Lease; the leader deletes it once it runs out")
		}
	}
}

// blockChange edits one block for some of ms, and returns those it is done
// with and whether it changed the block.
type blockChange func(b *v1alpha1.MACBlock, ms []mac.MAC) (done []mac.MAC, changed bool)

// writeByBlock applies change to each block of macs, one write per block,
// the blocks at once, and returns the MACs the stored writes covered.
// count, if set, is called once per stored write.
func (p *Pool) writeByBlock(ctx context.Context, macs []mac.MAC, change blockChange, count func()) []mac.MAC {
	byBlock := map[mac.MAC][]mac.MAC{}
	for _, m := range macs {
		byBlock[ledger.BlockStart(m)] = append(byBlock[ledger.BlockStart(m)], m)
	}
	type outcome struct {
		macs []mac.MAC
		err  error
	}
	results := make(chan outcome, len(byBlock))
	slots := make(chan struct{}, blockWrites)
	for start, ms := range byBlock {
		go func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			// The change runs in the ledger's flush, which may outlive
			// Update when ctx ends: what it did is read under a lock, and
			// only from a write that is known to be stored.
			var mu sync.Mutex
			var done []mac.MAC
			err := p.ledger.Update(ctx, start, func(b *v1alpha1.MACBlock) (bool, error) {
				did, changed := change(b, ms)
				mu.Lock()
				done = did
				mu.Unlock()
				return changed, nil
			})
			mu.Lock()
			defer mu.Unlock()
			results <- outcome{done, err}
		}()
	}
	var out []mac.MAC
	var errs []error
	for range byBlock {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if len(r.macs) > 0 && count != nil {
			count()
		}
		out = append(out, r.macs...)
	}
	if err := errors.Join(errs...); err != nil && p.stock != nil {
		p.stock.log.Error(err, "a stock write failed; admissions reserve directly meanwhile if the stock runs dry")
	}
	return out
}
