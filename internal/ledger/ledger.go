package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Entry is one held MAC as the index knows it.
type Entry struct {
	MAC mac.MAC
	v1alpha1.MACBlockEntry
}

// Ledger is one replica's view of the MAC blocks and its way to change
// them. It runs on every replica: every replica serves the webhook.
type Ledger struct {
	Cache  cache.Cache
	Writer client.Client // writes blocks
	Live   client.Reader // uncached reads, after a write lost a race
	// RepairWriter and RepairLive, when set, carry the writes (and the
	// reads after a lost race) of batches made only of the repair's
	// changes: with a rate limiter of their own, a repair pass never
	// starves the admissions, nor they the repair.
	RepairWriter client.Client
	RepairLive   client.Reader
	// RecentWindow is how long an entry counts as recent (Waiting):
	// the reservation grace. Zero: recent reservations are not tracked.
	RecentWindow time.Duration
	Log          logr.Logger
	// OnChange is told when a MAC gains or loses its entry, with the
	// ledger's lock held, so that changes arrive in order: it must only
	// queue the change (a holders.Stream), never call into another index.
	OnChange func(m mac.MAC, held bool)

	mu     sync.Mutex
	blocks map[string]*blockState
	// byOwner holds the MACs held for each named owner.
	byOwner ownerIndex
	// recent lists, per owner namespace, the MACs whose entries appeared
	// or were renewed, oldest first, compacted by Waiting: the pool
	// counts a namespace's waiting reservations without walking all of
	// its entries.
	recent  map[string][]mac.MAC
	entries int
	synced  atomic.Bool
}

// blockState is what this replica knows of one block and what it waits to
// write to it.
type blockState struct {
	start mac.MAC
	// latest is the freshest version seen, from the watch or from this
	// replica's own writes; nil while the block is not known to exist.
	latest  *storedBlock
	queue   []*change
	writing bool
}

// NeedLeaderElection is false: every replica needs the ledger.
func (l *Ledger) NeedLeaderElection() bool { return false }

func (l *Ledger) init() {
	if l.blocks == nil {
		l.blocks = map[string]*blockState{}
		l.byOwner = newOwnerIndex()
		l.recent = map[string][]mac.MAC{}
	}
}

// Start feeds the index from the MACBlock informer until ctx ends.
func (l *Ledger) Start(ctx context.Context) error {
	informer, err := l.Cache.GetInformer(ctx, &v1alpha1.MACBlock{})
	if err != nil {
		return fmt.Errorf("watching MACBlocks: %w", err)
	}
	reg, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { l.Observe(obj, false) },
		UpdateFunc: func(_, obj any) { l.Observe(obj, false) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			l.Observe(obj, true)
		},
	})
	if err != nil {
		return fmt.Errorf("watching MACBlocks: %w", err)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil
	}
	l.synced.Store(true)
	l.Log.Info("ledger indexed", "blocks", len(l.BlockNames()), "entries", l.Len())
	<-ctx.Done()
	return nil
}

// Synced reports whether the index has seen every block that existed when
// the replica started.
func (l *Ledger) Synced() bool { return l.synced.Load() }

// Observe records a version of a block that the MACBlock watch brought
// (deleted: its last version, gone): the watch feeds the index through it.
// It takes a block as the cache keeps it (Compact) or typed.
func (l *Ledger) Observe(obj any, deleted bool) {
	var b *storedBlock
	switch o := obj.(type) {
	case *storedBlock:
		b = o
	case *v1alpha1.MACBlock:
		b = store(o)
	}
	if b == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.observeLocked(b, deleted)
}

// observeLocked records b as the block's state if it is newer than what is
// known (the watch may deliver a version older than this replica's own
// write), and tells OnChange what changed.
func (l *Ledger) observeLocked(b *storedBlock, deleted bool) {
	start := b.start
	l.init()
	st := l.stateLocked(start)
	switch {
	case deleted && st.latest != nil && st.latest.UID != b.UID:
		return // an older incarnation's delete: the block was created again since
	case !deleted && st.latest != nil && olderThan(b.ResourceVersion, st.latest.ResourceVersion):
		return // this replica's own write is newer than the watch
	}
	// (A delete event carries the revision of the delete, not the object's
	// last resourceVersion, so deletes are matched by UID.)
	before := st.latest
	if deleted {
		st.latest = nil
	} else {
		st.latest = b
	}
	l.diffLocked(start, before, st.latest)
}

