package rangeconfig

import (
	"strings"
	"testing"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		data map[string]string
		want mac.Range
		err  string
	}{
		{"absent: the default range", nil, mac.DefaultRange, ""},
		{"documented keys", map[string]string{KeyStart: "02:00:00:00:00:11", KeyEnd: "FD:FF:FF:FF:FF:FE"}, mac.Range{Start: 0x020000000011, End: 0xfdfffffffffe}, ""},
		{"upstream keys", map[string]string{KeyStartUpstream: "0a:00:00:00:00:00", KeyEndUpstream: "0a:00:00:00:00:ff"}, mac.Range{Start: 0x0a0000000000, End: 0x0a00000000ff}, ""},
		{"documented keys win", map[string]string{KeyStart: "0a:00:00:00:00:00", KeyEnd: "0a:00:00:00:00:01", KeyStartUpstream: "0e:00:00:00:00:00", KeyEndUpstream: "0e:00:00:00:00:01"}, mac.Range{Start: 0x0a0000000000, End: 0x0a0000000001}, ""},
		{"only a start", map[string]string{KeyStart: "02:00:00:00:00:00"}, mac.Range{}, "set both"},
		{"start after end", map[string]string{KeyStart: "02:00:00:00:00:ff", KeyEnd: "02:00:00:00:00:00"}, mac.Range{}, "after"},
		{"garbage", map[string]string{KeyStart: "nope", KeyEnd: "02:00:00:00:00:00"}, mac.Range{}, "range start"},
		{"all multicast", map[string]string{KeyStart: "03:00:00:00:00:00", KeyEnd: "03:00:00:00:00:ff"}, mac.Range{}, "multicast"},
		{"universal flag garbage", map[string]string{KeyAllowUniversal: "sometimes"}, mac.Range{}, KeyAllowUniversal},
		{"only KubeVirt's bridge MAC", map[string]string{KeyStart: "02:00:00:00:00:00", KeyEnd: "02:00:00:00:00:00"}, mac.Range{}, "which KubeVirt reserves for the in-pod bridge"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			alloc, err := Parse(c.data)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if alloc.Range() != c.want {
				t.Fatalf("range = %s, want %s", alloc.Range(), c.want)
			}
			if alloc.Contains(mac.KubeVirtInPodBridge) {
				t.Fatalf("%s is allocatable; KubeVirt reserves it", mac.KubeVirtInPodBridge)
			}
		})
	}
}

// FuzzParse: whatever an admin writes into the ConfigMap, the
// parser never panics, and an accepted range has allocatable addresses,
// all inside it, none multicast and none excluded.
func FuzzParse(f *testing.F) {
	f.Add("02:00:00:00:00:00", "FD:FF:FF:FF:FF:FF", "", "")
	f.Add("03:00:00:00:00:00", "03:00:00:00:00:ff", "true", "")
	f.Add("", "02:00:00:00:00:00", "false", "")
	f.Add("0000.5e00.5301", "00-00-5E-00-53-FF", "TRUE", "00-00-5E-00-53-01-00-00-5E-00-53-0f")
	f.Add("02:00:00:00:00:00", "02:00:00:00:00:0f", "", "02:00:00:00:00:01, 02:00:00:00:00:03-02:00:00:00:00:0e")
	f.Fuzz(func(t *testing.T, start, end, universal, excluded string) {
		data := map[string]string{KeyStart: start, KeyEnd: end}
		if universal != "" {
			data[KeyAllowUniversal] = universal
		}
		if excluded != "" {
			data[KeyExcluded] = excluded
		}
		alloc, err := Parse(data)
		if err != nil {
			return
		}
		if alloc.Size() == 0 {
			t.Fatal("accepted a range with nothing to allocate")
		}
		for _, i := range []uint64{0, alloc.Size() / 2, alloc.Size() - 1} {
			m := alloc.At(i)
			_, isExcluded := alloc.ExcludedBy(m)
			if !alloc.Range().Contains(m) || m.IsMulticast() || (m.IsUniversal() && !alloc.AllowUniversal()) || m == mac.KubeVirtInPodBridge || isExcluded {
				t.Fatalf("At(%d) = %s: outside %s or not allocatable", i, m, alloc.Range())
			}
		}
	})
}

func TestParseExcluded(t *testing.T) {
	base := map[string]string{KeyStart: "02:00:00:00:00:00", KeyEnd: "02:00:00:00:00:0f"}
	with := func(v string) map[string]string {
		d := map[string]string{KeyExcluded: v}
		for k, x := range base {
			d[k] = x
		}
		return d
	}
	cases := []struct {
		name, value string
		size        uint64 // 16 addresses, less KubeVirt's first one, less these
		err         string
	}{
		{"none", "", 15, ""},
		{"one MAC, any spelling", "02-00-00-00-00-05", 14, ""},
		{"commas and whitespace", " 02:00:00:00:00:05,\n0200.0000.0006\t02:00:00:00:00:07 ", 12, ""},
		{"a range", "02:00:00:00:00:08-02:00:00:00:00:0b", 11, ""},
		{"a range spelled with dashes", "02-00-00-00-00-08-02-00-00-00-00-0B", 11, ""},
		{"overlaps and outside the range", "02:00:00:00:00:08-02:00:00:00:00:0b,02:00:00:00:00:0a-02:00:00:00:00:2f", 7, ""},
		{"garbage", "02:00:00:00:00:05,gateway", 0, `EXCLUDED_MACS entry "gateway" is neither a MAC address nor a range`},
		{"inverted range", "02:00:00:00:00:0b-02:00:00:00:00:08", 0, "range start 02:00:00:00:00:0b is after its end"},
		{"everything", "02:00:00:00:00:00-02:00:00:00:00:ff", 0, "every address in it is excluded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			alloc, err := Parse(with(c.value))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if alloc.Size() != c.size {
				t.Fatalf("size %d, want %d", alloc.Size(), c.size)
			}
			// The canonical form reads back to the same set.
			again, err := Parse(Data(alloc))
			if err != nil || again.Size() != alloc.Size() || len(again.Excluded()) != len(alloc.Excluded()) {
				t.Fatalf("Data round trip: %v, size %d, excluded %v; want size %d, excluded %v", err, again.Size(), again.Excluded(), alloc.Size(), alloc.Excluded())
			}
		})
	}
}
