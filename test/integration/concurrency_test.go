package integration

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// 500 pods created by 16 goroutines against two kubemacpool replicas behind
// a round-robin proxy: no MAC is carried twice and every pod MAC has exactly
// one ledger entry naming that pod. A 1024-address range makes the replicas'
// candidates meet, so the MAC block's resourceVersion check is
// what keeps them apart.
func TestTwoReplicasConcurrentCreates(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	setRange(t, map[string]string{"START_POOL_RANGE": "02:80:00:00:00:00", "END_POOL_RANGE": "02:80:00:00:03:ff"})
	var backends []string
	for i := 0; i < 2; i++ {
		o := testOptions(t)
		port, err := testenv.FreePort()
		g.Expect(err).NotTo(HaveOccurred())
		o.WebhookPort = port
		// The direct path, where the replicas' candidates meet: with a
		// stock each hands out what it holds alone (the stock tests).
		o.StockMax = 0
		startManager(t, o)
		backends = append(backends, net.JoinHostPort(o.WebhookHost, strconv.Itoa(port)))
	}
	proxy := startRoundRobin(t, env.WebhookAddr(), nil, backends...)
	ns := newNamespace(t, nil)
	small := mac.Range{Start: mustMAC("02:80:00:00:00:00"), End: mustMAC("02:80:00:00:03:ff")}

	const pods, workers = 500, 16
	jobs := make(chan int)
	errs := make(chan error, pods)
	latencies := make(chan time.Duration, pods)
	began := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				p := pod(ns, fmt.Sprintf("load-%03d", i), `[{"name":"a"}]`)
				start := time.Now()
				if err := env.Client.Create(ctx, p); err != nil {
					errs <- fmt.Errorf("pod %d: %w", i, err)
				}
				latencies <- time.Since(start)
			}
		}()
	}
	for i := 0; i < pods; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	close(latencies)
	t.Logf("%d creates by %d goroutines in %v; %s", pods, workers, time.Since(began).Round(time.Millisecond), summarize(latencies))
	for err := range errs {
		t.Error(err)
	}
	for i := range proxy.served {
		g.Expect(proxy.served[i].Load()).To(BeNumerically(">", 0), "replica %d served no admission", i)
	}
	expectInvariants(t)

	seen := map[mac.MAC]bool{}
	list := podsIn(g, ns)
	g.Expect(list).To(HaveLen(pods))
	for i := range list {
		for _, m := range macsOf(t, &list[i]) {
			g.Expect(small.Contains(m)).To(BeTrue())
			g.Expect(seen[m]).To(BeFalse(), "MAC %s carried twice", m)
			seen[m] = true
		}
	}
}

// summarize reports the median and 99th percentile of latencies.
func summarize(latencies <-chan time.Duration) string {
	var all []time.Duration
	for l := range latencies {
		all = append(all, l)
	}
	if len(all) == 0 {
		return "no samples"
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	at := func(q float64) time.Duration { return all[int(q*float64(len(all)-1))].Round(time.Microsecond) }
	return fmt.Sprintf("latency p50 %v p99 %v max %v", at(0.5), at(0.99), all[len(all)-1].Round(time.Microsecond))
}