// observeOwnLocked records a version of a block that this replica wrote or
// read itself. The watch brings the same version to the informer, whose
// copy is the one to index: where the watch came first, this copy is
// dropped rather than kept beside it (every replica would otherwise keep
// two copies of the blocks it wrote last; after a first start the leader
// has written them all).
func (l *Ledger) observeOwnLocked(b *storedBlock) {
	if st := l.blocks[b.Name]; st != nil && st.latest != nil && st.latest.UID == b.UID && st.latest.ResourceVersion == b.ResourceVersion {
		return
	}
	l.observeLocked(b, false)
}

// diffLocked updates the owner index and tells OnChange about every MAC
// whose entry appeared or went between two versions of a block.
func (l *Ledger) diffLocked(start mac.MAC, before, after *storedBlock) {
	// old maps each offset of before to its slot, plus one: 0 is none.
	// Both versions are normal (one slot per offset).
	var old [BlockSize]int
	if before != nil {
		for i, sl := range before.slots {
			old[sl.offset] = i + 1
		}
	}
	if after != nil {
		for i, sl := range after.slots {
			m := start + mac.MAC(sl.offset)
			owner := after.owner(i)
			if j := old[sl.offset] - 1; j >= 0 {
				old[sl.offset] = 0
				prevOwner := before.owner(j)
				if prevOwner != owner {
					l.unindexOwnerLocked(prevOwner, m)
					l.indexOwnerLocked(owner, m)
				}
				if prevOwner != owner || !before.slots[j].reserved.Equal(sl.reserved) {
					l.noteRecentLocked(owner.Namespace, sl.reserved, m)
				}
				continue
			}
			l.entries++
			l.indexOwnerLocked(owner, m)
			l.noteRecentLocked(owner.Namespace, sl.reserved, m)
			if l.OnChange != nil {
				l.OnChange(m, true)
			}
		}
	}
	for off, j := range old {
		if j == 0 {
			continue
		}
		m := start + mac.MAC(off)
		l.entries--
		l.unindexOwnerLocked(before.owner(j-1), m)
		if l.OnChange != nil {
			l.OnChange(m, false)
		}
	}
}

func (l *Ledger) indexOwnerLocked(o v1alpha1.Owner, m mac.MAC) {
	if o.Name == "" {
		return
	}
	l.byOwner.add(ownerKey{o.Kind, o.Namespace, o.Name}, m)
}

func (l *Ledger) unindexOwnerLocked(o v1alpha1.Owner, m mac.MAC) {
	if o.Name == "" {
		return
	}
	l.byOwner.remove(ownerKey{o.Kind, o.Namespace, o.Name}, m)
}

func (l *Ledger) stateLocked(start mac.MAC) *blockState {
	name := start.ObjectName()
	st := l.blocks[name]
	if st == nil {
		st = &blockState{start: start}
		l.blocks[name] = st
	}
	return st
}

// olderThan compares resourceVersions. They are opaque to clients in
// general but etcd revisions in practice; an unparsable one is taken as
// newer, so the watch always wins over a guess.
func olderThan(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x < y
}

// Lookup returns the entry holding m, if the index has one.
func (l *Ledger) Lookup(m mac.MAC) (Entry, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.blocks[BlockName(m)]
	if st == nil || st.latest == nil {
		return Entry{}, false
	}
	i := st.latest.find(Offset(m))
	if i < 0 {
		return Entry{}, false
	}
	return Entry{MAC: m, MACBlockEntry: st.latest.entry(i)}, true
}

// Block returns the freshest known version of the block named name (nil
// if it is not known to exist), a copy of the caller's own.
func (l *Ledger) Block(name string) *v1alpha1.MACBlock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.blocks[name]; st != nil && st.latest != nil {
		return st.latest.block()
	}
	return nil
}

