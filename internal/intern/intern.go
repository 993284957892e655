// Package intern shares strings that repeat across many cached objects.
// Every replica caches every pod, VM, VMI and MAC block of the cluster, and
// a string decoded from each of them is a copy of its own: at 100,000
// objects the namespaces, networks and interface names that every entry
// repeats cost megabytes (issue 24).
package intern

import "unique"

// String returns s, sharing its bytes with the strings String returned
// for the same value before. It uses Go's unique package, which keeps its
// canonical copy of a value only while a handle to it is held; String
// keeps none, so a garbage collection may drop that copy while the strings
// made from it live on, and the next call makes a new one. A string that
// repeats across 100,000 objects is then stored about once per collection
// cycle in which it was seen rather than once per object, and nothing is
// kept for a string no object holds any more.
func String(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}
