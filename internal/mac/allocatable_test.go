package mac

import (
	"strings"
	"testing"
)

const block = uint64(1) << 40 // addresses per first octet

// modelAllowed restates the filter with plain arithmetic instead of bit
// masks, so the tests do not just repeat the implementation.
func modelAllowed(f uint64, allowUniversal bool) bool {
	multicast := f%2 == 1
	universal := (f/2)%2 == 0
	return !multicast && (allowUniversal || !universal)
}

// modelSize counts allocatable addresses octet block by octet block.
func modelSize(r Range, allowUniversal bool) uint64 {
	var n uint64
	for f := uint64(0); f < 256; f++ {
		if !modelAllowed(f, allowUniversal) {
			continue
		}
		lo := max(f*block, uint64(r.Start))
		hi := min((f+1)*block-1, uint64(r.End))
		if lo <= hi {
			n += hi - lo + 1
		}
	}
	return n
}

// checkAgainstModel verifies a block by block: inside an octet block the
// numbering is linear, so it is enough to check each block's clipped first
// and last address and that consecutive allowed blocks get consecutive
// indexes (nothing skipped, nothing counted twice).
func checkAgainstModel(t testing.TB, a Allocatable) {
	t.Helper()
	r := a.Range()
	if got, want := a.Size(), modelSize(r, a.AllowUniversal()); got != want {
		t.Fatalf("%v universal=%v: Size() = %d, want %d", r, a.AllowUniversal(), got, want)
	}
	next := uint64(0) // index the next allowed address must get
	for f := uint64(r.Start) / block; f <= uint64(r.End)/block; f++ {
		first := MAC(max(f*block, uint64(r.Start)))
		last := MAC(min((f+1)*block-1, uint64(r.End)))
		if !modelAllowed(f, a.AllowUniversal()) {
			for _, m := range []MAC{first, last} {
				if i, ok := a.IndexOf(m); ok || a.Contains(m) {
					t.Fatalf("%v: excluded %s has index %d", r, m, i)
				}
			}
			continue
		}
		i, ok := a.IndexOf(first)
		if !ok || i != next {
			t.Fatalf("%v: IndexOf(%s) = %d, %v; want %d, true", r, first, i, ok, next)
		}
		j, ok := a.IndexOf(last)
		if !ok || j != i+uint64(last-first) {
			t.Fatalf("%v: IndexOf(%s) = %d, %v; want %d, true", r, last, j, ok, i+uint64(last-first))
		}
		if a.At(i) != first || a.At(j) != last {
			t.Fatalf("%v: At(%d), At(%d) = %s, %s; want %s, %s", r, i, j, a.At(i), a.At(j), first, last)
		}
		next = j + 1
	}
	if next != a.Size() {
		t.Fatalf("%v: blocks hold %d addresses, Size() = %d", r, next, a.Size())
	}
	// Just outside the range is never allocatable.
	if r.Start > 0 && a.Contains(r.Start-1) {
		t.Fatalf("%v: contains %s below the range", r, r.Start-1)
	}
	if r.End < Max && a.Contains(r.End+1) {
		t.Fatalf("%v: contains %s above the range", r, r.End+1)
	}
}

func mustAllocatable(t testing.TB, r Range, allowUniversal bool) Allocatable {
	t.Helper()
	a, err := NewAllocatable(r, allowUniversal)
	if err != nil {
		t.Fatalf("NewAllocatable(%v, %v): %v", r, allowUniversal, err)
	}
	return a
}

