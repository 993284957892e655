package pool

import (
	"math/rand/v2"
	"testing"
)

// naiveNextFree is the obvious linear answer the index set must agree with.
func naiveNextFree(held map[uint64]bool, size, from uint64) (uint64, bool) {
	for i := from; i < size; i++ {
		if !held[i] {
			return i, true
		}
	}
	return 0, false
}

func TestIndexSetAgreesWithLinearScan(t *testing.T) {
	for _, size := range []uint64{1, 2, 63, 64, 65, 4096, 4097, 70000} {
		rng := rand.New(rand.NewPCG(size, 7))
		s := newIndexSet(size)
		held := map[uint64]bool{}
		for step := 0; step < 20000; step++ {
			i := rng.Uint64N(size)
			switch rng.IntN(3) {
			case 0, 1: // bias towards filling so full words and levels occur
				if got, want := s.Add(i), !held[i]; got != want {
					t.Fatalf("size %d: Add(%d) = %v, want %v", size, i, got, want)
				}
				held[i] = true
			case 2:
				if got, want := s.Remove(i), held[i]; got != want {
					t.Fatalf("size %d: Remove(%d) = %v, want %v", size, i, got, want)
				}
				delete(held, i)
			}
			from := rng.Uint64N(size)
			got, gotOK := s.NextFree(from)
			want, wantOK := naiveNextFree(held, size, from)
			if got != want || gotOK != wantOK {
				t.Fatalf("size %d: NextFree(%d) = %d,%v, want %d,%v", size, from, got, gotOK, want, wantOK)
			}
			if s.Len() != uint64(len(held)) {
				t.Fatalf("size %d: Len() = %d, want %d", size, s.Len(), len(held))
			}
		}
	}
}

func TestIndexSetFullAndEmptyAgain(t *testing.T) {
	const size = 64*64 + 3 // two levels plus a partial last word
	s := newIndexSet(size)
	for i := uint64(0); i < size; i++ {
		s.Add(i)
	}
	if i, ok := s.NextFree(0); ok {
		t.Fatalf("full set: NextFree(0) = %d, want none", i)
	}
	s.Remove(size - 1)
	if i, ok := s.NextFree(0); !ok || i != size-1 {
		t.Fatalf("NextFree(0) = %d,%v, want %d", i, ok, size-1)
	}
	for i := uint64(0); i < size; i++ {
		s.Remove(i)
	}
	for level, l := range s.levels {
		if len(l.words) != 0 {
			t.Fatalf("empty set keeps %d words at level %d: memory must follow what is held", len(l.words), level)
		}
	}
}

func TestIndexSetHugeSize(t *testing.T) {
	s := newIndexSet(1 << 48)
	// Hold a long run starting at 0; the next free index is right after it,
	// found without walking the run.
	for i := uint64(0); i < 1<<16; i++ {
		s.Add(i)
	}
	if i, ok := s.NextFree(5); !ok || i != 1<<16 {
		t.Fatalf("NextFree(5) = %d,%v, want %d", i, ok, 1<<16)
	}
	s.Add(1<<48 - 1)
	if _, ok := s.NextFree(1<<48 - 1); ok {
		t.Fatalf("last index held: NextFree(last) must report none")
	}
}