// OwnedBy lists the entries held for the object kind namespace/name.
func (l *Ledger) OwnedBy(kind, namespace, name string) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Entry
	if l.blocks == nil {
		return nil
	}
	l.byOwner.each(ownerKey{kind, namespace, name}, func(m mac.MAC) {
		if st := l.blocks[BlockName(m)]; st != nil && st.latest != nil {
			// The index may list another owner's MACs with this one's.
			if i := st.latest.find(Offset(m)); i >= 0 {
				if o := st.latest.owner(i); o.Kind == kind && o.Namespace == namespace && o.Name == name {
					out = append(out, Entry{MAC: m, MACBlockEntry: st.latest.entry(i)})
				}
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out
}

// recentCompactAt is the length from which a namespace's list of recent
// reservations is compacted as it grows (a namespace nobody admits into,
// whose MACs are only adopted, is never compacted by Waiting): each time
// its length reaches a power of two, so that a list whose entries all stay
// recent (a restart reading 100,000 entries adopted minutes ago) costs
// linear time, not a pass over the whole list every 1,024 entries.
const recentCompactAt = 1024

// noteRecentLocked records that m's entry, for an owner in namespace ns,
// appeared or was renewed at reserved.
func (l *Ledger) noteRecentLocked(ns string, reserved time.Time, m mac.MAC) {
	if l.RecentWindow <= 0 || reserved.Before(time.Now().Add(-l.RecentWindow)) {
		return // not tracked, or too old to be waiting for its object
	}
	l.recent[ns] = append(l.recent[ns], m)
	if n := len(l.recent[ns]); n >= recentCompactAt && n&(n-1) == 0 {
		l.compactRecentLocked(ns, time.Now().Add(-l.RecentWindow))
	}
}

// Recent lists the MACs of the entries of namespace's owners reserved (or
// renewed) at or after since: the reservations that may still wait for
// their objects (the caller tells which do). Entries that are older leave
// the list it keeps, so its cost follows the namespace's recent
// reservations, not all of its entries; since must not go backwards between
// calls, nor be earlier than RecentWindow ago.
func (l *Ledger) Recent(namespace string, since time.Time) []mac.MAC {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.compactRecentLocked(namespace, since)
	return slices.Clone(l.recent[namespace])
}

// ForgetRecent takes macs out of namespace's list of recent reservations:
// the caller found them carried, so they wait for nothing (a renewal puts
// one back). It keeps the list to what still waits, as Recent's callers
// read it on every admission.
func (l *Ledger) ForgetRecent(namespace string, macs []mac.MAC) {
	gone := make(map[mac.MAC]bool, len(macs))
	for _, m := range macs {
		gone[m] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	list := l.recent[namespace]
	kept := list[:0]
	for _, m := range list {
		if !gone[m] {
			kept = append(kept, m)
		}
	}
	if len(kept) == 0 {
		delete(l.recent, namespace)
	} else {
		l.recent[namespace] = kept
	}
}

func (l *Ledger) compactRecentLocked(namespace string, since time.Time) int {
	list := l.recent[namespace]
	kept := list[:0]
	var seen map[mac.MAC]bool
	for _, m := range list {
		if seen[m] {
			continue
		}
		st := l.blocks[BlockName(m)]
		if st == nil || st.latest == nil {
			continue
		}
		i := st.latest.find(Offset(m))
		if i < 0 || st.latest.owner(i).Namespace != namespace || st.latest.slots[i].reserved.Before(since) {
			continue
		}
		if seen == nil {
			seen = map[mac.MAC]bool{}
		}
		seen[m] = true
		kept = append(kept, m)
	}
	if len(kept) == 0 {
		delete(l.recent, namespace)
	} else {
		l.recent[namespace] = kept
	}
	return len(kept)
}

// Len is the number of entries in the ledger.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries
}

// BlockNames lists every block known to exist.
func (l *Ledger) BlockNames() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.blocks))
	for name, st := range l.blocks {
		if st.latest != nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Each calls f for every entry, with the ledger locked: f must be quick
// and must not call the ledger.
func (l *Ledger) Each(f func(Entry)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, st := range l.blocks {
		if st.latest == nil {
			continue
		}
		for i, sl := range st.latest.slots {
			f(Entry{MAC: st.start + mac.MAC(sl.offset), MACBlockEntry: st.latest.entry(i)})
		}
	}
}

// ErrContended says a block kept changing under this replica's writes.
var ErrContended = errors.New("the MAC block kept changing under this write; retry")
