package pool

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

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
	var mu sync.Mutex // guards out and count
	var out []mac.MAC
	errs := inBlocks(macs, func(m mac.MAC) mac.MAC { return m }, func(start mac.MAC, ms []mac.MAC) error {
		// The change runs in the ledger's flush, which may outlive Update
		// when ctx ends: what it did is read under a lock, and only from a
		// write that is known to be stored.
		var did sync.Mutex
		var done []mac.MAC
		err := p.ledger.Update(ctx, start, func(b *v1alpha1.MACBlock) (bool, error) {
			macs, changed := change(b, ms)
			did.Lock()
			done = macs
			did.Unlock()
			return changed, nil
		})
		if err != nil {
			return err
		}
		did.Lock()
		defer did.Unlock()
		mu.Lock()
		defer mu.Unlock()
		if len(done) > 0 && count != nil {
			count()
		}
		out = append(out, done...)
		return nil
	})
	if err := errors.Join(errs...); err != nil && p.stock != nil {
		p.stock.log.Error(err, "a stock write failed; admissions reserve directly meanwhile if the stock runs dry")
	}
	return out
}
