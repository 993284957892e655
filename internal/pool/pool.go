// Package pool chooses MACs and reserves them in the ledger. Every replica
// runs one. Its in-memory index (ledger entries, carried MACs, this
// replica's picks in flight) is only a hint for choosing a candidate that is
// probably free: the block update decides.
package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// maxRounds bounds how often one request picks again when other replicas
// won its candidates. The index catches up with the block it lost, so one
// more round nearly always does; the bound keeps a broken view from
// looping forever.
const maxRounds = 16

// ErrNotReady is returned before the range configuration has been loaded,
// and while the indexes of what is held are not synced (ServeWhen).
var ErrNotReady = errors.New("the MAC pool is not ready yet; retry shortly")

// ExhaustedError says no allocatable MAC is free.
type ExhaustedError struct {
	Range mac.Range
	Size  uint64
	Held  uint64
	// Excluding says EXCLUDED_MACS took addresses out of Size.
	Excluding bool
	// Share names the clusters the blocks are split with, when it is this
	// cluster's share that has no free MAC.
	Share []string
}

func (e *ExhaustedError) Error() string {
	excluded := ""
	if e.Excluding {
		excluded = " (the MACs EXCLUDED_MACS lists are not counted)"
	}
	if len(e.Share) > 0 {
		return fmt.Sprintf("no free MAC address in this cluster's share of range %s: its blocks are split between clusters %s, and this cluster picks only in its own blocks that no peer holds MACs in "+
			"(%d of the %d allocatable addresses are held%s); delete objects that hold MACs or widen the range in the range ConfigMap of every cluster",
			e.Range, strings.Join(e.Share, ", "), e.Held, e.Size, excluded)
	}
	return fmt.Sprintf("no free MAC address in range %s: all %d allocatable addresses are held%s (%d held); "+
		"delete objects that hold MACs or widen the range in the range ConfigMap", e.Range, e.Size, excluded, e.Held)
}

// ExcludedError says a MAC asked for explicitly is one the pool never
// hands out.
type ExcludedError struct {
	MAC   mac.MAC
	Entry mac.Range // the exclusion holding it
}

func (e *ExcludedError) Error() string {
	if e.Entry.Start == e.Entry.End && e.MAC == mac.KubeVirtInPodBridge {
		return fmt.Sprintf("MAC address %s is reserved by KubeVirt for the in-pod bridge and never handed out; choose another MAC or leave it out to get one assigned", e.MAC)
	}
	entry := e.Entry.Start.String()
	if e.Entry.Start != e.Entry.End {
		entry = e.Entry.String()
	}
	return fmt.Sprintf("MAC address %s is excluded from the pool by EXCLUDED_MACS entry %s in the range ConfigMap; choose another MAC or leave it out to get one assigned", e.MAC, entry)
}

// excludedBy returns the exclusion of the range in force that holds m.
func (p *Pool) excludedBy(m mac.MAC) (mac.Range, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.alloc.ExcludedBy(m)
}

// Slot is one interface of a request that needs a MAC.
type Slot struct {
	Network   string
	Interface string
	// Requested is the MAC the user asked for; zero to get one from the pool.
	Requested mac.MAC
}

// Request is every MAC one admission needs, for one owner.
type Request struct {
	Owner v1alpha1.Owner
	Slots []Slot
	// DryRun asks for an answer without reserving anything.
	DryRun bool
	// Create says the object is being created: its automatic MACs may
	// come from the stock. An update writes its block as before, so that
	// what an edit adds is held for the object (its name and UID) at once.
	Create bool
	// Receiver says the owner is a VM waiting to receive a decentralized
	// live migration: it may ask for MACs another VM holds (its source, in
	// any namespace), which stay held by that VM; the repair passes them to
	// the receiver once the source is gone.
	Receiver bool
}

