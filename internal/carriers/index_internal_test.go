package carriers

import (
	"testing"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// An update that changes nothing carried moves the index to the new list
// (the one the cache holds now), so the list of the old object is not kept
// alive by the index, and removing the object afterwards removes it all.
func TestIndexKeepsTheLatestList(t *testing.T) {
	ix := NewIndex(nil)
	self := Ref{Kind: Pod, Namespace: "ns", Name: "p", UID: "u"}
	list := func() []Carrier {
		return []Carrier{{MAC: mac.MAC(1), Object: self, For: self}, {MAC: mac.MAC(2), Object: self, For: self}}
	}
	first, second := list(), list()
	ix.Set(Pod, "ns", "p", first)
	ix.Set(Pod, "ns", "p", second)
	if got := ix.objects[objectKey{Pod, "ns", "p"}]; &got[0] != &second[0] {
		t.Error("the index keeps the first list after an update that carried the same")
	}
	for i, m := range []mac.MAC{1, 2} {
		if ps := ix.byMAC[m]; len(ps) != 1 || ps[0] != &second[i] {
			t.Errorf("MAC %s: the index refers to %v, want the second list's carrier", m, ps)
		}
	}
	ix.Delete(Pod, "ns", "p")
	if ix.Len() != 0 || len(ix.objects) != 0 {
		t.Errorf("after the delete the index holds %d MACs, %d objects", ix.Len(), len(ix.objects))
	}
}
