package carriers

import (
	"slices"
	"testing"

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
	if ix.objects[objectKey{Pod, "ns", "p"}] != second {
		t.Error("the index keeps the first Carries after an update that carried the same")
	}
	for _, m := range []mac.MAC{1, 2} {
		if ps := ix.byMAC[m]; len(ps) != 1 || ps[0] != second {
			t.Errorf("MAC %s: the index refers to %v, want the second Carries", m, ps)
		}
	}
	ix.Delete(Pod, "ns", "p")
	if ix.Len() != 0 || len(ix.objects) != 0 {
		t.Errorf("after the delete the index holds %d MACs, %d objects", ix.Len(), len(ix.objects))
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
