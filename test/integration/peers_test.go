package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/cli"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/peers"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// peerCluster is one of two control planes whose kubemacpools are peers.
type peerCluster struct {
	name    string
	other   *peerCluster // the peer cluster
	env     *testenv.Env
	metrics string
	run     *running
}

// peerReaderUser is the user a peer cluster's kubemacpool reads as.
const peerReaderUser = "kubemacpool-peer-reader"

// twoPeerClusters starts two control planes, west and east, with the range
// given, the documented read-only grant (config/peer-reader) for
// peerReaderUser in each, and a kubemacpool in each named after its
// cluster. With linked, each lists the other as its peer from the start;
// otherwise link does it later.
func twoPeerClusters(t *testing.T, start, end string, linked bool) (west, east *peerCluster) {
	t.Helper()
	withVMs := testenv.Options{ExtraCRDDirs: []string{"test/fixtures/crds"}}
	west = &peerCluster{name: "west", env: ownControlPlane(t, withVMs, managerNamespace, "peers")}
	east = &peerCluster{name: "east", env: ownControlPlane(t, withVMs, managerNamespace, "peers")}
	west.other, east.other = east, west
	for _, c := range []*peerCluster{west, east} {
		g := NewWithT(t)
		g.Expect(c.env.Client.Create(context.Background(), &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: rangeconfig.ConfigMapName},
			Data:       map[string]string{"START_POOL_RANGE": start, "END_POOL_RANGE": end},
		})).To(Succeed())
		grantPeerReader(t, c.env)
	}
	if linked {
		link(t, west, east)
	}
	for _, c := range []*peerCluster{west, east} {
		c.metrics, c.run = withMetricsOpts(t, c.env, func(o *manager.Options) {
			o.ClusterName = c.name
			o.PeerProbe = time.Second
		})
	}
	return west, east
}

// grantPeerReader applies the ClusterRole of config/peer-reader, as an
// admin of a peer cluster does, and binds it to peerReaderUser.
func grantPeerReader(t *testing.T, e *testenv.Env) {
	t.Helper()
	g := NewWithT(t)
	data, err := os.ReadFile(filepath.Join(e.Root, "config", "peer-reader", "peer-reader.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var role *rbacv1.ClusterRole
	for _, o := range objectsOf(t, string(data)) {
		if o["kind"] == "ClusterRole" {
			role = &rbacv1.ClusterRole{}
			g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(o, role)).To(Succeed())
		}
	}
	g.Expect(role).NotTo(BeNil(), "config/peer-reader has no ClusterRole")
	ctx := context.Background()
	g.Expect(e.Client.Create(ctx, role)).To(Succeed())
	g.Expect(e.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubemacpool-peer-reader-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: peerReaderUser}},
	})).To(Succeed())
}

// link lists each cluster as the other's peer: a Secret labelled
// kubemacpool.io/peer with a kubeconfig of the other's peer reader.
func link(t *testing.T, a, b *peerCluster) {
	t.Helper()
	for _, pair := range [][2]*peerCluster{{a, b}, {b, a}} {
		on, of := pair[0], pair[1]
		kubeconfig, err := of.env.UserKubeconfig(peerReaderUser)
		if err != nil {
			t.Fatal(err)
		}
		if err := on.env.Client.Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: "peer-" + of.name, Labels: map[string]string{peers.Label: of.name}},
			Data:       map[string][]byte{peers.KubeconfigKey: kubeconfig},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// createPodsOn creates n pods with one network each on c, 16 at a time.
func createPodsOn(t *testing.T, c client.Client, prefix string, n int) {
	t.Helper()
	if err := createPods(c, prefix, n); err != nil {
		t.Fatal(err)
	}
}

// createInBoth creates n pods in each cluster, both at once.
func createInBoth(t *testing.T, prefix string, n int, clusters ...*peerCluster) {
	t.Helper()
	errs := make([]error, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = createPods(c.env.Client, prefix, n)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", clusters[i].name, err)
		}
	}
}

