package mac

import (
	"fmt"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"02:00:00:00:00:1a", "00-00-5E-00-53-01", "0000.5e00.5301", " 02000000001A ",
		"ff:ff:ff:ff:ff:ff", "02:00:00:00:00:1g", "02:00:00:00:00:00:00:01", "",
		"02-00-00-00-00-1a", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := ParseObjectName(s); err == nil && m.ObjectName() != s {
			t.Fatalf("ParseObjectName(%q) = %s, but its object name is %q", s, m, m.ObjectName())
		}
		m, err := Parse(s)
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, "is not a MAC address") || len(msg) > 400 {
				t.Fatalf("Parse(%q): bad error %q", s, msg)
			}
			return
		}
		if m > Max {
			t.Fatalf("Parse(%q) = %#x, beyond 48 bits", s, uint64(m))
		}
		// The value is the input's hex digits, whatever the separators and case.
		digits := strings.ToLower(strings.NewReplacer(":", "", "-", "", ".", "").Replace(strings.TrimSpace(s)))
		if want := fmt.Sprintf("%012x", uint64(m)); digits != want {
			t.Fatalf("Parse(%q) = %s; input digits are %s", s, m, digits)
		}
		for _, spelled := range []string{m.String(), m.ObjectName()} {
			if m2, err := Parse(spelled); err != nil || m2 != m {
				t.Fatalf("Parse(%q) = %s, %v; want %s (from %q)", spelled, m2, err, m, s)
			}
		}
		if m2, err := ParseObjectName(m.ObjectName()); err != nil || m2 != m {
			t.Fatalf("ParseObjectName(%q) = %s, %v; want %s", m.ObjectName(), m2, err, m)
		}
	})
}

func FuzzAllocatable(f *testing.F) {
	f.Add(uint64(DefaultRange.Start), uint64(DefaultRange.End), false, uint64(0), uint64(0xfa0000000000))
	f.Add(uint64(DefaultRange.Start), uint64(DefaultRange.End), true, uint64(1)<<40, uint64(0xfd0000000000))
	f.Add(uint64(0x0200000000ab), uint64(0x0200000000ab), false, uint64(7), uint64(0x0200000000ab))
	f.Add(uint64(0x03fffffffff0), uint64(0x060000000005), false, uint64(5), uint64(0x040000000000))
	f.Add(uint64(0x02fffffffffe), uint64(0x030000000010), true, uint64(1), uint64(0x02ffffffffff))
	f.Add(uint64(0), uint64(Max), true, ^uint64(0), uint64(Max))
	f.Add(uint64(0x030000000000), uint64(0x03ffffffffff), true, uint64(0), uint64(0))
	f.Fuzz(func(t *testing.T, start, end uint64, allowUniversal bool, i, probe uint64) {
		r := Range{MAC(start) & Max, MAC(end) & Max}
		if r.Start > r.End {
			r.Start, r.End = r.End, r.Start
		}
		a, err := NewAllocatable(r, allowUniversal)
		want := modelSize(r, allowUniversal)
		if err != nil {
			if want != 0 || !strings.Contains(err.Error(), "has no allocatable address") {
				t.Fatalf("NewAllocatable(%v, %v): %v (model size %d)", r, allowUniversal, err, want)
			}
			return
		}
		if a.Size() != want {
			t.Fatalf("NewAllocatable(%v, %v).Size() = %d, want %d", r, allowUniversal, a.Size(), want)
		}

		i %= a.Size()
		m := a.At(i)
		if !r.Contains(m) || m.IsMulticast() || (m.IsUniversal() && !allowUniversal) {
			t.Fatalf("%v universal=%v: At(%d) = %s is not allocatable", r, allowUniversal, i, m)
		}
		if j, ok := a.IndexOf(m); !ok || j != i {
			t.Fatalf("%v: IndexOf(At(%d) = %s) = %d, %v", r, i, m, j, ok)
		}
		if i > 0 && a.At(i-1) >= m {
			t.Fatalf("%v: At(%d) = %s is not below At(%d) = %s", r, i-1, a.At(i-1), i, m)
		}
		if i+1 < a.Size() && a.At(i+1) <= m {
			t.Fatalf("%v: At(%d) = %s is not above At(%d) = %s", r, i+1, a.At(i+1), i, m)
		}

		p := MAC(probe) & Max
		allowed := r.Contains(p) && modelAllowed(uint64(p)>>40, allowUniversal)
		j, ok := a.IndexOf(p)
		if ok != allowed || a.Contains(p) != allowed {
			t.Fatalf("%v universal=%v: IndexOf(%s) ok=%v, want %v", r, allowUniversal, p, ok, allowed)
		}
		if ok && a.At(j) != p {
			t.Fatalf("%v: At(IndexOf(%s) = %d) = %s", r, p, j, a.At(j))
		}

		checkAgainstModel(t, a)
	})
}