// Result is what Reserve gave a request.
type Result struct {
	// MACs, one per slot.
	MACs []mac.MAC
	// Written are the entries this request added (not those of an earlier
	// attempt it accepted): only these are Release'd if the request is
	// refused after all.
	Written []mac.MAC
	// Reserved is the time written into the request's entries.
	Reserved metav1.MicroTime
	// Stocked are the MACs this request took from the replica's stock (no
	// write): given back to the stock if it is refused after all.
	Stocked []mac.MAC
	// picked are candidates marked in memory, unmarked by Done.
	picked []mac.MAC
}

// Pool chooses candidates and reserves them through the ledger.
type Pool struct {
	ledger *ledger.Ledger
	clock  clock.PassiveClock

	// carried is the index of MACs that objects carry; nil in tests of the
	// pool alone. Its changes reach the pool's marks through the change
	// stream (SetCarried), after the index has them: the pool never holds
	// its lock while taking another's, nor is called under another's.
	carried *carriers.Index
	// synced, when set, says why the indexes of held MACs are not complete
	// yet (nil once they are); allocation waits for them.
	synced func() error
	// maxPending bounds a namespace's reservations waiting for their
	// objects (reserved within grace, not seen carried); 0: no bound.
	maxPending int
	grace      time.Duration
	// stock is what this replica holds ahead for admissions (nil: none).
	stock *stock
	// peers are the ledgers of the peer clusters (nil: none); share says
	// in which blocks this cluster picks new MACs (nil: all).
	peers PeerLedgers

	mu     sync.Mutex
	loaded bool
	alloc  mac.Allocatable
	held   *indexSet // allocatable indices that are reserved, carried or picked
	cursor uint64
	// marks has every MAC the cluster holds, in range or not, and why.
	marks map[mac.MAC]mark
	share Share
	// peerBlocks counts, per block, the MACs that peer clusters hold in
	// it: new MACs are picked only in blocks where no peer holds any.
	peerBlocks map[mac.MAC]int
}

// PeerLedgers are the entries peer clusters hold (peers.Set).
type PeerLedgers interface {
	Of(m mac.MAC) []holders.PeerEntry
}

// Share says in which blocks this cluster picks new MACs (peers.Split).
type Share interface {
	// Mine reports whether this cluster picks new MACs in m's block.
	Mine(m mac.MAC) bool
	// Names are the clusters sharing the blocks.
	Names() []string
	// Alone says no other cluster shares them.
	Alone() bool
}

// mark says why a MAC is held; a MAC leaves the index when all are gone.
type mark uint8

const (
	reserved mark = 1 << iota // the ledger has an entry for it
	carried                   // an object carries it
	picked                    // a request on this replica is reserving it
	peerHeld                  // a peer cluster's ledger has an entry for it
)

// New returns a pool that reserves in l, timing entries by clk. It is not
// ready until SetRange is called.
func New(l *ledger.Ledger, clk clock.PassiveClock) *Pool {
	return &Pool{ledger: l, clock: clk, marks: map[mac.MAC]mark{}, peerBlocks: map[mac.MAC]int{}}
}

// WatchPeers makes Reserve refuse explicit MACs that peer clusters hold
// and skip automatic ones they hold; SetPeerHeld keeps the candidate index
// in step, SetShare says where new MACs may be picked.
func (p *Pool) WatchPeers(l PeerLedgers) { p.peers = l }

// SetShare makes new MACs come only from the blocks share gives this
// cluster; nil: every block.
func (p *Pool) SetShare(share Share) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if share != nil && share.Alone() {
		share = nil
	}
	p.share = share
}

// SetPeerHeld records that some peer cluster holds m (or none does any
// more). The change stream calls it, with what the peers' index says now.
func (p *Pool) SetPeerHeld(m mac.MAC, held bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if was := p.marks[m]&peerHeld != 0; was == held {
		return
	}
	p.setMarkLocked(m, peerHeld, held)
	start := ledger.BlockStart(m)
	if held {
		p.peerBlocks[start]++
	} else if p.peerBlocks[start]--; p.peerBlocks[start] <= 0 {
		delete(p.peerBlocks, start)
	}
}