func mustParse(t testing.TB, s string) MAC {
	t.Helper()
	m, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDefaultRange(t *testing.T) {
	// Expected sizes straight from the first octets: the default range is
	// made of whole octet blocks 0x02..0xFD.
	var locals, unicasts uint64
	for f := uint64(0x02); f <= 0xFD; f++ {
		if modelAllowed(f, true) {
			unicasts++
		}
		if modelAllowed(f, false) {
			locals++
		}
	}
	// 0x02, 0x06, ..., 0xFA (0xFE is past the end) and 0x02, 0x04, ..., 0xFC.
	if locals != 63 || unicasts != 126 {
		t.Fatalf("octet counts %d, %d; want 63, 126", locals, unicasts)
	}

	tests := []struct {
		allowUniversal bool
		size           uint64
		first, second  string // At(0), At(1<<40): start of the second allowed block
		last           string // At(Size-1)
	}{
		// fd:ff:ff:ff:ff:ff ends the range but 0xFD is multicast, and 0xFC is
		// universal, so the last local unicast address is in block 0xFA.
		{false, locals * block, "02:00:00:00:00:00", "06:00:00:00:00:00", "fa:ff:ff:ff:ff:ff"},
		{true, unicasts * block, "02:00:00:00:00:00", "04:00:00:00:00:00", "fc:ff:ff:ff:ff:ff"},
	}
	for _, tt := range tests {
		a := mustAllocatable(t, DefaultRange, tt.allowUniversal)
		if a.Range() != DefaultRange || a.AllowUniversal() != tt.allowUniversal {
			t.Errorf("Range(), AllowUniversal() = %v, %v", a.Range(), a.AllowUniversal())
		}
		if a.Size() != tt.size {
			t.Errorf("universal=%v: Size() = %d, want %d", tt.allowUniversal, a.Size(), tt.size)
		}
		for i, want := range map[uint64]string{0: tt.first, block: tt.second, a.Size() - 1: tt.last} {
			if got := a.At(i); got != mustParse(t, want) {
				t.Errorf("universal=%v: At(%d) = %s, want %s", tt.allowUniversal, i, got, want)
			}
		}
		checkAgainstModel(t, a)
	}
}

func TestAllocatableRanges(t *testing.T) {
	tests := []struct {
		name       string
		start, end string
		// sizes with allowUniversal false / true; 0 means NewAllocatable must fail
		local, universal uint64
		at0              string // At(0) when local > 0
	}{
		{"single local address", "02:00:00:00:00:ab", "02:00:00:00:00:ab", 1, 1, "02:00:00:00:00:ab"},
		{"single universal address", "00:00:5e:00:53:01", "00:00:5e:00:53:01", 0, 1, ""},
		{"starts inside multicast block", "03:ff:ff:ff:ff:f0", "06:00:00:00:00:05", 6, block + 6, "06:00:00:00:00:00"},
		{"ends inside multicast block", "02:ff:ff:ff:ff:fe", "03:00:00:00:00:10", 2, 2, "02:ff:ff:ff:ff:fe"},
		{"starts and ends inside multicast blocks", "01:80:00:00:00:00", "07:00:00:00:00:01", 2 * block, 3 * block, "02:00:00:00:00:00"},
		{"partial blocks at both ends", "02:00:00:00:ff:00", "06:00:00:00:00:ff", (block - 0xff00) + 0x100, 2*block - 0xff00 + 0x100, "02:00:00:00:ff:00"},
		{"whole address space", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", 64 * block, 128 * block, "02:00:00:00:00:00"},
		{"universal block only", "04:00:00:00:00:00", "04:ff:ff:ff:ff:ff", 0, block, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Range{mustParse(t, tt.start), mustParse(t, tt.end)}
			for _, allow := range []bool{false, true} {
				want := tt.local
				if allow {
					want = tt.universal
				}
				a, err := NewAllocatable(r, allow)
				if want == 0 {
					if err == nil {
						t.Errorf("universal=%v: NewAllocatable succeeded with size %d, want error", allow, a.Size())
					}
					continue
				}
				if err != nil {
					t.Fatalf("universal=%v: %v", allow, err)
				}
				if a.Size() != want {
					t.Errorf("universal=%v: Size() = %d, want %d", allow, a.Size(), want)
				}
				if !allow && a.At(0) != mustParse(t, tt.at0) {
					t.Errorf("At(0) = %s, want %s", a.At(0), tt.at0)
				}
				checkAgainstModel(t, a)
			}
		})
	}
}

func TestNoAllocatableAddress(t *testing.T) {
	tests := []struct {
		start, end     string
		allowUniversal bool
		want           string
	}{
		{"03:00:00:00:00:00", "03:ff:ff:ff:ff:ff", false,
			"range 03:00:00:00:00:00-03:ff:ff:ff:ff:ff has no allocatable address: every address in it is multicast (first octet with its lowest bit set)"},
		{"03:00:00:00:00:00", "03:ff:ff:ff:ff:ff", true,
			"range 03:00:00:00:00:00-03:ff:ff:ff:ff:ff has no allocatable address: every address in it is multicast (first octet with its lowest bit set)"},
		{"ff:ff:ff:ff:ff:ff", "ff:ff:ff:ff:ff:ff", true, "every address in it is multicast"},
		{"00:00:00:00:00:00", "00:ff:ff:ff:ff:ff", false,
			"range 00:00:00:00:00:00-00:ff:ff:ff:ff:ff has no allocatable address: every non-multicast address in it is universally administered (first octet with bit 0x02 clear); set allowUniversal to use it"},
		// Universal block followed by a multicast one: the universal reason wins,
		// since allowing universal addresses would fix it.
		{"04:00:00:00:00:00", "05:ff:ff:ff:ff:ff", false, "universally administered (first octet with bit 0x02 clear); set allowUniversal to use it"},
	}
	for _, tt := range tests {
		r := Range{mustParse(t, tt.start), mustParse(t, tt.end)}
		a, err := NewAllocatable(r, tt.allowUniversal)
		if err == nil {
			t.Errorf("NewAllocatable(%v, %v) has size %d, want error", r, tt.allowUniversal, a.Size())
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewAllocatable(%v, %v) error %q, want it to contain %q", r, tt.allowUniversal, err, tt.want)
		}
	}
}

func TestNewAllocatableRejectsMalformedRange(t *testing.T) {
	for _, r := range []Range{
		{Start: 0x020000000010, End: 0x020000000001},
		{Start: 0x020000000000, End: Max + 1},
	} {
		if _, err := NewAllocatable(r, true); err == nil {
			t.Errorf("NewAllocatable(%#x-%#x) succeeded, want error", uint64(r.Start), uint64(r.End))
		}
	}
}

func TestIndexOfExcluded(t *testing.T) {
	a := mustAllocatable(t, DefaultRange, false)
	u := mustAllocatable(t, DefaultRange, true)
	tests := []struct {
		in             string
		local, unicast bool // allocatable without / with universal
	}{
		{"00:00:00:00:00:01", false, false}, // below the range
		{"01:ff:ff:ff:ff:ff", false, false}, // below the range
		{"fe:00:00:00:00:00", false, false}, // above the range
		{"ff:ff:ff:ff:ff:ff", false, false}, // broadcast, above the range
		{"03:00:00:00:00:00", false, false}, // multicast
		{"fd:ff:ff:ff:ff:ff", false, false}, // multicast range end
		{"04:00:00:00:00:00", false, true},  // universal
		{"fc:ff:ff:ff:ff:ff", false, true},  // universal
		{"02:00:00:00:00:00", true, true},
		{"fa:ff:ff:ff:ff:ff", true, true},
	}
	for _, tt := range tests {
		m := mustParse(t, tt.in)
		for _, c := range []struct {
			a    Allocatable
			want bool
		}{{a, tt.local}, {u, tt.unicast}} {
			i, ok := c.a.IndexOf(m)
			if ok != c.want || c.a.Contains(m) != c.want {
				t.Errorf("universal=%v: IndexOf(%s) = %d, %v; want ok=%v", c.a.AllowUniversal(), m, i, ok, c.want)
			}
			if ok && c.a.At(i) != m {
				t.Errorf("universal=%v: At(IndexOf(%s)) = %s", c.a.AllowUniversal(), m, c.a.At(i))
			}
		}
	}
	if _, ok := a.IndexOf(Max + 1); ok {
		t.Error("IndexOf of a value above 48 bits succeeded")
	}
}

func TestAtPanicsOutOfRange(t *testing.T) {
	a := mustAllocatable(t, DefaultRange, false)
	for _, c := range []struct {
		a Allocatable
		i uint64
	}{{a, a.Size()}, {a, ^uint64(0)}, {Allocatable{}, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("At(%d) with Size() %d did not panic", c.i, c.a.Size())
				}
			}()
			c.a.At(c.i)
		}()
	}
}

