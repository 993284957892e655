// Package intern stores strings that repeat across many cached objects
// once. Every replica caches every pod, VM, VMI and MAC block of the
// cluster, and a string decoded from each of them is a copy of its own:
// at 100,000 objects the namespaces, networks and interface names that
// every entry repeats cost megabytes (issue 24).
package intern

import "unique"

// String returns the one copy of s that every caller shares while any of
// them holds it; the copy is freed once nothing does.
func String(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}
