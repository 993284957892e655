package integration

import (
	"context"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// Admissions that wait for the same MAC block share one write (group
// commit): 320 two-network pods from 16 clients cost fewer block writes
// than pods, where a write per MAC would be 640. On a control plane of its
// own, so nothing else is adopted or released meanwhile.
func TestConcurrentAdmissionsShareBlockWrites(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	own := ownControlPlane(t, testenv.Options{}, managerNamespace, "batch")
	addr, _ := withMetricsOn(t, own)

	// Stored block writes, and the changes they carried (the sum of the
	// batch sizes), from the replica's metrics endpoint.
	stored := func() float64 { return scrape(g, addr)[`kmp_ledger_writes_total{result="stored"}`] }
	changes := func() float64 { return scrape(g, addr)["kmp_ledger_batch_size_sum"] }
	writesBefore, changesBefore := stored(), changes()
	const pods = 320
	var names []string
	for i := 0; i < pods; i++ {
		names = append(names, fmt.Sprintf("p-%03d", i))
	}
	parallel(t, names, func(name string) error { // 16 clients
		return own.Client.Create(ctx, pod("batch", name, `[{"name":"a"},{"name":"b"}]`))
	})
	writes, shared := stored()-writesBefore, changes()-changesBefore
	t.Logf("%d pods (%d MACs): %.0f block writes carrying %.0f changes", pods, 2*pods, writes, shared)
	g.Expect(writes).To(BeNumerically("<", pods), "one write per admission at most, fewer when admissions wait for the same block")
	g.Expect(shared).To(BeNumerically(">", writes), "some writes carried more than one admission")

	// And the ledger says exactly what the pods carry.
	var entries []ledger.Entry
	g.Eventually(func(g Gomega) {
		entries = allEntriesOn(g, own.Client)
		g.Expect(entries).To(HaveLen(2 * pods))
	}).Should(Succeed())
	carried := carriedOn(g, own.Client)
	seen := map[mac.MAC]bool{}
	for _, e := range entries {
		g.Expect(seen[e.MAC]).To(BeFalse())
		seen[e.MAC] = true
		g.Expect(holders.Bound(e.Owner, carried[e.MAC])).To(BeTrue(), "entry %s for %+v not carried by its pod", e.MAC, e.Owner)
		g.Expect(carried[e.MAC]).To(HaveLen(1), "MAC %s carried twice", e.MAC)
	}
}
