package ledger

import (
	"testing"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
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

// Who an entry belongs to, and who may take it over.
func TestOwners(t *testing.T) {
	named := v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p"}
	generated := v1alpha1.Owner{Kind: "Pod", Namespace: "ns", GenerateName: "web-"}
	withUID := v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "u1"}
	cases := []struct {
		name                  string
		o                     v1alpha1.Owner
		kind, ns, objName, id string
		want                  bool
	}{
		{"the named object", named, "Pod", "ns", "p", "any", true},
		{"another name", named, "Pod", "ns", "q", "", false},
		{"another namespace", named, "Pod", "other", "p", "", false},
		{"another kind", named, "VirtualMachine", "ns", "p", "", false},
		{"a pod with the prefix", generated, "Pod", "ns", "web-x7k2p", "", true},
		{"the bare prefix is no generated name", generated, "Pod", "ns", "web-", "", false},
		{"no prefix", generated, "Pod", "ns", "db-1", "", false},
		{"the same UID", withUID, "VirtualMachine", "ns", "vm", "u1", true},
		{"a re-created object of the same name", withUID, "VirtualMachine", "ns", "vm", "u2", false},
	}
	for _, c := range cases {
		if got := OwnerMatches(c.o, c.kind, c.ns, c.objName, c.id); got != c.want {
			t.Errorf("%s: OwnerMatches = %v", c.name, got)
		}
	}
	if !SameOwner(named, named) || !SameOwner(withUID, v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}) {
		t.Error("the same named object asking again must be the same owner")
	}
	if SameOwner(generated, generated) {
		t.Error("two objects known only by generateName are never the same")
	}
	if SameOwner(withUID, v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "u2"}) {
		t.Error("another UID is another object")
	}
	vm := carriers.Ref{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "u1"}
	vmi := carriers.Ref{Kind: "VirtualMachineInstance", Namespace: "ns", Name: "vm"}
	if !Bound(withUID, []carriers.Carrier{{Object: vmi, For: vm}}) {
		t.Error("a VM's entry is bound while its VMI carries the MAC")
	}
	if Bound(named, []carriers.Carrier{{Object: vmi, For: vm}}) {
		t.Error("a pod's entry is not bound by someone else's VMI")
	}
}
