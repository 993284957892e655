package pool

import "math/bits"

// indexSet is a set of indices in [0, size) that answers "the first index at
// or after i that is NOT in the set" with a constant number of map lookups,
// whatever the size (up to 2^48 here), and whose memory grows with the
// indices held, not with size.
//
// It is a sparse bitmap in levels. In level 0, bit b of word w says whether
// index w*64+b is held. In level k > 0, bit b of word w says whether word
// w*64+b of level k-1 is full (all 64 bits set). A word that is all zeros is
// not stored at all. Finding a free index therefore skips a full run of 64^k
// indices with one lookup at level k, so the cost is bounded by the number of
// levels (8 for 2^48) instead of the length of a held run.
type indexSet struct {
	size   uint64
	count  uint64
	levels []bitLevel
}

type bitLevel struct {
	words map[uint64]uint64
	bits  uint64 // how many bits this level has; bits past it are never set
}

const fullWord = ^uint64(0)

func newIndexSet(size uint64) *indexSet {
	s := &indexSet{size: size}
	for n := size; ; n = (n + 63) / 64 {
		s.levels = append(s.levels, bitLevel{words: map[uint64]uint64{}, bits: n})
		if n <= 64 {
			break
		}
	}
	return s
}

// Len is the number of indices held.
func (s *indexSet) Len() uint64 { return s.count }

// Has reports whether index i is held.
func (s *indexSet) Has(i uint64) bool {
	return i < s.size && s.levels[0].words[i/64]&(1<<(i%64)) != 0
}

// Add holds index i. It reports whether i was newly added.
func (s *indexSet) Add(i uint64) bool {
	if i >= s.size || s.Has(i) {
		return false
	}
	s.count++
	for level := range s.levels {
		words := s.levels[level].words
		w := words[i/64] | 1<<(i%64)
		words[i/64] = w
		if w != fullWord {
			break
		}
		// This word just became full: mark it so in the level above.
		i /= 64
	}
	return true
}

// Remove frees index i. It reports whether i was held.
func (s *indexSet) Remove(i uint64) bool {
	if !s.Has(i) {
		return false
	}
	s.count--
	for level := range s.levels {
		words := s.levels[level].words
		old := words[i/64]
		w := old &^ (1 << (i % 64))
		if w == 0 {
			delete(words, i/64)
		} else {
			words[i/64] = w
		}
		if old != fullWord {
			break
		}
		// The word was full and no longer is: unmark it in the level above.
		i /= 64
	}
	return true
}

// NextFree returns the first index >= from that is not held, or false when
// every index in [from, size) is held.
func (s *indexSet) NextFree(from uint64) (uint64, bool) {
	return s.nextClear(0, from)
}

// nextClear finds the first clear bit at or after from in the given level.
func (s *indexSet) nextClear(level int, from uint64) (uint64, bool) {
	if level == len(s.levels) {
		return 0, false
	}
	l := s.levels[level]
	if from >= l.bits {
		return 0, false
	}
	w := from / 64
	taken := l.words[w] | (1<<(from%64) - 1) // bits before from count as taken
	if taken == fullWord {
		// Every bit from here to the end of the word is set: ask the level
		// above for the next word of this level that is not full.
		next, ok := s.nextClear(level+1, w+1)
		if !ok {
			return 0, false
		}
		w, taken = next, l.words[next]
	}
	i := w*64 + uint64(bits.TrailingZeros64(^taken))
	if i >= l.bits {
		return 0, false
	}
	return i, true
}
