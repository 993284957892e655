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
		{"only KubeVirt's bridge MAC", map[string]string{KeyStart: "02:00:00:00:00:00", KeyEnd: "02:00:00:00:00:00"}, mac.Range{}, "reserved by KubeVirt for the in-pod bridge"},
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
// all inside it and none multicast.
func FuzzParse(f *testing.F) {
	f.Add("02:00:00:00:00:00", "FD:FF:FF:FF:FF:FF", "")
	f.Add("03:00:00:00:00:00", "03:00:00:00:00:ff", "true")
	f.Add("", "02:00:00:00:00:00", "false")
	f.Add("0000.5e00.5301", "00-00-5E-00-53-FF", "TRUE")
	f.Fuzz(func(t *testing.T, start, end, universal string) {
		data := map[string]string{KeyStart: start, KeyEnd: end}
		if universal != "" {
			data[KeyAllowUniversal] = universal
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
			if !alloc.Range().Contains(m) || m.IsMulticast() || (m.IsUniversal() && !alloc.AllowUniversal()) || m == mac.KubeVirtInPodBridge {
				t.Fatalf("At(%d) = %s: outside %s or not allocatable", i, m, alloc.Range())
			}
		}
	})
}
