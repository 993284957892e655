package carriers

import (
	"hash/maphash"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// An update that changes nothing carried moves the index to the new
// Carries (the one the cache holds now), so the old object's is not kept
// alive by the index, and removing the object afterwards removes it all.
func TestIndexKeepsTheLatestCarries(t *testing.T) {
	ix := NewIndex(nil)
	self := Ref{Kind: Pod, Namespace: "ns", Name: "p", UID: "u"}
	carries := func() *Carries {
		return Pack([]Carrier{{MAC: mac.MAC(1), Object: self, For: self}, {MAC: mac.MAC(2), Object: self, For: self}})
	}
	first, second := carries(), carries()
	ix.SetCarries(Pod, "ns", "p", first)
	ix.SetCarries(Pod, "ns", "p", second)
	if got, _ := ix.objectLocked(objectKey{Pod, "ns", "p"}); got != second {
		t.Error("the index keeps the first Carries after an update that carried the same")
	}
	for _, m := range []mac.MAC{1, 2} {
		if ps := ix.carriersLocked(m); len(ps) != 1 || ps[0] != second {
			t.Errorf("MAC %s: the index refers to %v, want the second Carries", m, ps)
		}
	}
	ix.Delete(Pod, "ns", "p")
	if ix.Len() != 0 || len(ix.objects)+len(ix.collided) != 0 {
		t.Errorf("after the delete the index holds %d MACs, %d objects", ix.Len(), len(ix.objects)+len(ix.collided))
	}
}

// What the Of functions make is one object's carriers as Pack keeps them:
// each shares Object, For, ForReceiver and Created, and Pack then List
// gives them back unchanged.
func TestPackKeepsWhatOneObjectCarries(t *testing.T) {
	self := Ref{Kind: Pod, Namespace: "ns", Name: "launcher", UID: "u"}
	vmi := Ref{Kind: VirtualMachineInstance, Namespace: "ns", Name: "vm", UID: "v"}
	for name, list := range map[string][]Carrier{
		"for itself":         {{MAC: 1, Object: self, For: self, Network: "ns/a", Interface: "net1"}, {MAC: 2, Object: self, For: self, Network: "ns/b"}},
		"for another":        {{MAC: 1, Object: self, For: vmi}, {MAC: 1, Object: self, For: vmi, Network: "ns/twice"}},
		"migration receiver": {{MAC: 3, Object: vmi, For: vmi, ForReceiver: true}},
	} {
		if got := Pack(list).List(); !slices.Equal(got, list) {
			t.Errorf("%s: Pack then List gives %+v, want %+v", name, got, list)
		}
	}
	if Pack(nil) != nil || Pack(nil).List() != nil || Pack(nil).Len() != 0 {
		t.Error("an empty list does not pack to nothing")
	}
}

// A MAC several objects carry stays carried until the last goes, whichever
// goes first, and the index keeps nothing of it afterwards; an object
// listing the MAC twice is one object with two carriers of it.
func TestIndexKeepsEveryCarrierOfAMAC(t *testing.T) {
	ix := NewIndex(nil)
	const m = mac.MAC(7)
	ref := func(name string) Ref { return Ref{Kind: Pod, Namespace: "ns", Name: name, UID: types.UID(name)} }
	set := func(name string, networks ...string) {
		var list []Carrier
		for _, n := range networks {
			list = append(list, Carrier{MAC: m, Object: ref(name), For: ref(name), Network: n})
		}
		ix.Set(Pod, "ns", name, list)
	}
	carriedBy := func() []string {
		var out []string
		for _, c := range ix.Of(m) {
			out = append(out, c.Object.Name+"/"+c.Network)
		}
		return out
	}
	set("a", "ns/x")
	set("b", "ns/x", "ns/y")
	set("c", "ns/x")
	if got, want := carriedBy(), []string{"a/ns/x", "b/ns/x", "b/ns/y", "c/ns/x"}; !slices.Equal(got, want) {
		t.Fatalf("carried by %v, want %v", got, want)
	}
	for _, gone := range []string{"a", "c", "b"} {
		ix.Delete(Pod, "ns", gone)
		if ix.Carried(m) != (gone != "b") {
			t.Fatalf("after %s went: carried = %v", gone, ix.Carried(m))
		}
	}
	if len(ix.byMAC) != 0 || len(ix.more) != 0 || len(ix.objects)+len(ix.collided) != 0 {
		t.Errorf("nothing carries %s, yet the index keeps %d, %d, %d", m, len(ix.byMAC), len(ix.more), len(ix.objects)+len(ix.collided))
	}
}

// Two objects whose hashes are equal are each found by their own name,
// whichever goes first; so is one whose Carries name another object.
func TestIndexKeepsObjectsWhoseHashesCollide(t *testing.T) {
	ix := NewIndex(nil)
	a, b := Ref{Kind: Pod, Namespace: "ns", Name: "a", UID: "a"}, Ref{Kind: Pod, Namespace: "ns", Name: "b", UID: "b"}
	ix.Set(Pod, "ns", "a", []Carrier{{MAC: 1, Object: a, For: a}})
	// b as if its hash were a's: kept by its whole key.
	hb := maphash.Comparable(ix.seed, objectKey{Pod, "ns", "b"})
	ix.objects[hb] = ix.objects[maphash.Comparable(ix.seed, objectKey{Pod, "ns", "a"})]
	ix.Set(Pod, "ns", "b", []Carrier{{MAC: 2, Object: b, For: b}})
	delete(ix.objects, hb)
	// c lists carriers of another object under its own name.
	ix.Set(Pod, "ns", "c", []Carrier{{MAC: 3, Object: a, For: a}})
	if !ix.ObjectCarries(Pod, "ns", "a", "a", 1) || !ix.ObjectCarries(Pod, "ns", "b", "b", 2) || !ix.ObjectCarries(Pod, "ns", "c", "", 3) {
		t.Fatal("an object is not found by its name")
	}
	for _, name := range []string{"a", "b", "c"} {
		ix.Delete(Pod, "ns", name)
	}
	if ix.Len() != 0 || len(ix.objects)+len(ix.collided) != 0 {
		t.Errorf("all deleted, the index keeps %d MACs, %d objects", ix.Len(), len(ix.objects)+len(ix.collided))
	}
}
