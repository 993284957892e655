package webhook

import (
	"testing"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

func TestPodSlots(t *testing.T) {
	parse := func(value string) []multus.Element {
		t.Helper()
		elems, err := multus.Parse(value, "ns")
		if err != nil {
			t.Fatal(err)
		}
		return elems
	}
	// Held for the pod: its old annotation's MACs, and one of a network an
	// earlier edit unplugged.
	held := []ledger.Entry{
		{MAC: 0x020000000001, MACBlockEntry: v1alpha1.MACBlockEntry{Network: "ns/a"}},
		{MAC: 0x02000000000e, MACBlockEntry: v1alpha1.MACBlockEntry{Network: "ns/e", Interface: "z"}},
	}
	old := parse(`[{"name":"a","mac":"02:00:00:00:00:01"},{"name":"a","mac":"02:00:00:00:00:02"},{"name":"b","interface":"x","mac":"02:00:00:00:00:03"}]`)
	cases := []struct {
		name   string
		create bool // nothing stored before, nothing held
		now    string
		want   []slot
	}{
		{"create: nothing kept", true, `[{"name":"a"}]`, []slot{{Network: "ns/a"}}},
		{"networks that omit their MAC get theirs back, in order", false, `[{"name":"a"},{"name":"a"},{"name":"b","interface":"x"}]`, []slot{
			{Network: "ns/a", Requested: "02:00:00:00:00:01", Held: true},
			{Network: "ns/a", Requested: "02:00:00:00:00:02", Held: true},
			{Network: "ns/b", Interface: "x", Requested: "02:00:00:00:00:03", Held: true},
		}},
		{"a MAC named elsewhere is not restored twice", false, `[{"name":"a"},{"name":"c","mac":"02:00:00:00:00:01"}]`, []slot{
			{Network: "ns/a", Requested: "02:00:00:00:00:02", Held: true},
			{Network: "ns/c", Requested: "02:00:00:00:00:01", Held: true},
		}},
		{"another interface name is another network", false, `[{"name":"b","interface":"y"}]`, []slot{{Network: "ns/b", Interface: "y"}}},
		{"a new explicit MAC is claimed", false, `[{"name":"d","mac":"02:00:00:00:00:09"}]`, []slot{{Network: "ns/d", Requested: "02:00:00:00:00:09"}}},
		// Asked for again, not assumed: the index saying the pod holds it
		// may lag a release and a new owner; the block write decides.
		{"a network plugged back asks again for the MAC still held for it", false, `[{"name":"e","interface":"z"}]`, []slot{{Network: "ns/e", Interface: "z", Requested: "02:00:00:00:00:0e"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, heldNow := old, held
			if c.create {
				before, heldNow = nil, nil
			}
			got := podSlots(parse(c.now), before, heldNow, nil)
			if len(got) != len(c.want) {
				t.Fatalf("podSlots = %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("slot %d = %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}

// A StatefulSet's pod created again gets back, per network and interface,
// the MACs held for its name, asked for again (not Held: nobody may carry
// them meanwhile).
func TestPodSlotsReturningPod(t *testing.T) {
	elems, err := multus.Parse(`[{"name":"b","interface":"net2"},{"name":"a","interface":"net1"},{"name":"c"}]`, "ns")
	if err != nil {
		t.Fatal(err)
	}
	returning := []ledger.Entry{
		{MAC: 0x020000000001, MACBlockEntry: v1alpha1.MACBlockEntry{Network: "ns/a", Interface: "net1"}},
		{MAC: 0x020000000002, MACBlockEntry: v1alpha1.MACBlockEntry{Network: "ns/b", Interface: "net2"}},
		{MAC: 0x020000000003, MACBlockEntry: v1alpha1.MACBlockEntry{Network: "ns/dropped"}},
	}
	want := []slot{
		{Network: "ns/b", Interface: "net2", Requested: "02:00:00:00:00:02"},
		{Network: "ns/a", Interface: "net1", Requested: "02:00:00:00:00:01"},
		{Network: "ns/c"},
	}
	got := podSlots(elems, nil, nil, returning)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("slot %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