// pickableLocked reports whether new MACs may be picked in m's block: the
// split gives it to this cluster, and no peer holds anything in it.
func (p *Pool) pickableLocked(m mac.MAC) bool {
	if p.share == nil {
		return true
	}
	return p.share.Mine(m) && p.peerBlocks[ledger.BlockStart(m)] == 0
}

// peerHolds reports whether a peer cluster's ledger holds m.
func (p *Pool) peerHolds(m mac.MAC) bool { return p.peers != nil && len(p.peers.Of(m)) > 0 }

// LimitPending makes Reserve refuse a request that would leave more than
// max reservations of one namespace waiting for their objects: reserved
// within grace and not seen carried. Pods whose spec is invalid pass
// mutation (validation runs after it), so without a bound a loop of such
// creates would hold a reservation each for the grace period.
func (p *Pool) LimitPending(max int, grace time.Duration) { p.maxPending, p.grace = max, grace }

// PendingLimitError says a namespace has too many reservations waiting.
type PendingLimitError struct {
	Namespace string
	Pending   int
	Max       int
	Grace     time.Duration
}

func (e *PendingLimitError) Error() string {
	return fmt.Sprintf("namespace %s has %d MAC reservations waiting for their objects (made in the last %s, not seen carried yet), and at most %d may wait (kubemacpool's --max-pending-per-namespace): "+
		"objects refused after kubemacpool admitted them (an invalid spec, another webhook) leave theirs until the grace period ends; retry later, or fix what refuses them",
		e.Namespace, e.Pending, e.Grace, e.Max)
}

// checkPending refuses r if its namespace has too many reservations
// waiting. A reservation waits while nothing carries its MAC, as the
// carrier index says.
func (p *Pool) checkPending(r Request) error {
	if p.maxPending <= 0 || r.DryRun {
		return nil
	}
	since := p.clock.Now().Add(-p.grace)
	pending := p.waitingIn(r.Owner.Namespace, since)
	var carriedNow []mac.MAC
	for _, m := range p.ledger.Recent(r.Owner.Namespace, since) {
		if p.Carried(m) {
			carriedNow = append(carriedNow, m)
		} else {
			pending++
		}
	}
	if len(carriedNow) > 0 {
		// Bound: they wait for nothing; the next admission need not look.
		p.ledger.ForgetRecent(r.Owner.Namespace, carriedNow)
	}
	if pending+len(r.Slots) > p.maxPending {
		return &PendingLimitError{Namespace: r.Owner.Namespace, Pending: pending, Max: p.maxPending, Grace: p.grace}
	}
	return nil
}

// WatchCarried makes Reserve refuse MACs that objects in ix carry for
// others. Candidates skip carried MACs through SetCarried, which ix calls.
func (p *Pool) WatchCarried(ix *carriers.Index) { p.carried = ix }

// ServeWhen makes Reserve fail with ErrNotReady while synced returns an
// error: a replica whose indexes have not seen every ledger entry and every
// carried MAC would pick MACs in use. Readiness keeps a Service from
// sending such a replica requests; this covers callers that do not go
// through one.
func (p *Pool) ServeWhen(synced func() error) { p.synced = synced }

// Synced returns why the indexes of held MACs are not complete yet, or nil.
func (p *Pool) Synced() error {
	if p.synced == nil {
		return nil
	}
	return p.synced()
}

func (p *Pool) checkSynced() error {
	if err := p.Synced(); err != nil {
		return fmt.Errorf("%w (%v)", ErrNotReady, err)
	}
	return nil
}

// SetCarried records that some object carries m (or none does any more).
// It is the carriers.Index callback.
func (p *Pool) SetCarried(m mac.MAC, isCarried bool) {
	p.setMark(m, carried, isCarried)
	if isCarried {
		p.noteCarried(m) // a stock MAC seen carried is re-owned
	}
}

