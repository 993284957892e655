package pool

import (
	"errors"
	"strings"
	"testing"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

func smallPool(t *testing.T, start, end mac.MAC) *Pool {
	t.Helper()
	alloc, err := mac.NewAllocatable(mac.Range{Start: start, End: end}, false)
	if err != nil {
		t.Fatal(err)
	}
	p := New(nil, nil)
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
	p.MarkFree(first) // released at once
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
	p.MarkHeld(0x0a0000000001)
	p.MarkHeld(0x0e0000000001)
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
