package pool

import (
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
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
	owner          v1alpha1.Owner
	network, iface string
	at             time.Time
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
// force (excluded ones are not), and no object, nor any peer cluster,
// holds it.
func (p *Pool) stockUsable(m mac.MAC, owner v1alpha1.Owner) bool {
	if e, ok := p.ledger.Lookup(m); !ok || e.Owner != owner {
		return false
	}
	p.mu.Lock()
	_, allocatable := p.alloc.IndexOf(m)
	p.mu.Unlock()
	return allocatable && !p.Carried(m) && !p.peerHolds(m)
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
	owner := st.owner
	st.mu.Unlock()
	// Whether m is this incarnation's stock (free, handed out, or lost
	// track of) is what the ledger's index says of its entry.
	if e, ok := p.ledger.Lookup(m); noted || !ok || e.Owner != owner {
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