// SetReserved records that the ledger has an entry for m (or no longer
// has). It is the ledger's callback.
func (p *Pool) SetReserved(m mac.MAC, isReserved bool) { p.setMark(m, reserved, isReserved) }

func (p *Pool) setMark(m mac.MAC, why mark, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setMarkLocked(m, why, on)
}

// setMarkLocked sets or clears one reason for m being held and keeps the
// candidate index in step: an index is held while any reason is.
func (p *Pool) setMarkLocked(m mac.MAC, why mark, on bool) {
	before := p.marks[m]
	after := before &^ why
	if on {
		after |= why
	}
	if after == 0 {
		delete(p.marks, m)
	} else {
		p.marks[m] = after
	}
	if !p.loaded || (before == 0) == (after == 0) {
		return
	}
	if i, ok := p.alloc.IndexOf(m); ok {
		if after == 0 {
			p.held.Remove(i)
		} else {
			p.held.Add(i)
		}
	}
}

// SetRange switches to a new allocatable set and rebuilds the index from
// the MACs known to be held. MACs held outside the new range stay held: they
// simply are no longer candidates.
func (p *Pool) SetRange(alloc mac.Allocatable) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.alloc = alloc
	p.rebuildLocked()
	// A random start keeps replicas (and restarts of one) from walking the
	// same candidates in step.
	p.cursor = rand.Uint64N(alloc.Size())
	p.loaded = true
}

// rebuildLocked recomputes the index of the range from marks.
func (p *Pool) rebuildLocked() {
	p.held = newIndexSet(p.alloc.Size())
	for m := range p.marks {
		if i, ok := p.alloc.IndexOf(m); ok {
			p.held.Add(i)
		}
	}
}

// Ready reports whether a range has been loaded.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loaded
}

// Stats is a point-in-time view of the pool.
type Stats struct {
	Range mac.Range
	Size  uint64 // allocatable addresses in the range
	Held  uint64 // of those, held (reserved or carried)
	Total uint64 // every MAC held, in the range or not
}

// Stats returns the pool's current numbers.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		return Stats{Total: uint64(len(p.marks))}
	}
	return Stats{Range: p.alloc.Range(), Size: p.alloc.Size(), Held: p.held.Len(), Total: uint64(len(p.marks))}
}

// candidate picks the next probably-free MAC after the cursor and marks it
// picked so concurrent requests on this replica pick others.
func (p *Pool) candidate() (mac.MAC, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		return 0, fmt.Errorf("%w (range configuration not loaded)", ErrNotReady)
	}
	size := p.alloc.Size()
	if p.held.Len() >= size {
		return 0, &ExhaustedError{Range: p.alloc.Range(), Size: size, Held: p.held.Len(), Excluding: len(p.alloc.Excluded()) > len(mac.Reserved)}
	}
	for skips := uint64(0); ; skips++ {
		i, ok := p.held.NextFree(p.cursor)
		if !ok {
			i, _ = p.held.NextFree(0) // wrap around: Len < size, so one exists
		}
		m := p.alloc.At(i)
		if !p.pickableLocked(m) {
			// Another cluster's block, or one a peer holds MACs in: go on
			// from the next block. Each turn passes a whole block, so a
			// turn round the range is bounded by its blocks.
			if skips > min(size/ledger.BlockSize+2, maxShareSkips) {
				return 0, &ExhaustedError{Range: p.alloc.Range(), Size: size, Held: p.held.Len(),
					Excluding: len(p.alloc.Excluded()) > len(mac.Reserved), Share: p.share.Names()}
			}
			p.cursor = (i + uint64(ledger.BlockStart(m)+ledger.BlockSize-m)) % size
			continue
		}
		p.cursor = (i + 1) % size
		p.setMarkLocked(m, picked, true)
		return m, nil
	}
}

// maxShareSkips bounds the blocks one candidate passes over looking for
// one of this cluster's: with peers, about one block in as many as there
// are clusters is this one's, so only a share that is full gets near it.
const maxShareSkips = 1 << 16

