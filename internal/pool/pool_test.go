package pool

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/utils/clock"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

func smallPool(t *testing.T, start, end mac.MAC) *Pool {
	t.Helper()
	alloc, err := mac.NewAllocatable(mac.Range{Start: start, End: end}, false)
	if err != nil {
		t.Fatal(err)
	}
	p := New(nil, clock.RealClock{})
	p.SetRange(alloc)
	return p
}

// Candidates walk forward from the cursor: a MAC just freed is not handed
// straight back while others are free, and a full pool says so.
func TestCandidatesNoImmediateReuseThenExhausted(t *testing.T) {
	p := smallPool(t, 0x0a0000000000, 0x0a0000000007)
	seen := map[mac.MAC]bool{}
	first, err := p.candidate()
	if err != nil {
		t.Fatal(err)
	}
	p.setMark(first, picked, false) // released at once
	seen[first] = true
	for i := 0; i < 7; i++ {
		m, err := p.candidate()
		if err != nil {
			t.Fatal(err)
		}
		if seen[m] {
			t.Fatalf("candidate %d is %s again while others are free", i, m)
		}
		seen[m] = true
	}
	// Only the freed MAC is left: now it comes back, then the pool is full.
	if m, err := p.candidate(); err != nil || m != first {
		t.Fatalf("last free candidate = %s, %v; want %s", m, err, first)
	}
	_, err = p.candidate()
	var exhausted *ExhaustedError
	if !errors.As(err, &exhausted) || !strings.Contains(err.Error(), "all 8 allocatable addresses are held") {
		t.Fatalf("full pool: error = %v", err)
	}
}

// A range change keeps MACs held outside the new range held (they are no
// longer candidates) and counts those inside.
func TestSetRangeKeepsHeld(t *testing.T) {
	p := smallPool(t, 0x0a0000000000, 0x0a00000000ff)
	p.SetReserved(0x0a0000000001, true)
	p.SetReserved(0x0e0000000001, true)
	alloc, _ := mac.NewAllocatable(mac.Range{Start: 0x0e0000000000, End: 0x0e00000000ff}, false)
	p.SetRange(alloc)
	s := p.Stats()
	if s.Held != 1 || s.Total != 2 || s.Size != 256 {
		t.Fatalf("stats after range change = %+v, want 1 held of 256, 2 in all", s)
	}
	for i := 0; i < 255; i++ {
		if m, _ := p.candidate(); m == 0x0e0000000001 {
			t.Fatal("a held MAC was offered")
		}
	}
}

// A MAC an object carries is never a candidate, whether or not a
// reservation holds it too, and stays out when its reservation goes or the
// range is set again; it becomes a candidate once nothing carries it.
func TestCarriedMACsAreNotCandidates(t *testing.T) {
	p := smallPool(t, 0x0a0000000000, 0x0a0000000003)
	ix := carriers.NewIndex(p.SetCarried)
	p.WatchCarried(ix)
	pod := carriers.Ref{Kind: carriers.Pod, Namespace: "ns", Name: "p"}
	carry := func(name string, macs ...mac.MAC) {
		ref := carriers.Ref{Kind: carriers.Pod, Namespace: "ns", Name: name}
		var cs []carriers.Carrier
		for _, m := range macs {
			cs = append(cs, carriers.Carrier{MAC: m, Object: ref, For: ref})
		}
		ix.Set(carriers.Pod, "ns", name, cs)
	}
	carry("p", 0x0a0000000000, 0x0a0000000001, 0x0a0000000002)
	p.SetReserved(0x0a0000000001, true)
	p.SetReserved(0x0a0000000001, false) // its reservation goes; the pod still carries it
	for i := 0; i < 3; i++ {
		if m, err := p.candidate(); err != nil || m != 0x0a0000000003 {
			t.Fatalf("candidate = %s, %v; want the one uncarried MAC", m, err)
		}
		p.setMark(0x0a0000000003, picked, false)
	}
	if s := p.Stats(); s.Held != 3 || s.Total != 3 {
		t.Fatalf("stats = %+v, want 3 held", s)
	}

	// Asked for explicitly by another object: refused, naming the carrier.
	// The same object re-applying it is not refused by the carrier check.
	_, err := p.Reserve(t.Context(), Request{Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "other"}, DryRun: true,
		Slots: []Slot{{Network: "ns/a", Requested: 0x0a0000000002}}})
	var held *holders.HeldError
	if !errors.As(err, &held) || !strings.Contains(err.Error(), "already in use by "+pod.String()) {
		t.Fatalf("claim of a carried MAC: %v", err)
	}
	if !p.Usable(0x0a0000000002, Request{Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p"}}) {
		t.Fatal("the carrier itself was refused its MAC")
	}

	carry("p", 0x0a0000000000) // two interfaces removed
	seen := map[mac.MAC]bool{}
	for i := 0; i < 3; i++ {
		m, err := p.candidate()
		if err != nil {
			t.Fatal(err)
		}
		seen[m] = true
	}
	if seen[0x0a0000000000] || len(seen) != 3 {
		t.Fatalf("candidates after the pod dropped two MACs: %v", seen)
	}
}
