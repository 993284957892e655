package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// The range comes from the ConfigMap, changes apply live, MACs held outside
// a new range stay held, and the upstream key names work too.
func TestRangeConfigMapAppliesLive(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	setRange(t, map[string]string{"START_POOL_RANGE": "02:30:00:00:00:00", "END_POOL_RANGE": "02:30:00:00:00:ff"})
	first := mac.Range{Start: mustMAC("02:30:00:00:00:00"), End: mustMAC("02:30:00:00:00:ff")}
	var old *corev1.Pod
	g.Eventually(func(g Gomega) {
		p := pod(ns, "", `[{"name":"a"}]`)
		p.GenerateName = "range-a-"
		g.Expect(env.Client.Create(context.Background(), p)).To(Succeed())
		old = p
		g.Expect(first.Contains(macsOf(t, p)[0])).To(BeTrue())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	oldMAC := macsOf(t, old)[0]
	expectBound(t, oldMAC, old)

	setRange(t, map[string]string{"RANGE_START": "02:31:00:00:00:00", "RANGE_END": "02:31:00:00:00:ff"})
	second := mac.Range{Start: mustMAC("02:31:00:00:00:00"), End: mustMAC("02:31:00:00:00:ff")}
	g.Eventually(func(g Gomega) {
		p := pod(ns, "", `[{"name":"a"}]`)
		p.GenerateName = "range-b-"
		g.Expect(env.Client.Create(context.Background(), p)).To(Succeed())
		g.Expect(second.Contains(macsOf(t, p)[0])).To(BeTrue())
	}).WithTimeout(10 * time.Second).Should(Succeed())

	// The MAC held under the old range is still held by its pod.
	g.Consistently(func(g Gomega) {
		m := entryOf(g, oldMAC)
		g.Expect(m).NotTo(BeNil())
		g.Expect(holders.OwnerIs(m.Owner, carriers.Ref{Kind: "Pod", Namespace: old.Namespace, Name: old.Name, UID: old.UID})).To(BeTrue(), "held for %+v", m.Owner)
	}).WithTimeout(2 * time.Second).Should(Succeed())
}

// An invalid range is refused loudly (a Warning event on the ConfigMap) and
// the range in force stays, also for a replica that starts while the
// ConfigMap is invalid: it takes the range recorded as last in force.
func TestInvalidRangeRefusedOldStays(t *testing.T) {
	g := NewWithT(t)
	first := startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	setRange(t, map[string]string{"START_POOL_RANGE": "02:40:00:00:00:00", "END_POOL_RANGE": "02:40:00:00:00:ff"})
	good := mac.Range{Start: mustMAC("02:40:00:00:00:00"), End: mustMAC("02:40:00:00:00:ff")}
	g.Eventually(func(g Gomega) {
		p := pod(ns, "", `[{"name":"a"}]`)
		p.GenerateName = "before-"
		g.Expect(env.Client.Create(context.Background(), p)).To(Succeed())
		g.Expect(good.Contains(macsOf(t, p)[0])).To(BeTrue())
	}).WithTimeout(10 * time.Second).Should(Succeed())

	for i, bad := range []map[string]string{
		{"START_POOL_RANGE": "02:50:00:00:00:ff", "END_POOL_RANGE": "02:50:00:00:00:00"}, // start after end
		{"START_POOL_RANGE": "not-a-mac", "END_POOL_RANGE": "02:50:00:00:00:00"},
		{"START_POOL_RANGE": "03:00:00:00:00:00", "END_POOL_RANGE": "03:00:00:00:00:ff"}, // all multicast
	} {
		setRange(t, bad)
		g.Eventually(func(g Gomega) {
			events := eventsAbout(g, managerNamespace, "kubemacpool-mac-range-config", "InvalidRange")
			g.Expect(len(events)).To(BeNumerically(">", i))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		p := createPod(t, pod(ns, fmt.Sprintf("after-%d", i), `[{"name":"a"}]`))
		g.Expect(good.Contains(macsOf(t, p)[0])).To(BeTrue(), "the old range must stay in force")
	}
	events := eventsAbout(g, managerNamespace, "kubemacpool-mac-range-config", "InvalidRange")
	g.Expect(events[0].Type).To(Equal(corev1.EventTypeWarning))
	g.Expect(events[0].Note).To(ContainSubstring("range in force stays"))

	// A rollout while the ConfigMap is still invalid: the new replica is
	// ready (startManager waits for it) and allocates from the good range.
	first.Stop()
	startManager(t, testOptions(t))
	p := createPod(t, pod(ns, "after-restart", `[{"name":"a"}]`))
	g.Expect(good.Contains(macsOf(t, p)[0])).To(BeTrue(), "a restarted replica must keep the range last in force")
	g.Eventually(func(g Gomega) {
		var notes []string
		for _, e := range eventsAbout(g, managerNamespace, "kubemacpool-mac-range-config", "InvalidRange") {
			notes = append(notes, e.Note)
		}
		g.Expect(notes).To(ContainElement(ContainSubstring("range last in force (02:40:00:00:00:00-02:40:00:00:00:ff")))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// With an invalid ConfigMap and no range ever in force there is nothing to
// fall back on: the replica stays unready, its log says why, and fixing the
// ConfigMap makes it ready.
func TestInvalidRangeOnFirstStartIsNotReady(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	record := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: pool.RangeRecordName}}
	g.Expect(client.IgnoreNotFound(env.Client.Delete(ctx, record))).To(Succeed())
	setRange(t, map[string]string{"START_POOL_RANGE": "02:41:00:00:00:ff", "END_POOL_RANGE": "02:41:00:00:00:00"})

	o := testOptions(t)
	launchManagerOn(t, env, o)

	probe := func() string {
		resp, err := http.Get("http://" + o.ProbeAddr + "/readyz?verbose")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		return resp.Status
	}
	g.Eventually(func(g Gomega) {
		events := eventsAbout(g, managerNamespace, "kubemacpool-mac-range-config", "InvalidRange")
		g.Expect(events).NotTo(BeEmpty())
		g.Expect(events[len(events)-1].Note).To(ContainSubstring("no earlier range is recorded"))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Consistently(probe).WithTimeout(2 * time.Second).Should(HavePrefix("500"))

	setRange(t, map[string]string{"START_POOL_RANGE": "02:41:00:00:00:00", "END_POOL_RANGE": "02:41:00:00:00:ff"})
	g.Eventually(probe).WithTimeout(30 * time.Second).Should(Equal("200 OK"))
	g.Eventually(func(g Gomega) {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(record), record)).To(Succeed())
		g.Expect(record.Data).To(HaveKeyWithValue("START_POOL_RANGE", "02:41:00:00:00:00"))
	}).WithTimeout(30*time.Second).Should(Succeed(), "the range in force is recorded")
}

// A full pool refuses new pods with a message naming the range and how many
// are held; a delete frees an address and allocation resumes.
func TestExhaustedPoolRefusesThenResumes(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	setRange(t, map[string]string{"START_POOL_RANGE": "02:60:00:00:00:00", "END_POOL_RANGE": "02:60:00:00:00:03"})
	small := mac.Range{Start: mustMAC("02:60:00:00:00:00"), End: mustMAC("02:60:00:00:00:03")}

	var pods []*corev1.Pod
	g.Eventually(func(g Gomega) {
		p := pod(ns, "", `[{"name":"a"}]`)
		p.GenerateName = "probe-"
		g.Expect(env.Client.Create(ctx, p)).To(Succeed())
		g.Expect(small.Contains(macsOf(t, p)[0])).To(BeTrue())
		pods = append(pods, p)
	}).WithTimeout(10 * time.Second).Should(Succeed())
	for len(pods) < 4 {
		pods = append(pods, createPod(t, pod(ns, fmt.Sprintf("fill-%d", len(pods)), `[{"name":"a"}]`)))
	}
	err := env.Client.Create(ctx, pod(ns, "one-too-many", `[{"name":"a"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("no free MAC address in range 02:60:00:00:00:00-02:60:00:00:00:03: all 4 allocatable addresses are held")))

	freed := macsOf(t, pods[1])[0]
	g.Expect(env.Client.Delete(ctx, pods[1])).To(Succeed())
	expectReleased(t, freed)
	g.Eventually(func() error {
		return env.Client.Create(ctx, pod(ns, "after-free", `[{"name":"a"}]`))
	}).WithTimeout(10 * time.Second).Should(Succeed())
	expectInvariants(t)
}

// A MAC carried by a pod without a ledger entry (restored from backup, or
// its entry deleted by hand) is adopted for that pod.
func TestRepairAdoptsCarriedMAC(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	p := createPod(t, pod(ns, "carrier", `[{"name":"a"}]`))
	m := macsOf(t, p)[0]
	expectBound(t, m, p)

	removeEntry(g, m)
	expectBound(t, m, p)
	g.Expect(entryOf(g, m).Adopted).To(BeTrue())
	g.Eventually(func(g Gomega) {
		g.Expect(eventsAbout(g, ns, "carrier", "MACAdopted")).NotTo(BeEmpty())
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

// Two pods carrying one MAC (one of them in an ignored namespace, where a
// user set it by hand) are reported with a Warning event on both.
func TestCollisionReportedOnBoth(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	ignored := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "ignore"})

	a := createPod(t, pod(ns, "a", `[{"name":"n"}]`))
	m := macsOf(t, a)[0]
	expectBound(t, m, a)
	b := createPod(t, pod(ignored, "b", `[{"name":"n","mac":"`+m.String()+`"}]`))

	g.Eventually(func(g Gomega) {
		onA := eventsAbout(g, ns, "a", "MACCollision")
		onB := eventsAbout(g, ignored, "b", "MACCollision")
		g.Expect(onA).NotTo(BeEmpty())
		g.Expect(onB).NotTo(BeEmpty())
		g.Expect(onA[0].Type).To(Equal(corev1.EventTypeWarning))
		g.Expect(onA[0].Note).To(ContainSubstring(m.String()))
		g.Expect(onA[0].Note).To(ContainSubstring("Pod " + ignored + "/b"))
	}).WithTimeout(15 * time.Second).Should(Succeed())
	// Reporting never rewrites or steals: a keeps the MAC.
	g.Expect(entryOf(g, m).Owner.Name).To(Equal(a.Name))
	_ = b
}

// A restarted manager keeps every MAC of existing pods held and hands none
// of them out again.
func TestRestartKeepsMACsHeld(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	setRange(t, map[string]string{"START_POOL_RANGE": "02:70:00:00:00:00", "END_POOL_RANGE": "02:70:00:00:00:1f"})
	r := startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	held := map[mac.MAC]bool{}
	small := mac.Range{Start: mustMAC("02:70:00:00:00:00"), End: mustMAC("02:70:00:00:00:1f")}
	for i := 0; i < 16; i++ {
		p := createPod(t, pod(ns, fmt.Sprintf("before-%d", i), `[{"name":"a"}]`))
		m := macsOf(t, p)[0]
		g.Expect(small.Contains(m)).To(BeTrue())
		held[m] = true
	}
	r.Stop()
	startManager(t, testOptions(t))
	for i := 0; i < 16; i++ {
		p := createPod(t, pod(ns, fmt.Sprintf("after-%d", i), `[{"name":"a"}]`))
		m := macsOf(t, p)[0]
		g.Expect(held[m]).To(BeFalse(), "MAC %s handed out twice", m)
		held[m] = true
	}
	pods := &corev1.PodList{}
	g.Expect(env.Client.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
	g.Expect(pods.Items).To(HaveLen(32))
	expectInvariants(t)
}

// expectInvariants checks, once things settle, what must always hold: no
// MAC carried twice by managed pods, every MAC a pod carries held by an
// entry for that pod, and no entry that nothing carries for its owner.
func expectInvariants(t testing.TB) { expectInvariantsOn(t, env.Client) }

// expectInvariantsOn checks the invariants through client c.
func expectInvariantsOn(t testing.TB, c client.Client) {
	t.Helper()
	expectInvariantsWhere(t, c, func(string) bool { return true })
}

// expectInvariantsIn checks the invariants for the pods of namespace ns
// (and every entry of the ledger): for tests that run after others whose
// namespaces hold pods made to break the rules.
func expectInvariantsIn(t testing.TB, ns string) {
	t.Helper()
	expectInvariantsWhere(t, env.Client, func(namespace string) bool { return namespace == ns })
}

// expectInvariantsWhere checks the invariants for the pods of the
// namespaces inNS accepts.
func expectInvariantsWhere(t testing.TB, c client.Client, inNS func(string) bool) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		ctx := context.Background()
		pods := &corev1.PodList{}
		g.Expect(c.List(ctx, pods)).To(Succeed())
		entries := map[mac.MAC]ledger.Entry{}
		for _, e := range allEntriesOn(g, c) {
			entries[e.MAC] = e
		}
		carriedBy := map[mac.MAC]string{}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Annotations["k8s.v1.cni.cncf.io/networks"] == "" || p.Namespace == managerNamespace || p.Namespace == "kube-system" || !inNS(p.Namespace) {
				continue
			}
			if ignoredNamespace(g, c, p.Namespace) {
				continue
			}
			for _, m := range macsOf(t, p) {
				who := p.Namespace + "/" + p.Name
				g.Expect(carriedBy).NotTo(HaveKey(m), "MAC %s carried by %s and %s", m, carriedBy[m], who)
				carriedBy[m] = who
				h, ok := entries[m]
				g.Expect(ok).To(BeTrue(), "MAC %s of %s has no ledger entry", m, who)
				g.Expect(holders.OwnerIs(h.Owner, carriers.Ref{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID})).To(BeTrue(), "MAC %s of %s held by %+v", m, who, h.Owner)
			}
		}
		// Owners may be VMs and VMIs too: every entry is bound, but a
		// running replica's stock (held for admissions).
		carried := carriedOn(g, c)
		live := liveIncarnations(g, c)
		for m, h := range entries {
			if heartbeat.IsStock(h.Owner) && live[h.Owner.UID] && len(carried[m]) == 0 {
				continue
			}
			g.Expect(holders.Bound(h.Owner, carried[m])).To(BeTrue(), "the entry of %s outlives its owner %+v", m, h.Owner)
		}
	}).WithTimeout(90 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
}

// removeEntry deletes the ledger entry of m by hand, as an admin might.
func removeEntry(g Gomega, m mac.MAC) {
	g.Eventually(func() error {
		block := &v1alpha1.MACBlock{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: ledger.BlockName(m)}, block); err != nil {
			return err
		}
		if !ledger.Remove(block, ledger.Offset(m)) {
			return nil
		}
		return env.Client.Update(context.Background(), block)
	}).Should(Succeed())
}

func ignoredNamespace(g Gomega, c client.Client, name string) bool {
	ns := &corev1.Namespace{}
	g.Expect(c.Get(context.Background(), client.ObjectKey{Name: name}, ns)).To(Succeed())
	// As the webhook judges it in opt-out mode: labelled ignore, or one of
	// OpenShift's platform namespaces.
	return !scope.New(scope.PodsLabel, scope.OptOut, managerNamespace).Manages(ns)
}

// A pod keeps the MACs it was created with: Multus set its interfaces up
// from the annotation at sandbox start, so editing the annotation later
// must not free the MAC for someone else.
func TestPodAnnotationEditKeepsMAC(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	p := createPod(t, pod(ns, "edited", `[{"name":"n"}]`))
	m := macsOf(t, p)[0]
	expectBound(t, m, p)

	p.Annotations["k8s.v1.cni.cncf.io/networks"] = `[{"name":"n"}]`
	g.Expect(env.Client.Update(ctx, p)).To(Succeed())
	g.Expect(macsOf(t, p)).To(Equal([]mac.MAC{m}), "the edit that dropped the MAC gets it written back")
	// Even a pod whose stored annotation no longer names the MAC keeps it:
	// the webhook is not the only writer (one may run before it is
	// installed, or in a namespace labelled later).
	g.Expect(env.Client.Patch(ctx, p, client.RawPatch(types.JSONPatchType,
		[]byte(`[{"op":"replace","path":"/metadata/annotations/k8s.v1.cni.cncf.io~1networks","value":"[]"}]`)))).To(Succeed())
	g.Consistently(func(g Gomega) {
		h := entryOf(g, m)
		g.Expect(h).NotTo(BeNil(), "MAC %s released while the pod's interface still has it", m)
		g.Expect(h.Owner.Name).To(Equal(p.Name))
	}).WithTimeout(3 * time.Second).Should(Succeed())

	g.Expect(env.Client.Delete(ctx, p)).To(Succeed())
	expectReleased(t, m)
}

// When the holder goes away while another object carries the same MAC,
// the entry passes to that object in one update: at no moment does the MAC
// look free.
func TestHolderGoneMACPassesToOtherCarrier(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	a := createPod(t, pod(ns, "a", `[{"name":"n"}]`))
	m := macsOf(t, a)[0]
	expectBound(t, m, a)

	// b gets the same MAC in a namespace kubemacpool ignored at the time,
	// which is managed afterwards.
	other := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "ignore"})
	b := createPod(t, pod(other, "b", `[{"name":"n","mac":"`+m.String()+`"}]`))
	nsObj := &corev1.Namespace{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: other}, nsObj)).To(Succeed())
	nsObj.Labels = nil
	g.Expect(env.Client.Update(ctx, nsObj)).To(Succeed())

	g.Expect(env.Client.Delete(ctx, a)).To(Succeed())
	g.Eventually(func(g Gomega) {
		h := entryOf(g, m)
		g.Expect(h).NotTo(BeNil())
		g.Expect(h.Owner.UID).To(Equal(b.UID))
	}).WithTimeout(20 * time.Second).Should(Succeed())
	g.Expect(entryOf(g, m).Adopted).To(BeTrue())
}

// A request that accepts an existing entry (a VM update putting back a MAC
// it had dropped, a retried create) races with the repair, which may be
// removing that entry at the same moment. The repair writes only on the
// version of the block it judged, and removes only the entry it judged;
// accepting renews the entry, so a removal judged before the accept fails
// and, judged again, finds a different entry. No manager runs: the race is
// set up by hand against the real API server.
func TestAcceptedReservationOutlivesStaleRelease(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	m := mustMAC("02:42:00:00:00:01")
	owner := v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "default", Name: "readded"}
	block := ledger.NewBlock(m)
	ledger.Put(block, v1alpha1.MACBlockEntry{Offset: ledger.Offset(m), MAC: m.String(), Owner: owner,
		Reserved: metav1.NewMicroTime(time.Now().Add(-time.Hour).Truncate(time.Microsecond))})
	g.Expect(env.Client.Create(ctx, block)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), block) })
	judged := block.DeepCopy()
	judgedEntry := *ledger.Find(judged, ledger.Offset(m))

	book := &ledger.Ledger{Writer: env.Client, Live: env.Client, Log: testLogger()}
	p := pool.New(book, clock.RealClock{})
	res, err := p.Reserve(ctx, pool.Request{Owner: owner, Slots: []pool.Slot{{Network: "default/n", Requested: m}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.MACs).To(Equal([]mac.MAC{m}))
	g.Expect(res.Written).To(BeEmpty(), "the existing entry is accepted, not made again")

	// The repair's removal, judged on the version before the accept.
	ledger.Remove(judged, ledger.Offset(m))
	err = env.Client.Update(ctx, judged)
	g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "a removal judged before the accept must fail, got %v", err)
	fresh := &v1alpha1.MACBlock{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(block), fresh)).To(Succeed())
	renewed := ledger.Find(fresh, ledger.Offset(m))
	g.Expect(renewed).NotTo(BeNil())
	g.Expect(ledger.SameEntry(renewed, &judgedEntry)).To(BeFalse(), "judged again, the entry is not the one judged: it was renewed")
	g.Expect(renewed.Reserved.After(judgedEntry.Reserved.Time)).To(BeTrue())

	// And an accept after the entry is gone reserves the MAC afresh.
	ledger.Remove(fresh, ledger.Offset(m))
	g.Expect(env.Client.Update(ctx, fresh)).To(Succeed())
	res, err = p.Reserve(ctx, pool.Request{Owner: owner, Slots: []pool.Slot{{Network: "default/n", Requested: m}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Written).To(Equal([]mac.MAC{m}))
}
