package multus

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

func FuzzParse(f *testing.F) {
	seeds := []struct{ value, namespace string }{
		{"", "default"},
		{"net1", "default"},
		{"net1,other-ns/net2@eth1", "default"},
		{" net1 , net1 ", "ns"},
		{"a,,b", "default"},
		{"a/b/c", "default"},
		{"net1", ""},
		{`[{"name":"ovs-conf"}]`, "default"},
		{`[{ "name": "ovs-conf", "ips": [ "10.1.1.1/24" ], "cni-args": {"k": [1, 2.5e3]}, "x": null}]`, "default"},
		{`[{"name":"net1","namespace":"ns","interface":"eth1","mac":"02:00:00:00:00:02","default-route":["10.0.0.1"]}]`, "default"},
		{`{"name":"net1"}`, "default"},
		{`[{"name":"net1","mac":"a","mac":"b"}]`, "default"},
		{`[{"name":"net1","MAC":"a"}]`, "default"},
		{`[{"name":5}]`, "default"},
		{`[null, 1, "x"]`, "default"},
		{`[{"name":"n\u0061me","k\u00e9y":"\ud83d\ude00"}]`, "default"},
		{`[{"name":"net1"`, "default"},
	}
	for _, s := range seeds {
		f.Add(s.value, s.namespace)
	}
	f.Fuzz(func(t *testing.T, value, namespace string) {
		elems, err := Parse(value, namespace)
		if err != nil {
			return
		}
		out, err := Format(elems)
		if err != nil {
			t.Fatalf("Format after a successful Parse(%q): %v", value, err)
		}
		if !json.Valid([]byte(out)) {
			t.Fatalf("Format produced invalid JSON: %s", out)
		}
		// Filling in namespaces can push a value near the size limit over
		// it; Parse rightly refuses that, so there is nothing to compare.
		if len(out) > maxValueSize {
			return
		}
		again, err := Parse(out, namespace)
		if err != nil {
			t.Fatalf("Parse(Format(x)) failed: %v\nx      = %q\nformat = %s", err, value, out)
		}
		if len(again) != len(elems) {
			t.Fatalf("round trip changed the element count from %d to %d\nformat = %s", len(elems), len(again), out)
		}
		for i := range elems {
			a, b := &elems[i], &again[i]
			if view(elems)[i] != view(again)[i] {
				t.Errorf("element %d changed: %+v -> %+v", i+1, view(elems)[i], view(again)[i])
			}
			if !slices.Equal(a.others, b.others) {
				t.Errorf("element %d key order changed: %q -> %q", i+1, a.others, b.others)
			}
			if !maps.EqualFunc(a.raw, b.raw, func(x, y json.RawMessage) bool { return bytes.Equal(x, y) }) {
				t.Errorf("element %d raw values changed: %s -> %s", i+1, a.raw, b.raw)
			}
		}
	})
}
