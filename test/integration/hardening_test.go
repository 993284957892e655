package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// entriesIn counts the ledger entries held for owners in namespace.
func entriesIn(g Gomega, namespace string) int {
	n := 0
	for _, e := range allEntries(g) {
		if e.Owner.Namespace == namespace {
			n++
		}
	}
	return n
}

// invalidPod is a pod the API server refuses after the mutating webhooks
// (its container name is not a DNS label): kubemacpool has reserved its
// MACs by then, and never hears that it was refused.
func invalidPod(namespace, name, networks string) *corev1.Pod {
	p := pod(namespace, name, networks)
	p.Spec.Containers[0].Name = "Not_A_Valid_Name"
	return p
}

// One request cannot take thousands of MACs, and refused creates cannot
// pile up reservations: too many networks or interfaces are refused before
// anything is reserved, naming the limit and its flag; a namespace's
// reservations waiting for their objects are capped.
func TestRequestLimits(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	o := testOptions(t)
	o.MaxPendingPerNamespace = 20
	startManager(t, o)
	ns := newNamespace(t, nil)
	before := countEntries(g)

	names := make([]string, 5000)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i)
	}
	start := time.Now()
	err := env.Client.Create(ctx, pod(ns, "wide", strings.Join(names, ",")))
	t.Logf("a pod asking for 5,000 networks refused in %s", time.Since(start))
	g.Expect(err).To(MatchError(ContainSubstring("asks for 5000 networks; at most 32 may get MACs from kubemacpool (its --max-interfaces flag)")))
	var ifaces []iface
	for i := range 33 {
		ifaces = append(ifaces, iface{fmt.Sprintf("i%d", i), "bridge", "net-a", ""})
	}
	err = env.Client.Create(ctx, newVM(ns, "wide", ifaces...))
	g.Expect(err).To(MatchError(ContainSubstring("asks for 33 interfaces that get MACs; at most 32")))
	g.Expect(countEntries(g)).To(Equal(before), "a refused request reserved MACs")

	// 200 creates refused by validation, each after kubemacpool admitted
	// it: no more than the cap stay reserved, the rest are refused saying
	// why.
	capped := 0
	for i := range 200 {
		err := env.Client.Create(ctx, invalidPod(ns, fmt.Sprintf("bad-%d", i), `[{"name":"net-a"}]`))
		g.Expect(err).To(HaveOccurred())
		if strings.Contains(err.Error(), "--max-pending-per-namespace") {
			capped++
		}
	}
	g.Expect(entriesIn(g, ns)).To(BeNumerically("<=", 20))
	g.Expect(capped).To(BeNumerically(">=", 180), "refusals naming the cap")
	// Once they expire, the namespace admits again.
	g.Eventually(func() error {
		return env.Client.Create(ctx, pod(ns, "after", `[{"name":"net-a"}]`))
	}).WithTimeout(3 * testGrace).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// Re-sending a create that is refused later renews its reservation, but
// not beyond twice the grace: after that the entry waits only a short
// storage window, so a MAC cannot be squatted by a pod that never exists.
func TestRenewalsAreBounded(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	const squatted = "02:5b:00:00:00:01"
	resend := func() {
		err := env.Client.Create(ctx, invalidPod(ns, "squatter", `[{"name":"net-a","mac":"`+squatted+`"}]`))
		g.Expect(err).To(MatchError(ContainSubstring("Not_A_Valid_Name")))
	}
	resend()
	g.Expect(entryOf(g, mustMAC(squatted))).NotTo(BeNil())
	start := time.Now()
	freed := false
	for time.Since(start) < 5*testGrace && !freed {
		resend()
		time.Sleep(testGrace / 8) // far more often than the grace
		if time.Since(start) > 2*testGrace {
			freed = entryOf(g, mustMAC(squatted)) == nil
		}
	}
	g.Expect(freed).To(BeTrue(), "re-sending every %s kept %s reserved for %s with no pod", testGrace/8, squatted, time.Since(start))
}