// Done unmarks the picks of a request once it has been answered: what it
// reserved is held by its ledger entries from then on.
func (p *Pool) Done(r *Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range r.picked {
		p.setMarkLocked(m, picked, false)
	}
	r.picked = nil
}

// ask is what the request r asks of the holders' rule for m.
func (r Request) ask() holders.Request {
	return holders.Request{Owner: r.Owner, Receiver: r.Receiver}
}

// Usable reports whether m may go to r's owner as far as this replica
// knows: not excluded, and the holders' rule allows it given the index's
// entry and carriers. A StatefulSet pod's MACs held for its name are
// offered back only if usable; one that is not (excluded since, or taken
// up by an object kubemacpool never admitted) is replaced by a fresh MAC
// rather than refusing the pod.
func (p *Pool) Usable(m mac.MAC, r Request) bool {
	if _, excluded := p.excludedBy(m); excluded {
		return false
	}
	return p.judge(m, r, p.indexedEntry(m)).Allowed
}

// Carried reports whether the index knows an object carrying m.
func (p *Pool) Carried(m mac.MAC) bool { return p.carried != nil && p.carried.Carried(m) }

// judge asks the holders' rule whether r may have m, with entry as the
// ledger's entry for it and the carriers the index knows.
func (p *Pool) judge(m mac.MAC, r Request, entry *v1alpha1.MACBlockEntry) holders.Verdict {
	var cs []carriers.Carrier
	if p.carried != nil {
		cs = p.carried.Of(m)
	}
	var ps []holders.PeerEntry
	if p.peers != nil {
		ps = p.peers.Of(m)
	}
	return holders.MayTake(r.ask(), holders.Facts{MAC: m, Entry: entry, Carriers: cs, Peers: ps})
}

// indexedEntry is the ledger index's entry for m, or nil.
func (p *Pool) indexedEntry(m mac.MAC) *v1alpha1.MACBlockEntry {
	if p.ledger == nil {
		return nil // a pool tested alone
	}
	if e, ok := p.ledger.Lookup(m); ok {
		return &e.MACBlockEntry
	}
	return nil
}

// want is one MAC a request tries to hold in one round.
type want struct {
	slot     int
	mac      mac.MAC
	explicit bool
	// outcome of the last block write
	written, lost bool
}