// createPods creates n pods with one network each through c, 16 at a
// time, and returns how many failed and the first error.
func createPods(c client.Client, prefix string, n int) error {
	work := make(chan int)
	var mu sync.Mutex
	var failed int
	var first error
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("%s-%04d", prefix, i)
				if err := c.Create(context.Background(), pod("peers", name, `[{"name":"net1"}]`)); err != nil {
					mu.Lock()
					if failed++; first == nil {
						first = fmt.Errorf("%s: %w", name, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if first != nil {
		return fmt.Errorf("%d of %d creates failed, first: %w", failed, n, first)
	}
	return nil
}

// carriedIn is every MAC carried in the cluster, with the pods carrying it.
func carriedIn(g Gomega, c *peerCluster) map[mac.MAC][]string {
	out := map[mac.MAC][]string{}
	for m, cs := range carriedOn(g, c.env.Client) {
		for _, cr := range cs {
			out[m] = append(out[m], cr.Object.Name)
		}
	}
	return out
}

// Two clusters on one tight range, peers both ways, 2,000 pods created at
// once in each: no MAC is carried in both; a MAC the peer holds is refused
// naming it (but to a migration receiver), and who and status show it;
// with the peer's API server down, the other serves on, shows it down, and
// hands out nothing the peer was last seen holding; a rotated kubeconfig
// keeps the peer's MACs held throughout, and a removed peer's are free.
func TestPeerClusters(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	west, east := twoPeerClusters(t, "02:e0:00:00:00:00", "02:e0:00:00:1f:ff", true) // 8,192 addresses
	for _, c := range []*peerCluster{west, east} {
		g.Eventually(func() map[string]float64 { return scrape(g, c.metrics) }).WithTimeout(30*time.Second).
			Should(HaveKeyWithValue(fmt.Sprintf("kmp_peer_up{peer=%q}", c.other.name), 1.0), "%s does not see %s up", c.name, c.other.name)
	}

	const pods = 2000
	began := time.Now()
	createInBoth(t, "pod", pods, west, east)
	t.Logf("%d pods created in each cluster at once in %s", pods, time.Since(began).Round(time.Millisecond))
	westMACs, eastMACs := carriedIn(g, west), carriedIn(g, east)
	g.Expect(westMACs).To(HaveLen(pods), "west: pods sharing a MAC, or pods without one")
	g.Expect(eastMACs).To(HaveLen(pods), "east: pods sharing a MAC, or pods without one")
	var twice []string
	for m, names := range westMACs {
		if others, ok := eastMACs[m]; ok {
			twice = append(twice, fmt.Sprintf("%s (west %v, east %v)", m, names, others))
		}
	}
	g.Expect(twice).To(BeEmpty(), "MACs carried in both clusters")

	// An explicit request for a MAC the peer holds is refused, naming the
	// peer cluster and its holder.
	var taken mac.MAC
	var holder string
	for m, names := range eastMACs {
		taken, holder = m, names[0]
		break
	}
	// A stock MAC is passed to its pod within seconds (until then the
	// refusal names east's replica that holds it in stock).
	g.Eventually(func() string {
		for _, e := range allEntriesOn(g, east.env.Client) {
			if e.MAC == taken {
				return e.Owner.Name
			}
		}
		return ""
	}).WithTimeout(30 * time.Second).Should(Equal(holder))
	err := west.env.Client.Create(ctx, pod("peers", "wants-easts", fmt.Sprintf(`[{"name":"net1","mac":"%s"}]`, taken)))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring(fmt.Sprintf("MAC address %s is already in use in cluster east by Pod peers/%s", taken, holder)))

	// Cross-cluster live migration: a VM of west that waits as the
	// receiver of east's VM takes its MAC; any other VM of west is refused.
	src := newVM("peers", "vm", iface{"a", "bridge", "net-a", ""})
	g.Expect(east.env.Client.Create(ctx, src)).To(Succeed())
	srcMAC := vmMACs(src)["a"]
	g.Expect(srcMAC).NotTo(BeEmpty())
	refusal := ContainSubstring(fmt.Sprintf("MAC address %s is already in use in cluster east by VirtualMachine peers/vm", srcMAC))
	g.Eventually(func() error {
		return west.env.Client.Create(ctx, newVM("peers", "not-a-receiver", iface{"a", "bridge", "net-a", srcMAC}), client.DryRunAll)
	}).WithTimeout(30 * time.Second).Should(MatchError(refusal))
	g.Expect(west.env.Client.Create(ctx, newVM("peers", "not-a-receiver", iface{"a", "bridge", "net-a", srcMAC}))).To(MatchError(refusal))
	receiver := newVM("peers", "vm", iface{"a", "bridge", "net-a", srcMAC})
	receiver.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyWaitAsReceiver)
	g.Expect(west.env.Client.Create(ctx, receiver)).To(Succeed())
	g.Expect(vmMACs(receiver)["a"]).To(Equal(srcMAC))

	// kubemacpool who shows what the peer holds.
	var who bytes.Buffer
	g.Expect(cli.Who(ctx, west.env.Client, managerNamespace, taken.String(), &who)).To(Succeed())
	g.Expect(who.String()).To(ContainSubstring("Held in cluster east by:"))
	g.Expect(who.String()).To(ContainSubstring("Pod peers/" + holder))
	// kubemacpool status counts what the peer holds (east's stock may be
	// refilling: read both again until they agree).
	g.Eventually(func(g Gomega) {
		var status bytes.Buffer
		g.Expect(cli.Status(ctx, west.env.Client, managerNamespace, &status)).To(Succeed())
		g.Expect(status.String()).To(MatchRegexp(`Peer east:\s+%d MACs held there, in \d+ MAC blocks`, len(allEntriesOn(g, east.env.Client))))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// East's API server goes down: west shows it, keeps serving, and hands
	// out nothing east was last seen holding.
	eastHeld := map[mac.MAC]bool{}
	for _, e := range allEntriesOn(g, east.env.Client) {
		eastHeld[e.MAC] = true
	}
	restart, err := east.env.KillAPIServer()
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() map[string]float64 { return scrape(g, west.metrics) }).WithTimeout(30 * time.Second).
		Should(HaveKeyWithValue(`kmp_peer_up{peer="east"}`, 0.0))
	g.Expect(scrape(g, west.metrics)).To(HaveKeyWithValue(`kmp_peer_entries{peer="east"}`, float64(len(eastHeld))),
		"west forgot what east held when it went down")
	g.Eventually(reasonsAbout(g, west.env.Client, managerNamespace, "peer-east")).WithTimeout(30 * time.Second).Should(ContainElement("PeerUnreachable"))
	createPodsOn(t, west.env.Client, "while-east-down", 300)
	for m, names := range carriedIn(g, west) {
		if m.String() == srcMAC {
			continue // the migration receiver's, asked for
		}
		g.Expect(eastHeld).NotTo(HaveKey(m), "west handed out %s to %v, which east held when it went down", m, names)
	}
	err = west.env.Client.Create(ctx, pod("peers", "wants-easts-while-down", fmt.Sprintf(`[{"name":"net1","mac":"%s"}]`, taken)))
	g.Expect(err).To(MatchError(ContainSubstring("in use in cluster east")), "a MAC east held is given while east is down")

	g.Expect(restart()).To(Succeed())
	g.Eventually(func() map[string]float64 { return scrape(g, west.metrics) }).WithTimeout(60 * time.Second).
		Should(HaveKeyWithValue(`kmp_peer_up{peer="east"}`, 1.0))
	g.Eventually(reasonsAbout(g, west.env.Client, managerNamespace, "peer-east")).WithTimeout(30 * time.Second).Should(ContainElement("PeerReachable"))

	// A rotated kubeconfig: what east holds stays held throughout.
	wantsEasts := func() error {
		return west.env.Client.Create(ctx, pod("peers", "wants-easts-again", fmt.Sprintf(`[{"name":"net1","mac":"%s"}]`, taken)), client.DryRunAll)
	}
	rotated, err := east.env.UserKubeconfig(peerReaderUser) // a new client certificate
	g.Expect(err).NotTo(HaveOccurred())
	secret := &corev1.Secret{}
	g.Expect(west.env.Client.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: "peer-east"}, secret)).To(Succeed())
	secret.Data[peers.KubeconfigKey] = rotated
	g.Expect(west.env.Client.Update(ctx, secret)).To(Succeed())
	g.Consistently(wantsEasts).WithTimeout(3*time.Second).WithPolling(20*time.Millisecond).
		Should(MatchError(ContainSubstring("in use in cluster east")), "a MAC east holds is given while its kubeconfig is rotated")

	// East is no peer any more: its MACs are west's to give, and its
	// metrics go.
	g.Expect(west.env.Client.Delete(ctx, secret)).To(Succeed())
	g.Eventually(wantsEasts).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(func() map[string]float64 { return scrape(g, west.metrics) }).WithTimeout(30 * time.Second).
		ShouldNot(HaveKey(`kmp_peer_up{peer="east"}`))
}