// Multus's network-status is written by whoever may edit the pod: only one
// entry per network of its annotation, 32 at most, is read; the rest is
// counted, and makes no metric series and no event on other pods.
func TestNetworkStatusIsBounded(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	addr, _ := withMetrics(t)
	ignored := newNamespace(t, map[string]string{scope.PodsLabel: "ignore"})
	victim := runningPod(t, ignored, "victim", "02:5c:00:00:00:01")

	liar := createPod(t, pod(ignored, "liar", `[{"name":"ovs","mac":"02:5c:00:00:00:02"}]`))
	entries := []string{`{"name":"` + ignored + `/ovs","interface":"net1","mac":"02:5c:00:00:00:02"}`}
	// The annotations of a pod may not exceed 256 KiB: 10,000 entries fit
	// in the shortest spelling.
	for i := range 9999 {
		entries = append(entries, fmt.Sprintf(`{"mac":"025c.0001.%04x"}`, i))
	}
	entries[5000] = `{"mac":"025c.0000.0001"}` // the victim's
	liar.Annotations[multus.NetworksAnnotation] = `[{"name":"ovs","mac":"02:5c:00:00:00:02"}]`
	liar.Annotations["k8s.v1.cni.cncf.io/network-status"] = "[" + strings.Join(entries, ",") + "]"
	g.Expect(env.Client.Update(ctx, liar)).To(Succeed())
	liar.Status.Phase = corev1.PodRunning
	g.Expect(env.Client.Status().Update(ctx, liar)).To(Succeed())

	g.Eventually(func(g Gomega) {
		g.Expect(scrape(g, addr)["kmp_network_status_ignored_entries"]).To(Equal(9999.0))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(eventsAbout(g, ignored, victim.Name, "MACCollision")).To(BeEmpty())
		series := 0
		for name := range scrape(g, addr) {
			if strings.HasPrefix(name, "kmp_mac_collisions{") {
				series++
			}
		}
		g.Expect(series).To(BeNumerically("<=", 32))
	}).WithTimeout(3 * time.Second).Should(Succeed())
}

// Deleting the range ConfigMap keeps the range in force (it must never
// widen to the default: clusters sharing an L2 network through disjoint
// ranges would overlap), says so, and a replica started afterwards keeps
// it too.
func TestDeletedRangeConfigMapKeepsRange(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	setRange(t, map[string]string{rangeconfig.KeyStart: "02:72:00:00:00:00", rangeconfig.KeyEnd: "02:72:00:00:00:ff"})
	addr, r := withMetrics(t)
	ns := newNamespace(t, nil)
	inRange := func(name string) {
		t.Helper()
		p := createPod(t, pod(ns, name, `[{"name":"a"}]`))
		g.Expect(macsOf(t, p)[0].String()).To(HavePrefix("02:72:00:00:00:"), "pod %s", name)
	}
	inRange("before")

	g.Expect(env.Client.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: rangeconfig.ConfigMapName}})).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(scrape(g, addr)["kmp_range_config_missing"]).To(Equal(1.0))
		events := eventsAbout(g, managerNamespace, pool.RangeRecordName, "RangeConfigMapMissing")
		g.Expect(events).NotTo(BeEmpty())
		g.Expect(events[0].Type).To(Equal(corev1.EventTypeWarning))
		g.Expect(events[0].Note).To(ContainSubstring("02:72:00:00:00:00-02:72:00:00:00:ff) stays"))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	inRange("after-delete")

	r.Stop()
	startManager(t, testOptions(t))
	inRange("after-restart")
}

