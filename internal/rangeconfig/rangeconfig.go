// Package rangeconfig reads the range ConfigMap's data: which MACs the pool
// may hand out. It imports no Kubernetes client code, so its fuzz target
// builds in seconds.
package rangeconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Keys of the range ConfigMap. The START/END_POOL_RANGE names are the
// documented contract; RANGE_START/RANGE_END are what upstream kubemacpool
// writes, accepted so an existing ConfigMap keeps working.
const (
	ConfigMapName = "kubemacpool-mac-range-config"

	KeyStart         = "START_POOL_RANGE"
	KeyEnd           = "END_POOL_RANGE"
	KeyStartUpstream = "RANGE_START"
	KeyEndUpstream   = "RANGE_END"
	// KeyAllowUniversal set to "true" lets the pool hand out universally
	// administered MACs, for an admin who owns the OUI of the range.
	KeyAllowUniversal = "ALLOW_UNIVERSAL_MACS"
	// KeyExcluded lists MACs the pool never hands out (a gateway's, a
	// physical host's, a VRRP address): MACs and start-end ranges,
	// separated by commas or whitespace, in any spelling.
	KeyExcluded = "EXCLUDED_MACS"
)

// Parse reads the allocatable set from the ConfigMap data. A nil
// map (no ConfigMap) gives the default range.
func Parse(data map[string]string) (mac.Allocatable, error) {
	start := firstOf(data, KeyStart, KeyStartUpstream)
	end := firstOf(data, KeyEnd, KeyEndUpstream)
	r := mac.DefaultRange
	switch {
	case start == "" && end == "":
	case start == "" || end == "":
		return mac.Allocatable{}, fmt.Errorf("set both %s and %s (or neither, for the default range %s)", KeyStart, KeyEnd, mac.DefaultRange)
	default:
		var err error
		if r, err = mac.ParseRange(start, end); err != nil {
			return mac.Allocatable{}, err
		}
	}
	allowUniversal := false
	if v, ok := data[KeyAllowUniversal]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return mac.Allocatable{}, fmt.Errorf("%s must be true or false, not %q", KeyAllowUniversal, v)
		}
		allowUniversal = b
	}
	excluded, err := parseExcluded(data[KeyExcluded])
	if err != nil {
		return mac.Allocatable{}, err
	}
	alloc, err := mac.NewAllocatable(r, allowUniversal)
	if err != nil {
		return mac.Allocatable{}, err
	}
	// KubeVirt's in-pod bridge MAC is the default range's first address:
	// a VM given it would be refused by KubeVirt.
	var reserved []mac.Range
	for _, m := range mac.Reserved {
		reserved = append(reserved, mac.Range{Start: m, End: m})
	}
	if alloc = alloc.Excluding(excluded...).Excluding(reserved...); alloc.Size() == 0 {
		return mac.Allocatable{}, fmt.Errorf("range %s has no allocatable address: every address in it is excluded (%s, or %s, which KubeVirt reserves for the in-pod bridge)",
			r, KeyExcluded, mac.KubeVirtInPodBridge)
	}
	return alloc, nil
}

// parseExcluded reads the EXCLUDED_MACS value. A token is a MAC, or two
// MACs joined by "-" (the MACs themselves may be spelled with dashes: the
// one split where both halves are MACs is the range).
func parseExcluded(value string) ([]mac.Range, error) {
	var out []mac.Range
	tokens := strings.FieldsFunc(value, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	for _, tok := range tokens {
		if m, err := mac.Parse(tok); err == nil {
			out = append(out, mac.Range{Start: m, End: m})
			continue
		}
		var found []mac.Range
		for i := strings.Index(tok, "-"); i >= 0; i = nextDash(tok, i) {
			start, errStart := mac.Parse(tok[:i])
			end, errEnd := mac.Parse(tok[i+1:])
			if errStart == nil && errEnd == nil {
				found = append(found, mac.Range{Start: start, End: end})
			}
		}
		switch {
		case len(found) != 1:
			return nil, fmt.Errorf("%s entry %q is neither a MAC address nor a range of two MAC addresses joined by \"-\" (e.g. 02:00:00:00:00:10-02:00:00:00:00:1f)", KeyExcluded, tok)
		case found[0].Start > found[0].End:
			return nil, fmt.Errorf("%s entry %q: range start %s is after its end %s", KeyExcluded, tok, found[0].Start, found[0].End)
		}
		out = append(out, found[0])
	}
	return out, nil
}

func nextDash(s string, after int) int {
	j := strings.Index(s[after+1:], "-")
	if j < 0 {
		return -1
	}
	return after + 1 + j
}

func firstOf(data map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(data[k]); v != "" {
			return v
		}
	}
	return ""
}

// Data is alloc as range ConfigMap data, in canonical form.
func Data(alloc mac.Allocatable) map[string]string {
	data := map[string]string{
		KeyStart:          alloc.Range().Start.String(),
		KeyEnd:            alloc.Range().End.String(),
		KeyAllowUniversal: strconv.FormatBool(alloc.AllowUniversal()),
	}
	var excluded []string
	for _, r := range alloc.Excluded() {
		if r.Start == r.End && slices.Contains(mac.Reserved, r.Start) {
			continue // always excluded: not configuration
		}
		excluded = append(excluded, ExclusionString(r))
	}
	if len(excluded) > 0 {
		data[KeyExcluded] = strings.Join(excluded, ",")
	}
	return data
}

// ExclusionString is an EXCLUDED_MACS entry in canonical form.
func ExclusionString(r mac.Range) string {
	if r.Start == r.End {
		return r.Start.String()
	}
	return r.String()
}