// Reserve gives every slot of r a MAC: the one it asks for, if no one
// else holds it (even outside the range: a MAC in use must be unique
// whoever chose it), or a free one from the range. The entries are written
// before it returns, one block update per block the request touches,
// shared with concurrent requests on this replica. A requested MAC that an
// earlier attempt of the same named object holds is accepted, and its
// entry renewed so the grace period counts from now. With r.DryRun nothing
// is written. The caller calls Done once it has answered.
func (p *Pool) Reserve(ctx context.Context, r Request) (*Result, error) {
	res := &Result{MACs: make([]mac.MAC, len(r.Slots)), Reserved: metav1.NewMicroTime(p.clock.Now().UTC().Truncate(time.Microsecond))}
	if err := p.checkSynced(); err != nil {
		return res, err
	}
	var wants []*want
	for i, s := range r.Slots {
		if s.Requested == 0 {
			continue
		}
		if x, ok := p.excludedBy(s.Requested); ok {
			return res, &ExcludedError{MAC: s.Requested, Entry: x}
		}
		wants = append(wants, &want{slot: i, mac: s.Requested, explicit: true})
	}
	if r.DryRun {
		return res, p.dryRun(r, res, wants)
	}
	if err := p.checkPending(r); err != nil {
		return res, err
	}
	if p.stock != nil {
		// A retried create gets back what the stock handed it before; the
		// other automatic MACs come from the stock while it has them.
		kept := wants[:0]
		for _, w := range wants {
			if p.takeBack(w.mac, r) {
				res.MACs[w.slot] = w.mac
			} else {
				kept = append(kept, w)
			}
		}
		wants = kept
		if r.fromStock() {
			for i, s := range r.Slots {
				if s.Requested != 0 {
					continue
				}
				if m, ok := p.takeStock(r, s); ok {
					res.MACs[i] = m
					res.Stocked = append(res.Stocked, m)
					metrics.AllocationSource.WithLabelValues(metrics.SourceStock).Inc()
				}
			}
		}
		if len(wants) == 0 && !missing(r, res) {
			return res, nil
		}
	}
	for round := 0; ; round++ {
		for i, s := range r.Slots {
			if s.Requested == 0 && res.MACs[i] == 0 {
				m, err := p.candidate()
				if err != nil {
					p.Release(ctx, r.Owner, res)
					return res, err
				}
				res.picked = append(res.picked, m)
				wants = append(wants, &want{slot: i, mac: m})
			}
		}
		err := p.write(ctx, r, res, wants)
		if err != nil && ctx.Err() != nil {
			// The request gave up while a write may still be in flight,
			// deciding the outcomes: leave what it wrote to the repair,
			// which removes unused entries after the grace period.
			return res, err
		}
		for _, w := range wants {
			if w.written {
				res.Written = append(res.Written, w.mac)
			}
		}
		if err != nil {
			// Other blocks of the request may have been written: give
			// their entries back. (An entry whose write failed is not
			// there; removing it is a no-op.)
			p.Release(ctx, r.Owner, res)
			return res, err
		}
		var again []*want
		for _, w := range wants {
			switch {
			case w.written:
				res.MACs[w.slot] = w.mac
			case w.lost:
				again = append(again, w) // another replica was first: pick again
			default:
				res.MACs[w.slot] = w.mac // accepted: the owner's own earlier entry
			}
		}
		if len(again) == 0 {
			if direct := automatic(r) - len(res.Stocked); direct > 0 {
				metrics.AllocationSource.WithLabelValues(metrics.SourceDirect).Add(float64(direct))
			}
			return res, nil
		}
		if round == maxRounds {
			p.Release(ctx, r.Owner, res)
			return res, fmt.Errorf("no free MAC found in %d rounds of candidates that other replicas took first; retry", maxRounds)
		}
		wants = nil
	}
}

// dryRun answers r from the index alone.
func (p *Pool) dryRun(r Request, res *Result, explicit []*want) error {
	for _, w := range explicit {
		if err := p.judge(w.mac, r, p.indexedEntry(w.mac)).Err(w.mac); err != nil {
			return err
		}
		res.MACs[w.slot] = w.mac
	}
	for i, s := range r.Slots {
		if s.Requested != 0 {
			continue
		}
		m, err := p.candidate()
		if err != nil {
			return err
		}
		res.picked = append(res.picked, m)
		res.MACs[i] = m
	}
	return nil
}

// write stores the wants of one round, one ledger update per block, the
// blocks at once, and returns the first error.
func (p *Pool) write(ctx context.Context, r Request, res *Result, wants []*want) error {
	errs := inBlocks(wants, func(w *want) mac.MAC { return w.mac }, func(start mac.MAC, ws []*want) error {
		return p.ledger.Update(ctx, start, p.reserveIn(r, res, ws))
	})
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// inBlocks groups items by the ledger block of their MAC and calls write
// once per block, the blocks at once but at most blockWrites in flight: a
// request is bounded (--max-interfaces), and so is what it asks of the API
// server at once. It returns each block's error, in the order they ended.
func inBlocks[T any](items []T, macOf func(T) mac.MAC, write func(start mac.MAC, group []T) error) []error {
	byBlock := map[mac.MAC][]T{}
	for _, it := range items {
		start := ledger.BlockStart(macOf(it))
		byBlock[start] = append(byBlock[start], it)
	}
	ended := make(chan error, len(byBlock))
	slots := make(chan struct{}, blockWrites)
	for start, group := range byBlock {
		go func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			ended <- write(start, group)
		}()
	}
	errs := make([]error, 0, len(byBlock))
	for range byBlock {
		errs = append(errs, <-ended)
	}
	return errs
}