// In opt-in mode a namespace labelled allocate that the replica's cache
// has not seen yet is read live: its first pod gets its MAC.
func TestFreshOptInNamespace(t *testing.T) {
	g := NewWithT(t)
	o := testOptions(t)
	o.PodNamespaces = scope.OptIn
	startManager(t, o)
	for i := range 10 {
		ns := newNamespace(t, map[string]string{scope.PodsLabel: scope.Allocate})
		p := createPod(t, pod(ns, "first", `[{"name":"a"}]`))
		g.Expect(macsOf(t, p)).To(HaveLen(1), "the first pod of fresh namespace %d got no MAC", i)
	}
	unlabelled := newNamespace(t, nil)
	p := createPod(t, pod(unlabelled, "first", `[{"name":"a"}]`))
	g.Expect(p.Annotations[multus.NetworksAnnotation]).To(Equal(`[{"name":"a"}]`), "opt-in: an unlabelled namespace is left alone")
	// Later tests run in opt-out mode, where this pod would be one that
	// escaped with no MAC.
	g.Expect(env.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0))).To(Succeed())
}

// OpenShift's platform namespaces (run level 0 or 1) are never mutated.
func TestRunLevelNamespacesUntouched(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	for _, level := range []string{"0", "1"} {
		ns := newNamespace(t, map[string]string{scope.RunLevelLabel: level})
		p := createPod(t, pod(ns, "platform", `[{"name":"a"}]`))
		g.Expect(p.Annotations[multus.NetworksAnnotation]).To(Equal(`[{"name":"a"}]`), "run level %s", level)
	}
	ns := newNamespace(t, map[string]string{scope.RunLevelLabel: "2"})
	g.Expect(macsOf(t, createPod(t, pod(ns, "workload", `[{"name":"a"}]`)))).To(HaveLen(1))
}

// The webhook server refuses TLS below its minimum version: 1.1 by
// default, 1.2 with --tls-min-version=1.3.
func TestTLSMinVersion(t *testing.T) {
	g := NewWithT(t)
	handshake := func(version uint16) error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", env.WebhookAddr(),
			&tls.Config{InsecureSkipVerify: true, MinVersion: version, MaxVersion: version}) //nolint:gosec // only the protocol version is tested
		if err == nil {
			conn.Close()
		}
		return err
	}
	r := startManager(t, testOptions(t))
	g.Expect(handshake(tls.VersionTLS11)).To(HaveOccurred(), "TLS 1.1 accepted")
	g.Expect(handshake(tls.VersionTLS12)).To(Succeed())
	r.Stop()

	o := testOptions(t)
	o.TLSMinVersion = "1.3"
	startManager(t, o)
	g.Expect(handshake(tls.VersionTLS12)).To(HaveOccurred(), "TLS 1.2 accepted with --tls-min-version=1.3")
	g.Expect(handshake(tls.VersionTLS13)).To(Succeed())
}

// A pod outside the served namespaces may list any number of MACs in its
// networks annotation; every replica counts the first 256 as carried (so
// none of them is handed out or given to anyone else), and no more: the
// rest is counted in a metric, so one tenant's padded pods cannot exhaust
// every replica's memory.
func TestCarriedMACsAreBounded(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	addr, _ := withMetrics(t)
	ignored := newNamespace(t, map[string]string{scope.PodsLabel: "ignore"})
	var networks []string
	for i := range 1000 {
		networks = append(networks, fmt.Sprintf(`{"name":"ovs","mac":"02:5d:00:00:%02x:%02x"}`, i/256, i%256))
	}
	padded := createPod(t, pod(ignored, "padded", "["+strings.Join(networks, ",")+"]"))
	g.Eventually(func(g Gomega) {
		g.Expect(scrape(g, addr)["kmp_carried_macs_ignored"]).To(Equal(744.0))
	}).WithTimeout(15 * time.Second).Should(Succeed())

	served := newNamespace(t, nil)
	err := env.Client.Create(ctx, pod(served, "asker", `[{"name":"ovs","mac":"02:5d:00:00:00:ff"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("02:5d:00:00:00:ff is already in use by Pod " + ignored + "/padded")))

	g.Expect(env.Client.Delete(ctx, padded)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(scrape(g, addr)["kmp_carried_macs_ignored"]).To(Equal(0.0))
	}).WithTimeout(15 * time.Second).Should(Succeed())
}
