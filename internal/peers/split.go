package peers

import (
	"hash/fnv"
	"slices"

	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Split says which cluster of a set of peers picks new MACs in which MAC
// block. Every cluster computes it alike from the same names, so two
// clusters never pick automatic MACs in one block, whether or not they see
// each other's writes in time.
//
// The rule is rendezvous hashing: each cluster scores a block by a hash of
// its own name and the block's first MAC, and the highest score owns the
// block (ties go to the name that sorts first). Each cluster gets about an
// equal share, and when a cluster joins or leaves the set, only the blocks
// it gains or had change hands.
type Split struct {
	self  string
	names []string // sorted, self included
}

// NewSplit is the split of blocks between self and its peers.
func NewSplit(self string, peers []string) Split {
	names := append([]string{self}, peers...)
	slices.Sort(names)
	return Split{self: self, names: slices.Compact(names)}
}

// Names are the clusters sharing the blocks, sorted.
func (s Split) Names() []string { return slices.Clone(s.names) }

// Alone says there is no peer: every block is this cluster's.
func (s Split) Alone() bool { return len(s.names) <= 1 }

// Owner is the cluster that picks new MACs in the block of m.
func (s Split) Owner(m mac.MAC) string {
	start := ledger.BlockStart(m)
	best, bestScore := "", uint64(0)
	for _, name := range s.names {
		if score := blockScore(name, start); best == "" || score > bestScore {
			best, bestScore = name, score
		}
	}
	return best
}

// Mine reports whether this cluster picks new MACs in the block of m.
func (s Split) Mine(m mac.MAC) bool { return s.Alone() || s.Owner(m) == s.self }

// blockScore mixes the 64-bit FNV-1a hash of the cluster's name with the
// block's first MAC through SplitMix64's finaliser: FNV alone keeps the
// order of two names' hashes for most inputs that differ only in their last
// bytes, which would hand one cluster nearly every block.
func blockScore(cluster string, start mac.MAC) uint64 {
	h := fnv.New64a()
	h.Write([]byte(cluster))
	x := h.Sum64() ^ (uint64(start) * 0x9e3779b97f4a7c15)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
