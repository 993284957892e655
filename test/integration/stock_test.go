package integration

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// waitForStock waits until some replica keeps at least n MACs in stock in
// the range [start, end], and returns them.
func waitForStock(t testing.TB, start, end mac.MAC, n int) []ledger.Entry {
	t.Helper()
	var stock []ledger.Entry
	NewWithT(t).Eventually(func(g Gomega) {
		stock = nil
		for _, e := range stockEntries(g) {
			if e.MAC >= start && e.MAC <= end {
				stock = append(stock, e)
			}
		}
		g.Expect(len(stock)).To(BeNumerically(">=", n), "MACs in stock in %s-%s", start, end)
	}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	return stock
}

// A replica hands out MACs from its stock; killed with its stock full and
// some of what it handed out not re-owned yet, nothing is lost: once its
// heartbeat has run out (on the next leader's clock), the MACs its pods
// carry pass to the pods, and the rest of its stock is released after the
// grace period.
func TestKilledReplicaStockReleasedAndReowned(t *testing.T) {
	g := NewWithT(t)
	setRange(t, map[string]string{"START_POOL_RANGE": "02:31:00:00:00:00", "END_POOL_RANGE": "02:31:00:00:ff:ff"})
	first := startManager(t, testOptions(t))
	stock := waitForStock(t, mustMAC("02:31:00:00:00:00"), mustMAC("02:31:00:00:ff:ff"), 64)
	dead := stock[0].Owner
	ns := newNamespace(t, nil)
	var pods []types.NamespacedName
	for i := range 5 {
		p := createPod(t, pod(ns, fmt.Sprintf("p%d", i), `[{"name":"a"},{"name":"b"}]`))
		pods = append(pods, client.ObjectKeyFromObject(p))
	}
	// Killed at once: the re-own (every second) has likely not run.
	first.proc.Signal(syscall.SIGKILL)
	first.proc.Wait()
	still := 0
	for _, e := range allEntries(g) {
		if e.Owner == dead {
			still++
		}
	}
	t.Logf("killed replica %s (incarnation %s) with %d entries in its stock", dead.Name, dead.UID, still)
	g.Expect(still).To(BeNumerically(">=", 64), "the killed replica's stock stays held")

	startManager(t, testOptions(t))
	g.Eventually(func(g Gomega) {
		for _, e := range allEntries(g) {
			g.Expect(e.Owner).NotTo(Equal(dead), "entry of %s still in the dead replica's stock", e.MAC)
		}
	}).WithTimeout(testHeartbeat + testGrace + 30*time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
	for _, key := range pods {
		p := &corev1.Pod{}
		g.Expect(env.Client.Get(context.Background(), key, p)).To(Succeed())
		for _, m := range macsOf(t, p) {
			expectBound(t, m, p)
		}
	}
	expectInvariantsIn(t, ns)
}

// A MAC the stock handed to a pod that a later admission step refused is
// never handed out again within the grace period: it waits for its object
// like any reservation. It is held all along (in stock), and ends back in
// stock or released, never carried twice.
func TestStockMACOfRefusedPodNotHandedTwice(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	setRange(t, map[string]string{"START_POOL_RANGE": "02:32:00:00:00:00", "END_POOL_RANGE": "02:32:00:00:0f:ff"})
	startManager(t, testOptions(t))
	waitForStock(t, mustMAC("02:32:00:00:00:00"), mustMAC("02:32:00:00:0f:ff"), 32)
	ns := newNamespace(t, nil)
	denyShowingNetworks(t, "refuse-stock")

	refused := pod(ns, "refused", `[{"name":"a"}]`)
	refused.Labels = map[string]string{"refuse-stock": "true"}
	err := env.Client.Create(ctx, refused)
	g.Expect(err).To(MatchError(ContainSubstring("rejected with networks")))
	found := regexp.MustCompile(`"mac":"([0-9a-f:]{17})"`).FindStringSubmatch(err.Error())
	g.Expect(found).To(HaveLen(2), "the refusal shows the annotation kubemacpool wrote: %v", err)
	given := mustMAC(found[1])
	e := entryOf(g, given)
	g.Expect(e).NotTo(BeNil(), "the refused pod's MAC is held")
	g.Expect(e.Owner.Kind).To(Equal(heartbeat.Kind), "it came from a replica's stock")

	// Within the grace period, many creates: none gets it.
	deadline := time.Now().Add(testGrace / 2)
	var mu sync.Mutex
	var got []mac.MAC
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				p := pod(ns, fmt.Sprintf("w%d-%d", w, i), `[{"name":"a"},{"name":"b"}]`)
				if err := env.Client.Create(ctx, p); err != nil {
					t.Errorf("create: %v", err)
					return
				}
				mu.Lock()
				got = append(got, macsOf(t, p)...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d MACs handed out within the grace period", len(got))
	g.Expect(len(got)).To(BeNumerically(">", 10))
	g.Expect(got).NotTo(ContainElement(given), "the refused pod's MAC was handed out again within the grace period")
	e = entryOf(g, given)
	g.Expect(e).NotTo(BeNil(), "still held while its grace runs")
	g.Expect(e.Owner.Kind).To(Equal(heartbeat.Kind))
	// Past the grace: back in stock (or released), never carried twice.
	time.Sleep(testGrace)
	if e := entryOf(g, given); e != nil {
		g.Expect(e.Owner.Kind).To(Or(Equal(heartbeat.Kind), Equal("Pod")))
	}
	expectInvariantsIn(t, ns)
}

// denyShowingNetworks refuses pods with label, after the mutating
// webhooks, with a message that shows the networks annotation kubemacpool
// wrote: the one way to see the MACs a refused pod was given.
func denyShowingNetworks(t testing.TB, label string) {
	t.Helper()
	refusal := admissionregistrationv1.Validation{
		MessageExpression: `'rejected with networks ' + (has(object.metadata.annotations) && 'k8s.v1.cni.cncf.io/networks' in object.metadata.annotations ? ` +
			`object.metadata.annotations['k8s.v1.cni.cncf.io/networks'] : 'none')`,
	}
	denyWith(t, label, "", "pods", admissionregistrationv1.Create, refusal, "rejected with networks", func() error {
		probe := pod("default", "policy-probe", "")
		probe.Labels = map[string]string{label: "true"}
		return env.Client.Create(context.Background(), probe, client.DryRunAll)
	})
}

// Two replicas fill the pool to its last address: as it fills, the stocks
// shrink and are given back, so every free address is reachable by both,
// and the next request is refused as exhausted.
func TestPoolFilledToLastAddressWithStocks(t *testing.T) {
	g := NewWithT(t)
	// 1,536 addresses: the replicas keep stocks until fewer than 1,024
	// are free.
	setRange(t, map[string]string{"START_POOL_RANGE": "02:33:00:00:00:00", "END_POOL_RANGE": "02:33:00:00:05:ff"})
	twoReplicasBehindProxy(t)
	waitForStock(t, mustMAC("02:33:00:00:00:00"), mustMAC("02:33:00:00:05:ff"), 2*32)
	ns := newNamespace(t, nil)

	const size = 1536
	var mu sync.Mutex
	var got []mac.MAC
	var exhausted []error
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				p := pod(ns, fmt.Sprintf("w%d-%d", w, i), `[{"name":"a"}]`)
				err := env.Client.Create(context.Background(), p)
				mu.Lock()
				if err != nil {
					exhausted = append(exhausted, err)
					mu.Unlock()
					return
				}
				got = append(got, macsOf(t, p)...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	distinct := map[mac.MAC]bool{}
	for _, m := range got {
		g.Expect(distinct[m]).To(BeFalse(), "MAC %s handed out twice", m)
		distinct[m] = true
	}
	t.Logf("%d pods got MACs before the pool was full", len(got))
	g.Expect(got).To(HaveLen(size), "every address of the range handed out once")
	for _, err := range exhausted {
		g.Expect(err).To(MatchError(ContainSubstring("no free MAC address in range")))
	}
	g.Expect(stockEntries(g)).To(BeEmpty(), "no stock is kept in a full pool")
	expectInvariantsIn(t, ns)
}

// A range change gives back the stock outside the new range, and the
// replica stocks up in the new one. Another replica's stock is held: an
// explicit request for one of its MACs is refused, naming it.
func TestStockFollowsRangeChange(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	oldStart, oldEnd := mustMAC("02:34:00:00:00:00"), mustMAC("02:34:00:00:ff:ff")
	newStart, newEnd := mustMAC("02:35:00:00:00:00"), mustMAC("02:35:00:00:ff:ff")
	setRange(t, map[string]string{"START_POOL_RANGE": oldStart.String(), "END_POOL_RANGE": oldEnd.String()})
	startManager(t, testOptions(t))
	stock := waitForStock(t, oldStart, oldEnd, 64)

	ns := newNamespace(t, nil)
	err := env.Client.Create(ctx, pod(ns, "explicit", fmt.Sprintf(`[{"name":"a","mac":"%s"}]`, stock[0].MAC)))
	g.Expect(err).To(MatchError(ContainSubstring("kept in stock by replica " + stock[0].Owner.Name)))

	setRange(t, map[string]string{"START_POOL_RANGE": newStart.String(), "END_POOL_RANGE": newEnd.String()})
	waitForStock(t, newStart, newEnd, 64)
	g.Eventually(func(g Gomega) {
		for _, e := range stockEntries(g) {
			g.Expect(e.MAC >= newStart && e.MAC <= newEnd).To(BeTrue(), "stock MAC %s outside the range in force", e.MAC)
		}
	}).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	p := createPod(t, pod(ns, "after", `[{"name":"a"}]`))
	m := macsOf(t, p)[0]
	g.Expect(m >= newStart && m <= newEnd).To(BeTrue(), "MAC %s from the new range", m)
	expectBound(t, m, p)
}
