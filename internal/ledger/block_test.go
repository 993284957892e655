package ledger

import (
	"encoding/json"
	"reflect"
	"runtime/debug"
	"testing"
	"unsafe"

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

// The cache's transform keeps every entry as it was decoded and every
// field of the metadata but managedFields: the typed block made from what
// it keeps, which the ledger writes, is the block that was read. It keeps
// an owner of several entries once, and shares a namespace, network or
// interface that many entries repeat, whichever block or decode it came
// from.
func TestCompactKeepsTheBlockAndSharesWhatRepeats(t *testing.T) {
	// A collection between two blocks may drop the shared copy (package
	// intern), and the second block would then start a new one: the
	// sharing checked here is within one collection cycle.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	decoded := func(name string) *v1alpha1.MACBlock {
		var b v1alpha1.MACBlock
		raw := `{"metadata":{"name":"` + name + `","resourceVersion":"7","labels":{"team":"a"},"managedFields":[{"manager":"kubemacpool"}]},"spec":{"first":"02:00:00:00:00:00","last":"02:00:00:00:00:3f","held":3,"entries":[` +
			`{"offset":1,"mac":"02:00:00:00:00:01","owner":{"kind":"Pod","namespace":"tenant-a","name":"p1","uid":"u1"},"network":"tenant-a/net1","interface":"net1","reserved":"2026-12-07T10:00:00.000000Z"},` +
			`{"offset":2,"mac":"02:00:00:00:00:02","owner":{"kind":"Pod","namespace":"tenant-a","name":"p1","uid":"u1"},"network":"tenant-a/net2","interface":"net2","reserved":"2026-12-07T10:00:00.000000Z"},` +
			`{"offset":3,"mac":"02:00:00:00:00:03","owner":{"kind":"Pod","namespace":"tenant-a","name":"p2","uid":"u2"},"network":"tenant-a/net1","interface":"net1","reserved":"2026-12-07T10:00:01.000000Z","adopted":true}]}}`
		if err := json.Unmarshal([]byte(raw), &b); err != nil {
			t.Fatal(err)
		}
		return &b
	}
	a, b := decoded("02-00-00-00-00-00"), decoded("02-00-00-00-00-40")
	want := a.DeepCopy()
	want.ManagedFields = nil
	var stored []*storedBlock
	for _, blk := range []*v1alpha1.MACBlock{a, b} {
		out, err := Compact(blk)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := out.(*storedBlock)
		if !ok {
			t.Fatalf("Compact returned a %T", out)
		}
		stored = append(stored, s)
	}
	if got := stored[0].block(); !reflect.DeepEqual(got, want) {
		t.Fatalf("the block made from what is kept differs:\n got %+v\nwant %+v", got, want)
	}
	if n := len(stored[0].owners); n != 2 {
		t.Errorf("3 entries of 2 owners keep %d owners", n)
	}
	first := stored[0].entry(0)
	for _, s := range stored {
		for i := range s.slots {
			e := s.entry(i)
			for _, pair := range [][2]string{{first.Owner.Namespace, e.Owner.Namespace}, {first.Owner.Kind, e.Owner.Kind},
				{first.Network, e.Network}, {first.Interface, e.Interface}} {
				if pair[0] == pair[1] && unsafe.StringData(pair[0]) != unsafe.StringData(pair[1]) {
					t.Errorf("%q is stored twice", pair[0])
				}
			}
		}
	}
	// A copy is the caller's own: changing it leaves what is kept.
	mine := stored[0].block()
	mine.Labels["team"] = "b"
	mine.Spec.Entries[0].Owner.Name = "other"
	if again := stored[0].block(); !reflect.DeepEqual(again, want) {
		t.Fatalf("changing a copy changed what is kept: %+v", again)
	}
	// So is a deep copy of what is kept.
	dc := stored[0].DeepCopyObject().(*storedBlock)
	dc.Labels["team"] = "c"
	dc.slots[0].adopted = true
	if again := stored[0].block(); !reflect.DeepEqual(again, want) {
		t.Fatalf("changing a deep copy changed what is kept: %+v", again)
	}
	if _, err := Compact(&v1alpha1.MACBlockList{}); err != nil {
		t.Fatalf("another kind: %v", err)
	}
}
