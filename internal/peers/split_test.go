package peers

import (
	"testing"

	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Every cluster computes the same owner for every block, and each owns a
// fair share.
func TestSplitAgrees(t *testing.T) {
	west := NewSplit("west", []string{"east", "north"})
	east := NewSplit("east", []string{"north", "west"})
	north := NewSplit("north", []string{"west", "east"})
	const blocks = 3000
	owned := map[string]int{}
	for i := range blocks {
		m := mac.MAC(0x020000000000 + i*ledger.BlockSize)
		o := west.Owner(m)
		if east.Owner(m) != o || north.Owner(m) != o {
			t.Fatalf("block %s: west says %s, east %s, north %s", m, o, east.Owner(m), north.Owner(m))
		}
		if o != west.Owner(m+ledger.BlockSize-1) {
			t.Fatalf("the last MAC of block %s has another owner", m)
		}
		mine := 0
		for _, s := range []Split{west, east, north} {
			if s.Mine(m) {
				mine++
			}
		}
		if mine != 1 {
			t.Fatalf("block %s: %d clusters pick in it", m, mine)
		}
		owned[o]++
	}
	for _, name := range []string{"west", "east", "north"} {
		if share := float64(owned[name]) / blocks; share < 0.28 || share > 0.39 {
			t.Errorf("%s owns %.2f of the blocks, want about a third", name, share)
		}
	}
}

// A cluster joining takes blocks only: no block changes hands between the
// clusters that were there.
func TestSplitMovesOnlyTheJoinersBlocks(t *testing.T) {
	before := NewSplit("west", []string{"east"})
	after := NewSplit("west", []string{"east", "north"})
	for i := range 2000 {
		m := mac.MAC(0x020000000000 + i*ledger.BlockSize)
		if a := after.Owner(m); a != "north" && a != before.Owner(m) {
			t.Fatalf("block %s moved from %s to %s", m, before.Owner(m), a)
		}
	}
	if !NewSplit("west", nil).Mine(0x020000000000) || !NewSplit("west", nil).Alone() {
		t.Error("a cluster without peers owns every block")
	}
}
