package pool

import (
	"errors"
	"strings"
	"testing"

	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// everyOther gives this cluster the blocks of even index.
type everyOther struct{}

func (everyOther) Mine(m mac.MAC) bool { return (m/ledger.BlockSize)%2 == 0 }
func (everyOther) Names() []string     { return []string{"east", "west"} }
func (everyOther) Alone() bool         { return false }

// With peers, new MACs come only from this cluster's blocks that no peer
// holds anything in, until that share is full, and the refusal says so.
func TestCandidatesStayInTheClustersShare(t *testing.T) {
	const start = mac.MAC(0x0a0000000000)
	p := smallPool(t, start, start+8*ledger.BlockSize-1) // 8 blocks, 4 of them this cluster's
	p.SetShare(everyOther{})
	peerBlock := start + 2*ledger.BlockSize // this cluster's, but a peer holds a MAC there
	p.SetPeerHeld(peerBlock+5, true)
	got := map[mac.MAC]bool{}
	for {
		m, err := p.candidate()
		var exhausted *ExhaustedError
		if errors.As(err, &exhausted) {
			if !strings.Contains(err.Error(), "this cluster's share") || !strings.Contains(err.Error(), "east, west") {
				t.Fatalf("a full share is refused without saying so: %v", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got[m] {
			t.Fatalf("%s picked twice", m)
		}
		got[m] = true
		if !(everyOther{}).Mine(m) || ledger.BlockStart(m) == peerBlock {
			t.Fatalf("picked %s in block %s, not this cluster's to pick in", m, ledger.BlockName(m))
		}
	}
	if want := 3 * ledger.BlockSize; len(got) != want {
		t.Fatalf("picked %d MACs, want all %d of the cluster's 3 blocks no peer holds MACs in", len(got), want)
	}
	// The peer lets go: its block is this cluster's to pick in again.
	p.SetPeerHeld(peerBlock+5, false)
	if m, err := p.candidate(); err != nil || ledger.BlockStart(m) != peerBlock {
		t.Fatalf("after the peer's entry went: %s, %v; want a MAC of block %s", m, err, ledger.BlockName(peerBlock))
	}
}
