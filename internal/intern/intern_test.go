package intern

import (
	"runtime/debug"
	"strings"
	"testing"
	"unsafe"
)

// Two strings of one value, decoded apart, come back as one: the same
// value, the same bytes (within one collection cycle, see String).
func TestStringSharesEqualValues(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	a, b := strings.Clone("tenant-a/net1"), strings.Clone("tenant-a/net1")
	if unsafe.StringData(a) == unsafe.StringData(b) {
		t.Fatal("the test's two inputs already share their bytes")
	}
	ia, ib := String(a), String(b)
	if ia != a || ib != b {
		t.Fatalf("String changed the value: %q, %q", ia, ib)
	}
	if unsafe.StringData(ia) != unsafe.StringData(ib) {
		t.Error("two equal strings were not shared")
	}
	if other := String("tenant-b/net1"); other != "tenant-b/net1" || unsafe.StringData(other) == unsafe.StringData(ia) {
		t.Errorf("another value came back as %q, sharing bytes: %v", other, unsafe.StringData(other) == unsafe.StringData(ia))
	}
	if String("") != "" {
		t.Error("the empty string changed")
	}
}
