package ledger

import (
	"hash/maphash"
	"slices"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// ownerIndex holds the MACs of the entries held for each owner (kind,
// namespace, name), for OwnedBy. Every replica indexes every entry, and
// most owners hold one or two MACs: an owner is keyed by a hash of its
// three strings (8 bytes rather than the 48 of their headers) to a list
// of its MACs (some 70 bytes an owner less, 3.5 MB at 50,000 owners). Two
// owners whose hashes collide share a list, so a list may hold MACs of
// another owner: the caller keeps the entries of the owner it asked for.
// A StatefulSet, which holds the MACs of all its ordinals under one name,
// may hold thousands: its list becomes a set.
type ownerIndex struct {
	seed  maphash.Seed
	lists map[uint64][]mac.MAC
	sets  map[uint64]map[mac.MAC]struct{}
}

// ownerListMost is the longest an owner's list gets before it is a set.
const ownerListMost = 16

type ownerKey struct{ kind, namespace, name string }

func newOwnerIndex() ownerIndex {
	return ownerIndex{seed: maphash.MakeSeed(), lists: map[uint64][]mac.MAC{}, sets: map[uint64]map[mac.MAC]struct{}{}}
}

func (x *ownerIndex) hash(k ownerKey) uint64 { return maphash.Comparable(x.seed, k) }

func (x *ownerIndex) add(k ownerKey, m mac.MAC) {
	h := x.hash(k)
	if set := x.sets[h]; set != nil {
		set[m] = struct{}{}
		return
	}
	list := x.lists[h]
	switch {
	case slices.Contains(list, m):
	case len(list) < ownerListMost:
		x.lists[h] = append(list, m)
	default:
		set := make(map[mac.MAC]struct{}, 2*ownerListMost)
		for _, o := range list {
			set[o] = struct{}{}
		}
		set[m] = struct{}{}
		x.sets[h] = set
		delete(x.lists, h)
	}
}

func (x *ownerIndex) remove(k ownerKey, m mac.MAC) {
	h := x.hash(k)
	if set := x.sets[h]; set != nil {
		delete(set, m)
		if len(set) == 0 {
			delete(x.sets, h)
		}
		return
	}
	list := x.lists[h]
	if i := slices.Index(list, m); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(x.lists, h)
	} else {
		x.lists[h] = list
	}
}

// each calls f with every MAC listed for k: k's own, and any of an owner
// whose hash is k's.
func (x *ownerIndex) each(k ownerKey, f func(mac.MAC)) {
	h := x.hash(k)
	for _, m := range x.lists[h] {
		f(m)
	}
	for m := range x.sets[h] {
		f(m)
	}
}

// len is how many owners (or colliding groups of them) are indexed.
func (x *ownerIndex) len() int { return len(x.lists) + len(x.sets) }