// Two clusters that already overlap (their objects carry the same MACs,
// picked before they were peers) become peers: the existing cross-cluster
// duplicates are reported, on both sides, naming the other's holder, and
// no new one is made.
func TestPeersAddedToOverlappingClusters(t *testing.T) {
	g := NewWithT(t)
	west, east := twoPeerClusters(t, "02:e1:00:00:00:00", "02:e1:00:00:1f:ff", false)
	ctx := context.Background()
	// The same explicit MACs on both sides, and automatic ones picked by
	// each cluster alone (which may meet as well). The explicit ones are
	// outside the range (accepted all the same): inside it, a replica's
	// stock may already hold their block (8 of its 128), and an explicit
	// request for a stock MAC is refused.
	for i, m := range []string{"02:e2:00:00:10:01", "02:e2:00:00:10:02", "02:e2:00:00:10:03"} {
		for _, c := range []*peerCluster{west, east} {
			g.Expect(c.env.Client.Create(ctx, pod("peers", fmt.Sprintf("explicit-%d", i), fmt.Sprintf(`[{"name":"net1","mac":"%s"}]`, m)))).To(Succeed())
		}
	}
	createInBoth(t, "before", 400, west, east)
	westMACs, eastMACs := carriedIn(g, west), carriedIn(g, east)
	before := map[mac.MAC]bool{}
	for m := range westMACs {
		if _, ok := eastMACs[m]; ok {
			before[m] = true
		}
	}
	g.Expect(len(before)).To(BeNumerically(">=", 3))
	t.Logf("%d MACs carried in both clusters before they are peers", len(before))
	link(t, west, east)

	for _, c := range []*peerCluster{west, east} {
		other := c.other.name
		// The gauge counts the MACs carried here that the peer's ledger
		// holds: those carried there too, and any the peer keeps in its
		// stock (picked there before the clusters were peers).
		g.Eventually(func(g Gomega) {
			heldThere := map[mac.MAC]bool{}
			for _, e := range allEntriesOn(g, c.other.env.Client) {
				heldThere[e.MAC] = true
			}
			want := 0
			for m := range carriedIn(g, c) {
				if heldThere[m] {
					want++
				}
			}
			g.Expect(want).To(BeNumerically(">=", len(before)))
			g.Expect(scrape(g, c.metrics)).To(HaveKeyWithValue(fmt.Sprintf("kmp_peer_mac_collisions{peer=%q}", other), float64(want)),
				"%s does not count the duplicates it shares with %s", c.name, other)
		}).WithTimeout(30 * time.Second).Should(Succeed())
		for i := range 3 {
			name := fmt.Sprintf("explicit-%d", i)
			g.Eventually(func() []string {
				var notes []string
				for _, e := range eventsOn(g, c.env.Client, "peers", name) {
					if e.Reason == "MACCollision" {
						notes = append(notes, e.Note)
					}
				}
				return notes
			}).WithTimeout(30*time.Second).Should(ContainElement(ContainSubstring(
				fmt.Sprintf("is also held in peer cluster %s by Pod peers/%s", other, name))), "no collision event on %s's pod %s", c.name, name)
		}
	}
	var listed bytes.Buffer
	g.Expect(cli.Collisions(ctx, west.env.Client, managerNamespace, &listed)).To(Succeed())
	for m := range before {
		g.Expect(listed.String()).To(MatchRegexp(`%s\s+Pod peers/\S+\s+east\s+Pod peers/`, m), "kubemacpool collisions does not list %s", m)
	}

	// New pods in both at once: no new MAC carried in both.
	createInBoth(t, "after", 500, west, east)
	westMACs, eastMACs = carriedIn(g, west), carriedIn(g, east)
	var fresh []string
	for m, names := range westMACs {
		if others, ok := eastMACs[m]; ok && !before[m] {
			fresh = append(fresh, fmt.Sprintf("%s (west %v, east %v)", m, names, others))
		}
	}
	g.Expect(fresh).To(BeEmpty(), "new MACs carried in both clusters after they became peers")
}

