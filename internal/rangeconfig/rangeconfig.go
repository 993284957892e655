// Package rangeconfig reads the range ConfigMap's data: which MACs the pool
// may hand out. It imports no Kubernetes client code, so its fuzz target
// builds in seconds.
package rangeconfig

import (
	"fmt"
	"strconv"
	"strings"

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
	if alloc = alloc.Excluding(reserved...); alloc.Size() == 0 {
		return mac.Allocatable{}, fmt.Errorf("range %s has no allocatable address: its only address %s is reserved by KubeVirt for the in-pod bridge", r, mac.KubeVirtInPodBridge)
	}
	return alloc, nil
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
	return map[string]string{
		KeyStart:          alloc.Range().Start.String(),
		KeyEnd:            alloc.Range().End.String(),
		KeyAllowUniversal: strconv.FormatBool(alloc.AllowUniversal()),
	}
}
