package ledger

import (
	"slices"
	"testing"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// A macSet holds what was added and not removed, whether short (a list) or
// long (a map, as a StatefulSet's entries are under one owner key).
func TestMACSet(t *testing.T) {
	for _, n := range []int{1, macSetListMost, macSetListMost + 1, 1000} {
		s := &macSet{}
		for i := range n {
			s.add(mac.MAC(i))
			s.add(mac.MAC(i)) // twice: still once
		}
		var got []mac.MAC
		s.each(func(m mac.MAC) { got = append(got, m) })
		slices.Sort(got)
		if len(got) != n || got[0] != 0 || got[n-1] != mac.MAC(n-1) {
			t.Fatalf("%d added: the set holds %d (%v...)", n, len(got), got[:min(3, len(got))])
		}
		for i := range n - 1 {
			if s.remove(mac.MAC(i)) {
				t.Fatalf("%d added: empty after removing %d", n, i+1)
			}
		}
		if !s.remove(mac.MAC(n - 1)) {
			t.Fatalf("%d added, all removed: not empty", n)
		}
	}
}
