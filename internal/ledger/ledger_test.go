package ledger

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

func block(uid, rv string, offsets ...int32) *v1alpha1.MACBlock {
	b := NewBlock(0x020000000100)
	b.UID, b.ResourceVersion = types.UID("uid-"+uid), rv
	for _, off := range offsets {
		b.Spec.Entries = append(b.Spec.Entries, v1alpha1.MACBlockEntry{Offset: off,
			Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p"}})
	}
	return b
}

// The index follows the watch and this replica's writes, newest first; a
// delete event (which carries the revision of the delete, not the block's)
// removes the block it names, and never a block created again since.
func TestIndexFollowsBlocks(t *testing.T) {
	held := map[mac.MAC]bool{}
	l := &Ledger{OnChange: func(m mac.MAC, on bool) { held[m] = on }}
	const first = mac.MAC(0x020000000100)

	l.Observe(block("a", "10", 1, 2), false)
	l.Observe(block("a", "9", 1), false) // older than what is known: ignored
	if l.Len() != 2 || !held[first+1] || !held[first+2] {
		t.Fatalf("after rv 10: %d entries, %v", l.Len(), held)
	}
	l.Observe(block("a", "25", 1, 2), true) // deleted; the event's rv is the delete's
	if l.Len() != 0 || held[first+1] || l.Block(BlockName(first)) != nil {
		t.Fatalf("after the delete: %d entries, %v", l.Len(), held)
	}
	l.Observe(block("b", "30", 3), false)
	l.Observe(block("a", "31", 1, 2), true) // the old incarnation's delete, late
	if l.Len() != 1 || !held[first+3] {
		t.Fatalf("a late delete of the old block removed the new one: %d entries, %v", l.Len(), held)
	}
	if got := l.OwnedBy("Pod", "ns", "p"); len(got) != 1 || got[0].MAC != first+3 {
		t.Fatalf("OwnedBy = %+v", got)
	}
}

// A hand-edited block with two entries at one offset, or one outside the
// block, is read as if it had only the first, in-range ones: no count
// drift, no MAC of a neighbouring block marked.
func TestIndexNormalisesHandEditedBlocks(t *testing.T) {
	held := map[mac.MAC]bool{}
	l := &Ledger{OnChange: func(m mac.MAC, on bool) { held[m] = on }}
	l.Observe(block("a", "1", 5, 5, 64, -1), false)
	l.Observe(block("a", "2", 5, 5, 64, -1), false)
	if l.Len() != 1 || len(held) != 1 || !held[0x020000000105] {
		t.Fatalf("%d entries, marks %v", l.Len(), held)
	}
	if b := l.Block(BlockName(0x020000000105)); len(b.Spec.Entries) != 1 || b.Spec.Held != 1 {
		t.Fatalf("stored %+v", b.Spec)
	}
}

// Recent lists a namespace's entries made or renewed since a time, from a
// list it keeps short as it reads it.
func TestRecent(t *testing.T) {
	l := &Ledger{RecentWindow: time.Hour}
	now := time.Now()
	b := NewBlock(0x020000000100)
	b.UID, b.ResourceVersion = "uid-a", "1"
	for off, age := range []time.Duration{2 * time.Hour, time.Minute, 10 * time.Second, 5 * time.Second} {
		b.Spec.Entries = append(b.Spec.Entries, v1alpha1.MACBlockEntry{Offset: int32(off),
			Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p"}, Reserved: metav1.NewMicroTime(now.Add(-age))})
	}
	l.Observe(b, false)
	if got := l.Recent("ns", now.Add(-5*time.Minute)); len(got) != 3 {
		t.Fatalf("since 5m: %v, want 3 (the one 2h old is not recent)", got)
	}
	if got := l.Recent("ns", now.Add(-30*time.Second)); len(got) != 2 || got[0] != 0x020000000102 || got[1] != 0x020000000103 {
		t.Fatalf("since 30s: %v, want the two made since", got)
	}
	if len(l.recent["ns"]) != 2 {
		t.Fatalf("the list kept %d MACs, want only the two still recent", len(l.recent["ns"]))
	}
	l.ForgetRecent("ns", []mac.MAC{0x020000000103}) // carried: it waits for nothing
	if got := l.Recent("ns", now.Add(-30*time.Second)); len(got) != 1 || got[0] != 0x020000000102 {
		t.Fatalf("after forgetting a carried one: %v", got)
	}
	if got := l.Recent("other", now.Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("another namespace: %v", got)
	}
}

// A namespace's list of recent reservations stays bounded when one entry
// is renewed again and again (each renewal appends it; compaction drops
// the repeats).
func TestRecentListBoundedOnRenewals(t *testing.T) {
	l := &Ledger{RecentWindow: time.Hour}
	for i := range 5000 {
		b := NewBlock(0x020000000100)
		b.UID, b.ResourceVersion = "uid-a", fmt.Sprint(i+1)
		b.Spec.Entries = []v1alpha1.MACBlockEntry{{Offset: 1,
			Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p"}, Reserved: metav1.NewMicroTime(time.Now())}}
		l.Observe(b, false)
	}
	if n := len(l.recent["ns"]); n > recentCompactAt {
		t.Fatalf("the list holds %d MACs for one renewed entry, want at most %d", n, recentCompactAt)
	}
	if got := l.Recent("ns", time.Now().Add(-time.Minute)); len(got) != 1 {
		t.Fatalf("Recent: %v, want the one MAC", got)
	}
}

// BenchmarkObserveRecentEntries is a restart's read of a ledger whose
// 100,000 entries were all made within the recent window (adopted minutes
// before): one namespace's list of recent reservations grows to 100,000.
func BenchmarkObserveRecentEntries(b *testing.B) {
	const blocks = 100000 / BlockSize
	now := metav1.NewMicroTime(time.Now())
	var all []*v1alpha1.MACBlock
	for i := range blocks {
		blk := NewBlock(mac.MAC(0x0a0000000000 + i*BlockSize))
		blk.UID, blk.ResourceVersion = types.UID(fmt.Sprint("uid-", i)), "1"
		for off := range int32(BlockSize) {
			blk.Spec.Entries = append(blk.Spec.Entries, v1alpha1.MACBlockEntry{Offset: off,
				Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: fmt.Sprint("p-", i, "-", off)}, Reserved: now})
		}
		all = append(all, blk)
	}
	for b.Loop() {
		l := &Ledger{RecentWindow: time.Hour}
		for _, blk := range all {
			l.Observe(blk, false)
		}
	}
}

// A version this replica wrote is indexed unless the watch brought the same
// version first; the watch's copy, which the informer keeps, replaces the
// write's: the index and the informer share one copy of each block.
func TestIndexKeepsTheWatchedCopy(t *testing.T) {
	l := &Ledger{}
	name := BlockName(0x020000000100)
	watched := func(rv string) *storedBlock { return store(block("a", rv, 1)) }

	fromWatch := watched("10")
	l.Observe(fromWatch, false)
	l.mu.Lock()
	l.observeOwnLocked(watched("10")) // the write's answer, after the watch
	l.mu.Unlock()
	if l.blocks[name].latest != fromWatch {
		t.Fatal("the write's copy replaced the watch's copy of the same version")
	}

	l.mu.Lock()
	l.observeOwnLocked(watched("11")) // the write's answer, before the watch
	l.mu.Unlock()
	if got := l.blocks[name].latest; got == fromWatch || got.ResourceVersion != "11" {
		t.Fatal("a newer version this replica wrote was not indexed")
	}
	fromWatch = watched("11")
	l.Observe(fromWatch, false)
	if l.blocks[name].latest != fromWatch {
		t.Fatal("the watch's copy did not replace the write's copy of the same version")
	}
	if l.Len() != 1 {
		t.Fatalf("%d entries, want 1", l.Len())
	}
}
