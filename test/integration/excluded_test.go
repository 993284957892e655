package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
)

// EXCLUDED_MACS keeps MACs out of the pool: a range of 8 with 4 excluded
// hands out exactly the other 4, an explicit request for an excluded one
// is refused naming the exclusion, and an invalid list leaves the
// configuration in force as it was.
func TestExcludedMACs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	config := map[string]string{
		rangeconfig.KeyStart:    "02:71:00:00:00:00",
		rangeconfig.KeyEnd:      "02:71:00:00:00:07",
		rangeconfig.KeyExcluded: "02:71:00:00:00:01, 02-71-00-00-00-03\n02:71:00:00:00:05-02:71:00:00:00:06",
	}
	setRange(t, config)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	got := map[mac.MAC]bool{}
	for i := range 4 {
		p := createPod(t, pod(ns, fmt.Sprintf("p%d", i), `[{"name":"a"}]`))
		got[macsOf(t, p)[0]] = true
	}
	g.Expect(got).To(Equal(map[mac.MAC]bool{
		mustMAC("02:71:00:00:00:00"): true, mustMAC("02:71:00:00:00:02"): true,
		mustMAC("02:71:00:00:00:04"): true, mustMAC("02:71:00:00:00:07"): true,
	}))
	err := env.Client.Create(ctx, pod(ns, "one-too-many", `[{"name":"a"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("all 4 allocatable addresses are held (the MACs EXCLUDED_MACS lists are not counted)")))

	asks := func(name, m string) error {
		return env.Client.Create(ctx, pod(ns, name, `[{"name":"a","mac":"`+m+`"}]`))
	}
	g.Expect(asks("explicit-range", "02:71:00:00:00:06")).To(MatchError(ContainSubstring(
		"MAC address 02:71:00:00:00:06 is excluded from the pool by EXCLUDED_MACS entry 02:71:00:00:00:05-02:71:00:00:00:06")))
	g.Expect(asks("explicit-single", "02:71:00:00:00:03")).To(MatchError(ContainSubstring("EXCLUDED_MACS entry 02:71:00:00:00:03 ")))
	g.Expect(asks("kubevirt", "02:00:00:00:00:00")).To(MatchError(ContainSubstring("reserved by KubeVirt for the in-pod bridge")))

	// A typo in the list is refused like an invalid range: the exclusions
	// in force stay.
	config[rangeconfig.KeyExcluded] = "02:71:00:00:00:01, gateway"
	setRange(t, config)
	g.Eventually(func(g Gomega) {
		events := eventsAbout(g, managerNamespace, rangeconfig.ConfigMapName, "InvalidRange")
		g.Expect(events).NotTo(BeEmpty())
		g.Expect(events[len(events)-1].Note).To(ContainSubstring(`EXCLUDED_MACS entry "gateway"`))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	g.Expect(asks("still-excluded", "02:71:00:00:00:05")).To(MatchError(ContainSubstring("excluded from the pool")))
}