// A peer Secret that cannot work is refused loudly, and the replica goes on
// serving.
func TestInvalidPeerSecretRefused(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	addr, _ := withMetricsOpts(t, env, func(o *manager.Options) { o.ClusterName = "here"; o.PeerProbe = time.Second })
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: "peer-broken", Labels: map[string]string{peers.Label: "there"}},
		Data:       map[string][]byte{peers.KubeconfigKey: []byte("not a kubeconfig: [")},
	}
	g.Expect(env.Client.Create(ctx, secret)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(ctx, secret) })
	g.Eventually(func() map[string]float64 { return scrape(g, addr) }).WithTimeout(30 * time.Second).
		Should(HaveKeyWithValue(`kmp_peer_config_invalid{secret="peer-broken"}`, 1.0))
	g.Eventually(func() []string {
		var notes []string
		for _, e := range eventsOn(g, env.Client, managerNamespace, "peer-broken") {
			notes = append(notes, e.Reason+": "+e.Note)
		}
		return notes
	}).WithTimeout(30 * time.Second).Should(ContainElement(ContainSubstring(`InvalidPeer: kubemacpool refuses peer Secret kubemacpool-system/peer-broken: key "kubeconfig" is not a usable kubeconfig`)))
	ns := newNamespace(t, nil)
	p := createPod(t, pod(ns, "still-served", `[{"name":"net1"}]`))
	stored := &corev1.Pod{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(p), stored)).To(Succeed())
	g.Expect(macsOf(t, stored)).To(HaveLen(1))
	// Fixed: the refusal ends.
	g.Expect(env.Client.Delete(ctx, secret)).To(Succeed())
	g.Eventually(func() map[string]float64 { return scrape(g, addr) }).WithTimeout(30 * time.Second).
		ShouldNot(HaveKey(`kmp_peer_config_invalid{secret="peer-broken"}`))
}

// reasonsAbout polls the reasons of the events about an object.
func reasonsAbout(g Gomega, c client.Client, namespace, name string) func() []string {
	return func() []string {
		var reasons []string
		for _, e := range eventsOn(g, c, namespace, name) {
			reasons = append(reasons, e.Reason)
		}
		return reasons
	}
}

// eventsOn lists the events about an object of namespace through c.
func eventsOn(g Gomega, c client.Client, namespace, name string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(c.List(context.Background(), list, client.InNamespace(namespace))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}
