package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// Admissions that write their MAC block (no stock: --stock-max=0) and wait
// for the same block share one write (group commit): 320 two-network pods
// from 16 clients cost fewer block writes than pods, where a write per MAC
// would be 640. On a control plane of its own, so nothing else is adopted
// or released meanwhile.
func TestConcurrentAdmissionsShareBlockWrites(t *testing.T) {
	g := NewWithT(t)
	own := ownControlPlane(t, testenv.Options{}, managerNamespace, "batch")
	addr, _ := withMetricsOpts(t, own, func(o *manager.Options) { o.StockMax = 0 })

	// Stored block writes, and the changes they carried (the sum of the
	// batch sizes), from the replica's metrics endpoint.
	stored := func() float64 { return scrape(g, addr)[`kmp_ledger_writes_total{result="stored"}`] }
	changes := func() float64 { return scrape(g, addr)["kmp_ledger_batch_size_sum"] }
	writesBefore, changesBefore := stored(), changes()
	const pods = 320
	createTwoNetworkPods(t, own, "batch", pods)
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

// With the stock (the default), admissions take their MACs from memory: the
// same 320 two-network pods from 16 clients cost a few block writes in all
// (refills of the stock and re-owns to the pods, batched per block), not
// one per pod, and the ledger ends holding every MAC for its pod.
func TestStockAdmissionsWriteNothing(t *testing.T) {
	g := NewWithT(t)
	own := ownControlPlane(t, testenv.Options{}, managerNamespace, "stocked")
	addr, _ := withMetricsOn(t, own)
	stored := func() float64 { return scrape(g, addr)[`kmp_ledger_writes_total{result="stored"}`] }
	g.Eventually(func() float64 { return scrape(g, addr)["kmp_stock_macs"] }).WithTimeout(20 * time.Second).Should(BeNumerically(">=", 128))
	writesBefore := stored()
	const pods = 320
	createTwoNetworkPods(t, own, "stocked", pods)
	g.Eventually(func(g Gomega) {
		carried := carriedOn(g, own.Client)
		n := 0
		for _, e := range allEntriesOn(g, own.Client) {
			if !heartbeat.IsStock(e.Owner) {
				g.Expect(holders.Bound(e.Owner, carried[e.MAC])).To(BeTrue(), "entry %s for %+v not carried by its pod", e.MAC, e.Owner)
				n++
			}
		}
		g.Expect(n).To(Equal(2*pods), "every MAC passed to its pod")
	}).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	writes := stored() - writesBefore
	m := scrape(g, addr)
	fromStock, direct := m[`kmp_allocation_source_total{source="stock"}`], m[`kmp_allocation_source_total{source="direct"}`]
	t.Logf("%d pods (%d MACs): %.0f block writes in all (%.3f per pod); %.0f MACs from stock, %.0f reserved directly; %.0f refills, %.0f re-owned",
		pods, 2*pods, writes, writes/pods, fromStock, direct, m["kmp_stock_refills_total"], m["kmp_stock_reowns_total"])
	g.Expect(fromStock).To(BeNumerically(">", direct), "most MACs come from the stock")
	g.Expect(writes).To(BeNumerically("<", pods/4), "far fewer block writes than pods: refills and re-owns are batched per block")
	g.Expect(m["kmp_stock_reowns_total"]).To(BeNumerically(">=", fromStock), "every MAC from the stock re-owned to its pod")
}

// createTwoNetworkPods creates n pods with two networks in namespace ns of
// control plane e, from 16 clients.
func createTwoNetworkPods(t testing.TB, e *testenv.Env, ns string, n int) {
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("p-%03d", i))
	}
	parallel(t, names, func(name string) error {
		return e.Client.Create(context.Background(), pod(ns, name, `[{"name":"a"},{"name":"b"}]`))
	})
}