func TestZeroAllocatableIsEmpty(t *testing.T) {
	var a Allocatable
	if a.Size() != 0 || a.Contains(0) || a.Contains(0x020000000000) {
		t.Errorf("zero Allocatable is not empty")
	}
}

var sink MAC

func BenchmarkAt(b *testing.B) {
	a := mustAllocatable(b, DefaultRange, false)
	size := a.Size()
	i := uint64(0)
	for b.Loop() {
		sink = a.At(i)
		i = (i + 0x9e3779b97f4a7c15) % size // spread indexes over all blocks
	}
}

func BenchmarkIndexOf(b *testing.B) {
	a := mustAllocatable(b, DefaultRange, false)
	macs := make([]MAC, 1024)
	for k := range macs {
		macs[k] = a.At(uint64(k) * (a.Size() / uint64(len(macs))))
	}
	var n uint64
	k := 0
	for b.Loop() {
		i, _ := a.IndexOf(macs[k%len(macs)])
		n += i
		k++
	}
	sink = MAC(n)
}

// Excluding is checked against a plain list of the addresses that remain.
func TestExcluding(t *testing.T) {
	r := Range{mustParse(t, "02:00:00:00:00:00"), mustParse(t, "02:00:00:00:00:1f")}
	tests := []struct {
		name    string
		exclude []Range
	}{
		{"nothing", nil},
		{"the first address", []Range{{KubeVirtInPodBridge, KubeVirtInPodBridge}}},
		{"the last address", []Range{{r.End, r.End}}},
		{"a run in the middle", []Range{{r.Start + 4, r.Start + 9}}},
		{"overlapping runs", []Range{{r.Start + 4, r.Start + 9}, {r.Start + 8, r.Start + 12}}},
		{"runs reaching outside", []Range{{r.Start - 5, r.Start + 1}, {r.End - 1, r.End + 100}}},
		{"outside only", []Range{{r.End + 1, r.End + 10}}},
		{"everything", []Range{{0, Max}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := mustAllocatable(t, r, false).Excluding(tt.exclude...)
			var want []MAC
			for m := r.Start; m <= r.End; m++ {
				out := false
				for _, x := range tt.exclude {
					out = out || x.Contains(m)
				}
				if !out {
					want = append(want, m)
				}
			}
			if a.Size() != uint64(len(want)) {
				t.Fatalf("Size() = %d, want %d", a.Size(), len(want))
			}
			for i, m := range want {
				if got := a.At(uint64(i)); got != m {
					t.Errorf("At(%d) = %s, want %s", i, got, m)
				}
				if j, ok := a.IndexOf(m); !ok || j != uint64(i) {
					t.Errorf("IndexOf(%s) = %d, %v; want %d", m, j, ok, i)
				}
			}
			for _, x := range tt.exclude {
				for _, m := range []MAC{x.Start, x.End} {
					if r.Contains(m) && a.Contains(m) {
						t.Errorf("excluded %s is still allocatable", m)
					}
				}
			}
		})
	}
}