// reserveIn is the block change that adds a request's wants to one block:
// all of them or, if a requested MAC may not go to the request, none. What
// the block holds decides, judged by the holders' rule with the carriers
// the index knows now.
func (p *Pool) reserveIn(r Request, res *Result, ws []*want) ledger.Change {
	return func(b *v1alpha1.MACBlock) (bool, error) {
		for _, w := range ws {
			w.written, w.lost = false, false
		}
		var add []v1alpha1.MACBlockEntry
		var written []*want
		for _, w := range ws {
			off := ledger.Offset(w.mac)
			s := r.Slots[w.slot]
			entry := v1alpha1.MACBlockEntry{
				Offset: off, MAC: w.mac.String(), Owner: r.Owner,
				Network: s.Network, Interface: s.Interface, Reserved: res.Reserved,
			}
			held := ledger.Find(b, off)
			if !w.explicit {
				if held != nil || p.Carried(w.mac) || p.peerHolds(w.mac) {
					// Another replica was first, or an object or a peer
					// cluster holds it (the marks hear of them a moment
					// after the indexes): pick again.
					w.lost = true
					continue
				}
				written = append(written, w)
				add = append(add, entry)
				continue
			}
			v := p.judge(w.mac, r, held)
			switch {
			case !v.Allowed:
				return false, v.Err(w.mac)
			case v.Shared:
				continue // accepted: the source VM keeps holding it
			case v.Own:
				// The same object asking again (a retried create, a VM
				// update putting back a MAC it had): renew, so the
				// repair, which judges only the entry it read, gives the
				// object the full grace period to be stored.
				entry.Owner.UID = firstNonEmpty(r.Owner.UID, held.Owner.UID)
				entry.Adopted = held.Adopted
			default:
				written = append(written, w)
			}
			add = append(add, entry)
		}
		for _, e := range add {
			ledger.Put(b, e)
		}
		for _, w := range written {
			w.written = true // only now: a refused want leaves the block, and the flags, as they were
		}
		return len(add) > 0, nil
	}
}

// automatic counts the slots of r that ask for no MAC.
func automatic(r Request) int {
	n := 0
	for _, s := range r.Slots {
		if s.Requested == 0 {
			n++
		}
	}
	return n
}

// missing reports whether a slot of r that asks for no MAC has none yet.
func missing(r Request, res *Result) bool {
	for i, s := range r.Slots {
		if s.Requested == 0 && res.MACs[i] == 0 {
			return true
		}
	}
	return false
}

func firstNonEmpty[T ~string](a, b T) T {
	if a != "" {
		return a
	}
	return b
}

// blockWrites is how many block writes of one request run at once.
const blockWrites = 8

// releaseTimeout bounds giving back a refused request's entries.
const releaseTimeout = 5 * time.Second

// Release removes the entries res wrote, for a request refused after they
// were written (a later network was refused, the patch failed). Nothing can
// have bound them: the object has not been stored. A failure is logged by
// the caller's ledger and left to the repair, which removes unused entries
// after the grace period.
func (p *Pool) Release(ctx context.Context, owner v1alpha1.Owner, res *Result) error {
	// The request may be ending because its context did: give back what
	// it wrote all the same, within a bound of its own.
	p.giveBack(res.Stocked)
	res.Stocked = nil
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	byBlock := map[mac.MAC][]mac.MAC{}
	for _, m := range res.Written {
		byBlock[ledger.BlockStart(m)] = append(byBlock[ledger.BlockStart(m)], m)
	}
	res.Written = nil
	var errs []error
	for start, macs := range byBlock {
		err := p.ledger.Update(ctx, start, func(b *v1alpha1.MACBlock) (bool, error) {
			changed := false
			for _, m := range macs {
				e := ledger.Find(b, ledger.Offset(m))
				if e != nil && e.Owner == owner && e.Reserved.Equal(&res.Reserved) {
					changed = ledger.Remove(b, ledger.Offset(m)) || changed
				}
			}
			return changed, nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
