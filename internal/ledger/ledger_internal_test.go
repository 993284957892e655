package ledger

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// An owner's MACs are what was added for it and not removed, whether few
// (a list) or many (a set, as a StatefulSet's entries are under one name),
// and nothing is kept of an owner that holds none.
func TestOwnerIndex(t *testing.T) {
	x := newOwnerIndex()
	for _, n := range []int{1, ownerListMost, ownerListMost + 1, 1000} {
		k := ownerKey{"StatefulSet", "ns", fmt.Sprint("web-", n)}
		for i := range n {
			x.add(k, mac.MAC(i))
			x.add(k, mac.MAC(i)) // twice: still once
		}
		x.add(ownerKey{"Pod", "ns", "other"}, mac.MAC(5000))
		var got []mac.MAC
		x.each(k, func(m mac.MAC) { got = append(got, m) })
		slices.Sort(got)
		if len(got) != n || got[0] != 0 || got[n-1] != mac.MAC(n-1) {
			t.Fatalf("%d added: the index holds %d (%v...)", n, len(got), got[:min(3, len(got))])
		}
		for i := range n {
			x.remove(k, mac.MAC(i))
		}
		x.remove(ownerKey{"Pod", "ns", "other"}, mac.MAC(5000))
		if x.len() != 0 {
			t.Fatalf("%d added, all removed: %d owners are kept", n, x.len())
		}
	}
}

// Owners whose hashes collide share a list: OwnedBy gives each only its
// own entries.
func TestOwnedByKeepsTheOwnersOwn(t *testing.T) {
	b := NewBlock(0x020000000100)
	b.UID, b.ResourceVersion = "u", "1"
	mine := v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "mine"}
	other := v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "other"}
	Put(b, v1alpha1.MACBlockEntry{Offset: 1, Owner: mine})
	Put(b, v1alpha1.MACBlockEntry{Offset: 2, Owner: other})
	l := &Ledger{}
	l.Observe(b, false)
	// As if other's hash were mine's.
	l.byOwner.add(ownerKey{"Pod", "ns", "mine"}, 0x020000000102)
	got := l.OwnedBy("Pod", "ns", "mine")
	if len(got) != 1 || got[0].MAC != 0x020000000101 {
		t.Fatalf("OwnedBy(mine) = %+v, want only 02:00:00:00:01:01", got)
	}
}
