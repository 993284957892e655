package ledger

import (
	"testing"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Blocks are aligned runs of BlockSize MACs, named after the first.
func TestBlockArithmetic(t *testing.T) {
	m := mac.MAC(0x0200000001ff)
	if got := BlockStart(m); got != 0x0200000001c0 {
		t.Fatalf("BlockStart = %s", got)
	}
	if BlockName(m) != "02-00-00-00-01-c0" || Offset(m) != 63 {
		t.Fatalf("name %s offset %d", BlockName(m), Offset(m))
	}
	b := NewBlock(m)
	if b.Spec.First != "02:00:00:00:01:c0" || b.Spec.Last != "02:00:00:00:01:ff" {
		t.Fatalf("block spans %s-%s", b.Spec.First, b.Spec.Last)
	}
	if start, ok := StartOf(b); !ok || start != 0x0200000001c0 {
		t.Fatalf("StartOf = %s, %v", start, ok)
	}
	b.Name = "02-00-00-00-01-c1" // not aligned: not a block of ours
	if _, ok := StartOf(b); ok {
		t.Fatal("an unaligned name was taken for a block")
	}
}

// Entries stay ordered by offset and counted; Put replaces in place.
func TestPutFindRemove(t *testing.T) {
	b := NewBlock(0)
	for _, off := range []int32{9, 2, 40} {
		Put(b, v1alpha1.MACBlockEntry{Offset: off})
	}
	Put(b, v1alpha1.MACBlockEntry{Offset: 2, Network: "replaced"})
	if b.Spec.Held != 3 || b.Spec.Entries[0].Offset != 2 || b.Spec.Entries[1].Offset != 9 || b.Spec.Entries[2].Offset != 40 {
		t.Fatalf("entries %+v, held %d", b.Spec.Entries, b.Spec.Held)
	}
	if e := Find(b, 2); e == nil || e.Network != "replaced" {
		t.Fatalf("Find(2) = %+v", e)
	}
	if !Remove(b, 9) || Remove(b, 9) || Find(b, 9) != nil || b.Spec.Held != 2 {
		t.Fatalf("after removing 9: %+v", b.Spec)
	}
}
