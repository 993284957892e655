package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// When Multus reports, for a network kubemacpool gave a MAC, another MAC
// or none (the NetworkAttachmentDefinition lacks the tuning plugin), the
// pod gets a Warning event MACNotApplied naming the network, the MAC given
// and the MAC seen, the gauge counts it and `kubemacpool not-applied` lists
// it; once they agree the gauge and the list clear.
func TestMACNotApplied(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	addr, _ := withMetrics(t)
	ns := newNamespace(t, nil)
	p := createPod(t, pod(ns, "p", `[{"name":"net-a","interface":"net1"},{"name":"net-b"}]`))
	macs := macsOf(t, p)
	report := func(a, b string) {
		t.Helper()
		g.Eventually(func() error {
			cur := &corev1.Pod{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
				return err
			}
			cur.Annotations["k8s.v1.cni.cncf.io/network-status"] = `[{"name":"cbr0","interface":"eth0","mac":"0a:58:0a:f4:00:09","default":true},` +
				`{"name":"` + ns + `/net-a","interface":"net1","mac":"` + a + `"},{"name":"` + ns + `/net-b","interface":"net2","mac":"` + b + `"}]`
			return env.Client.Update(ctx, cur)
		}).WithTimeout(10 * time.Second).Should(Succeed())
	}
	gauge := func(g Gomega) float64 { return scrape(g, addr)["kmp_pods_mac_not_applied"] }
	path := kubeconfigFor(t, env)
	notApplied := func(g Gomega) string {
		out, err := exec.Command(kubemacpoolBinary(t), "not-applied", "--kubeconfig", path).CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "%s", out)
		return string(out)
	}

	// Applied as given (MACs in another spelling): nothing to say.
	report(strings.ToUpper(macs[0].String()), strings.ReplaceAll(macs[1].String(), ":", "-"))
	g.Consistently(func(g Gomega) {
		g.Expect(gauge(g)).To(BeZero())
		g.Expect(eventsAbout(g, ns, "p", "MACNotApplied")).To(BeEmpty())
	}).WithTimeout(2 * time.Second).Should(Succeed())

	report("8a:00:00:00:00:01", "")
	g.Eventually(func(g Gomega) {
		g.Expect(gauge(g)).To(Equal(1.0))
		events := eventsAbout(g, ns, "p", "MACNotApplied")
		g.Expect(events).To(HaveLen(1))
		g.Expect(events[0].Type).To(Equal(corev1.EventTypeWarning))
		g.Expect(events[0].Note).To(And(
			ContainSubstring("network "+ns+"/net-a (interface net1): kubemacpool gave "+macs[0].String()+", Multus reports 8a:00:00:00:00:01"),
			ContainSubstring("network "+ns+"/net-b: kubemacpool gave "+macs[1].String()+", Multus reports no MAC"),
			ContainSubstring("tuning plugin")))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	g.Expect(notApplied(g)).To(And(
		MatchRegexp(ns+`/p\s+`+ns+`/net-a\s+`+macs[0].String()+`\s+8a:00:00:00:00:01`),
		MatchRegexp(ns+`/p\s+`+ns+`/net-b\s+`+macs[1].String()+`\s+none`)))

	report(macs[0].String(), macs[1].String())
	g.Eventually(gauge).WithTimeout(15 * time.Second).Should(BeZero())
	g.Expect(notApplied(g)).To(ContainSubstring("Every pod's interfaces have the MACs kubemacpool gave them"))
	g.Expect(eventsAbout(g, ns, "p", "MACNotApplied")).To(HaveLen(1), "one event per disagreement")
}
