package mac

import (
	"fmt"
	"slices"
)

// octetBlock is the number of addresses sharing one first octet. The
// multicast and universal/local bits live in the first octet, so whether an
// address is allocatable is decided per block of this size.
const octetBlock = 1 << 40

// allowedOctet reports whether addresses with first octet f may be handed
// out: never multicast, and universally administered only when allowed.
func allowedOctet(f byte, allowUniversal bool) bool {
	return f&0x01 == 0 && (allowUniversal || f&0x02 != 0)
}

// segment is a run of consecutive allocatable addresses. Allowed first
// octets are never adjacent (an odd, multicast octet sits between any two),
// so each segment is the part of one allowed octet block inside the range.
type segment struct {
	start, end MAC    // inclusive
	before     uint64 // allocatable addresses in all earlier segments
}

// Allocatable is the set of MACs a pool may hand out: the addresses of a
// Range minus multicast addresses and, unless allowUniversal, minus
// universally administered ones (a pool must never hand out a MAC a real
// vendor NIC may carry).
//
// It numbers those addresses 0..Size()-1 in ascending order, so a pool can
// treat them as a dense index space. All methods cost at most a binary
// search over <= 128 segments; nothing walks the range.
//
// The zero value is an empty set. Values are immutable and safe to copy
// and share between goroutines.
type Allocatable struct {
	r              Range
	allowUniversal bool
	segs           []segment // ascending; shared by copies, never mutated
	size           uint64
	excluded       []Range // what Excluding took out, in the order given
}

// NewAllocatable builds the allocatable set of r. It refuses a malformed
// range and a range with no allocatable address, saying why, because a pool
// configured that way could never hand out anything.
func NewAllocatable(r Range, allowUniversal bool) (Allocatable, error) {
	if err := r.validate(); err != nil {
		return Allocatable{}, err
	}
	a := Allocatable{r: r, allowUniversal: allowUniversal}
	anyUnicast := false
	// End's first octet is at most 0xff, so this loop runs <= 256 times.
	for f := uint64(r.Start >> 40); f <= uint64(r.End>>40); f++ {
		if f&0x01 == 0 {
			anyUnicast = true
		}
		if !allowedOctet(byte(f), allowUniversal) {
			continue
		}
		// Clip the octet block to the range; only the first and last
		// blocks can be partial.
		s := max(MAC(f<<40), r.Start)
		e := min(MAC(f<<40|(octetBlock-1)), r.End)
		a.segs = append(a.segs, segment{start: s, end: e, before: a.size})
		a.size += uint64(e-s) + 1
	}
	if a.size == 0 {
		why := "every address in it is multicast (first octet with its lowest bit set)"
		if anyUnicast {
			why = "every non-multicast address in it is universally administered (first octet with bit 0x02 clear); set allowUniversal to use it"
		}
		return Allocatable{}, fmt.Errorf("range %s has no allocatable address: %s", r, why)
	}
	return a, nil
}

// Range returns the range the set was built from.
func (a Allocatable) Range() Range { return a.r }

// AllowUniversal reports whether universally administered addresses are included.
func (a Allocatable) AllowUniversal() bool { return a.allowUniversal }

// Size returns the number of allocatable MACs (at most 2^47, so it never overflows).
func (a Allocatable) Size() uint64 { return a.size }

// At returns the i-th allocatable MAC in ascending order. It panics unless
// i < Size(), like indexing a slice, because an out-of-range index is a
// bug in the caller rather than a runtime condition.
func (a Allocatable) At(i uint64) MAC {
	if i >= a.size {
		panic(fmt.Sprintf("mac: Allocatable.At(%d) out of range: size is %d", i, a.size))
	}
	// Find the last segment whose first index is <= i. segs[0].before is 0,
	// so the answer always exists.
	lo, hi := 0, len(a.segs)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if a.segs[mid].before <= i {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	s := a.segs[lo]
	return s.start + MAC(i-s.before)
}

// IndexOf is the inverse of At. It returns false when m is not allocatable:
// outside the range, multicast, or universal when that is not allowed.
func (a Allocatable) IndexOf(m MAC) (uint64, bool) {
	if len(a.segs) == 0 || !a.r.Contains(m) || !allowedOctet(m.FirstOctet(), a.allowUniversal) {
		return 0, false
	}
	// Find the last segment starting at or before m.
	lo, hi := 0, len(a.segs)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if a.segs[mid].start <= m {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	s := a.segs[lo]
	// The checks above already guarantee this; it guards the arithmetic.
	if m < s.start || m > s.end {
		return 0, false
	}
	return s.before + uint64(m-s.start), true
}

// Contains reports whether m is allocatable.
func (a Allocatable) Contains(m MAC) bool {
	_, ok := a.IndexOf(m)
	return ok
}

// KubeVirtInPodBridge is the MAC KubeVirt keeps for the bridge inside a
// virt-launcher pod: its virt-api refuses a masquerade interface asking
// for it ("The requested MAC address is reserved for the in-pod bridge").
// It is the first address of the default range, so a pool must never hand
// it out.
const KubeVirtInPodBridge MAC = 0x020000000000

// Reserved are the MACs no pool hands out, whatever its range.
var Reserved = []MAC{KubeVirtInPodBridge}

// Excluding returns a without the addresses of rs: they are no longer
// numbered, counted in Size, or Contained. Ranges outside a, or
// overlapping each other, are fine. The result may be empty; the caller
// decides whether that is an error.
func (a Allocatable) Excluding(rs ...Range) Allocatable {
	out := Allocatable{r: a.r, allowUniversal: a.allowUniversal, excluded: append(slices.Clone(a.excluded), rs...)}
	segs := a.segs
	for _, x := range rs {
		var kept []segment
		for _, s := range segs {
			if x.End < s.start || x.Start > s.end {
				kept = append(kept, s)
				continue
			}
			if x.Start > s.start {
				kept = append(kept, segment{start: s.start, end: x.Start - 1})
			}
			if x.End < s.end {
				kept = append(kept, segment{start: x.End + 1, end: s.end})
			}
		}
		segs = kept
	}
	for _, s := range segs {
		out.segs = append(out.segs, segment{start: s.start, end: s.end, before: out.size})
		out.size += uint64(s.end-s.start) + 1
	}
	return out
}

// Excluded returns the ranges Excluding took out, in the order given.
func (a Allocatable) Excluded() []Range { return slices.Clone(a.excluded) }

// ExcludedBy returns the first excluded range holding m.
func (a Allocatable) ExcludedBy(m MAC) (Range, bool) {
	for _, r := range a.excluded {
		if r.Contains(m) {
			return r, true
		}
	}
	return Range{}, false
}
