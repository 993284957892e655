package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// The seed's example: a pod asking for one network gets a MAC from the
// default range, written into the annotation with the pod's namespace, and
// the MAC is held by a ledger entry bound to the pod.
func TestPodGetsMACFromDefaultRange(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	p := createPod(t, pod(ns, "samplepod", `[{ "name": "ovs-conf"}]`))

	elems := networksOf(t, p)
	g.Expect(elems).To(HaveLen(1))
	g.Expect(elems[0].Name()).To(Equal("ovs-conf"))
	g.Expect(elems[0].Namespace()).To(Equal(ns))
	m := macsOf(t, p)[0]
	g.Expect(mac.DefaultRange.Contains(m)).To(BeTrue(), "MAC %s outside the default range", m)
	g.Expect(m.IsMulticast()).To(BeFalse())
	g.Expect(m.IsUniversal()).To(BeFalse(), "a universally administered MAC may clash with a real NIC")
	g.Expect(p.Annotations["k8s.v1.cni.cncf.io/networks"]).To(Equal(
		`[{"name":"ovs-conf","namespace":"` + ns + `","mac":"` + m.String() + `"}]`))

	expectBound(t, m, p)

	g.Expect(env.Client.Delete(context.Background(), p)).To(Succeed())
	expectReleased(t, m)
}

// The short form is rewritten to the JSON list; every element gets its own
// MAC, the same network listed twice included; other keys survive exactly.
func TestPodAnnotationFormsAndKeysKept(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	short := createPod(t, pod(ns, "short", "net1, other-ns/net2@eth1,net1"))
	elems := networksOf(t, short)
	g.Expect(elems).To(HaveLen(3))
	g.Expect(elems[0].NetworkKey()).To(Equal(ns + "/net1"))
	g.Expect(elems[1].NetworkKey()).To(Equal("other-ns/net2"))
	g.Expect(elems[1].Interface()).To(Equal("eth1"))
	g.Expect(elems[2].NetworkKey()).To(Equal(ns + "/net1"))
	macs := macsOf(t, short)
	g.Expect(macs).To(HaveLen(3))
	g.Expect(macs[0]).NotTo(Equal(macs[2]), "the same network twice needs two MACs")
	g.Expect(macs[1]).NotTo(Equal(macs[0]))
	g.Expect(macs[1]).NotTo(Equal(macs[2]))

	full := pod(ns, "keys", `[{"name":"ovs","ips":["10.1.1.1/24"],"cni-args":{"a":[1, 2]},"x-unknown":{"k":null},"interface":"net9"}]`)
	full.Annotations["other.example.com/keep"] = "untouched"
	full.Labels = map[string]string{"app": "keys"}
	full = createPod(t, full)
	got := full.Annotations["k8s.v1.cni.cncf.io/networks"]
	m := macsOf(t, full)[0]
	g.Expect(got).To(Equal(`[{"name":"ovs","namespace":"` + ns + `","interface":"net9","mac":"` + m.String() +
		`","ips":["10.1.1.1/24"],"cni-args":{"a":[1, 2]},"x-unknown":{"k":null}}]`))
	g.Expect(full.Annotations["other.example.com/keep"]).To(Equal("untouched"))
	g.Expect(full.Labels).To(Equal(map[string]string{"app": "keys"}))
	expectBound(t, m, full)
}

// A pod without the annotation, or with an empty one, passes untouched and
// holds nothing.
func TestPodWithoutNetworksUntouched(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	before := countEntries(g)

	plain := createPod(t, pod(ns, "plain", ""))
	g.Expect(plain.Annotations).To(BeEmpty())
	empty := createPod(t, pod(ns, "empty", "  "))
	g.Expect(empty.Annotations["k8s.v1.cni.cncf.io/networks"]).To(Equal("  "))
	g.Consistently(func() int { return countEntries(g) }).WithTimeout(time.Second).Should(Equal(before))
}

// A MAC the user writes is reserved when free, even outside the range, and
// a second pod asking for it is refused with a message naming the holder.
func TestPodExplicitMAC(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	// Universally administered and outside the default range: still ours to reserve.
	const wanted = "00:1A:4A:16:01:51"
	first := createPod(t, pod(ns, "first", `[{"name":"ovs-conf","mac":"`+wanted+`"}]`))
	m, _ := mac.Parse(wanted)
	g.Expect(macsOf(t, first)).To(Equal([]mac.MAC{m}))
	expectBound(t, m, first)

	// Any spelling of the same MAC is the same MAC.
	err := env.Client.Create(context.Background(), pod(ns, "second", `[{"name":"ovs-conf","mac":"001a.4a16.0151"}]`))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("00:1a:4a:16:01:51 is already in use by Pod " + ns + "/first"))
	g.Expect(entryOf(g, m).Owner.Name).To(Equal("first"), "the refused pod must not take the MAC")

	// Two networks of one pod asking for one MAC.
	err = env.Client.Create(context.Background(), pod(ns, "twice", `[{"name":"a","mac":"02:aa:00:00:00:01"},{"name":"b","mac":"02:AA:00:00:00:01"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("asked for by two interfaces of the same Pod")))
	g.Expect(entryOf(g, mustMAC("02:aa:00:00:00:01"))).To(BeNil(), "a refused pod holds nothing")
}

func mustMAC(s string) mac.MAC {
	m, err := mac.Parse(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Bad input is refused with a message that says what is wrong, and nothing
// is held for the refused pod.
func TestPodBadInputRefused(t *testing.T) {
	r := startManager(t, testOptions(t))
	t.Cleanup(func() {
		// No input may crash or wedge the replica.
		resp, err := http.Get("http://" + r.opts.ProbeAddr + "/readyz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("replica not ready after hostile input: %v", err)
		}
	})
	ns := newNamespace(t, nil)
	cases := []struct {
		name, annotation string
		want             []string
	}{
		{"json", `[{"name":"a"`, []string{"invalid k8s.v1.cni.cncf.io/networks annotation"}},
		{"object", `{"name":"a"}`, []string{"invalid k8s.v1.cni.cncf.io/networks annotation", "list"}},
		{"noname", `[{"namespace":"x"}]`, []string{"element 1", "name"}},
		{"badmac", `[{"name":"a","mac":"02:00:00:00:00:zz"}]`, []string{`"02:00:00:00:00:zz" is not a MAC address`}},
		{"eui64", `[{"name":"a","mac":"02:00:00:00:00:00:00:01"}]`, []string{"not a MAC address"}},
		{"multicast", `[{"name":"a","mac":"03:00:00:00:00:01"}]`, []string{"03:00:00:00:00:01 is a multicast address"}},
		{"short", `a,,b`, []string{"invalid k8s.v1.cni.cncf.io/networks annotation"}},
		{"infiniband", `[{"name":"a","mac":"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}]`, []string{"not a MAC address"}},
		{"five-octets", `[{"name":"a","mac":"02:00:00:00:01"}]`, []string{"not a MAC address"}},
		{"mac-number", `[{"name":"a","mac":2}]`, []string{"element 1", "mac"}},
		{"list-of-numbers", `[1,2]`, []string{"element 1"}},
		{"nested-list", `[[]]`, []string{"element 1"}},
		{"string", `"net1"`, []string{"invalid k8s.v1.cni.cncf.io/networks annotation"}},
		{"bad-name", `[{"name":"Not_A_Name"}]`, []string{"element 1", "name"}},
		{"one-mebibyte", `[{"name":"a","x":"` + strings.Repeat("x", 1<<20) + `"}]`, []string{"more than the 262144 bytes allowed"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			before := countEntries(g)
			// A valid network first: its reservation must be rolled back.
			annotation := c.annotation
			err := env.Client.Create(context.Background(), pod(ns, "bad-"+c.name, annotation))
			g.Expect(err).To(HaveOccurred())
			g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a refusal, not a server error: %v", err)
			for _, w := range c.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
			g.Expect(countEntries(g)).To(Equal(before))
		})
	}
}

// When a later network of a pod is refused, the MACs already reserved for
// its earlier networks are given back at once.
func TestPodRefusalRollsBackReservations(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	holder := createPod(t, pod(ns, "holder", `[{"name":"a","mac":"02:bb:00:00:00:01"}]`))
	expectBound(t, mustMAC("02:bb:00:00:00:01"), holder)
	before := countEntries(g)

	err := env.Client.Create(context.Background(), pod(ns, "loser", `[{"name":"a","mac":"02:bb:00:00:00:02"},{"name":"b","mac":"02:bb:00:00:00:01"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("already in use by Pod " + ns + "/holder")))
	g.Expect(entryOf(g, mustMAC("02:bb:00:00:00:02"))).To(BeNil())
	g.Expect(countEntries(g)).To(Equal(before))
}

// Dry-run requests get MACs in the answer and reserve nothing.
func TestPodDryRun(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	before := countEntries(g)

	p := pod(ns, "dry", `[{"name":"a"},{"name":"b"}]`)
	g.Expect(env.Client.Create(context.Background(), p, client.DryRunAll)).To(Succeed())
	macs := macsOf(t, p)
	g.Expect(macs).To(HaveLen(2))
	g.Expect(macs[0]).NotTo(Equal(macs[1]))
	g.Expect(countEntries(g)).To(Equal(before))
	g.Expect(entryOf(g, macs[0])).To(BeNil())

	// A dry run with a MAC in use is refused like the real request would be.
	holder := createPod(t, pod(ns, "holder", `[{"name":"a","mac":"02:cc:00:00:00:01"}]`))
	expectBound(t, mustMAC("02:cc:00:00:00:01"), holder)
	err := env.Client.Create(context.Background(), pod(ns, "dry2", `[{"name":"a","mac":"02:cc:00:00:00:01"}]`), client.DryRunAll)
	g.Expect(err).To(MatchError(ContainSubstring("already in use by Pod " + ns + "/holder")))
}

// Namespaces opt out with a label (the default mode), opt in with the other
// mode; the manager's namespace and kube-system are never touched.
func TestPodNamespaceSelection(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	r := startManager(t, testOptions(t))

	ignored := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "ignore"})
	p := createPod(t, pod(ignored, "p", `[{"name":"a"}]`))
	g.Expect(p.Annotations["k8s.v1.cni.cncf.io/networks"]).To(Equal(`[{"name":"a"}]`))

	for _, ns := range []string{"kube-system", managerNamespace} {
		g.Expect(ensureNamespace(ns)).To(Succeed())
		p := createPod(t, pod(ns, "untouched-"+ns, `[{"name":"a"}]`))
		g.Expect(p.Annotations["k8s.v1.cni.cncf.io/networks"]).To(Equal(`[{"name":"a"}]`), "namespace %s", ns)
		g.Expect(env.Client.Delete(ctx, p)).To(Succeed())
	}

	// Opt-in: unlabelled namespaces are left alone, labelled ones served.
	r.Stop()
	o := testOptions(t)
	o.PodNamespaces = scope.OptIn
	startManager(t, o)
	plain := newNamespace(t, nil)
	p = createPod(t, pod(plain, "p", `[{"name":"a"}]`))
	g.Expect(p.Annotations["k8s.v1.cni.cncf.io/networks"]).To(Equal(`[{"name":"a"}]`))
	allocate := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "allocate"})
	p = createPod(t, pod(allocate, "p", `[{"name":"a"}]`))
	g.Expect(macsOf(t, p)).To(HaveLen(1))
}

// Deleting a pod releases its MACs, and the next allocation does not hand a
// just-freed MAC straight back (stale ARP/DHCP state must not meet a new owner).
func TestPodDeleteReleasesAndNoImmediateReuse(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	setRange(t, map[string]string{"START_POOL_RANGE": "02:10:00:00:00:00", "END_POOL_RANGE": "02:10:00:00:00:0f"})

	var freed []mac.MAC
	for i := 0; i < 3; i++ {
		p := createPod(t, pod(ns, fmt.Sprintf("p%d", i), `[{"name":"a"}]`))
		m := macsOf(t, p)[0]
		expectBound(t, m, p)
		g.Expect(env.Client.Delete(context.Background(), p)).To(Succeed())
		expectReleased(t, m)
		freed = append(freed, m)
	}
	next := createPod(t, pod(ns, "next", `[{"name":"a"}]`))
	g.Expect(freed).NotTo(ContainElement(macsOf(t, next)[0]))
}

// A pod refused by a later admission step (here a ValidatingAdmissionPolicy
// that runs after the mutating webhook) leaves a reservation that is deleted
// after the grace period.
func TestReservationOfRefusedPodExpires(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	setRange(t, map[string]string{"START_POOL_RANGE": "02:20:00:00:00:00", "END_POOL_RANGE": "02:20:00:00:00:ff"})
	denyLabelled(t, "reject-me")

	p := pod(ns, "refused", `[{"name":"a"}]`)
	p.Labels = map[string]string{"reject-me": "true"}
	err := env.Client.Create(ctx, p)
	g.Expect(err).To(MatchError(ContainSubstring("rejected by test policy")))

	// The reservation exists, unbound, then goes away after the grace period.
	var reserved []ledger.Entry
	g.Eventually(func(g Gomega) {
		reserved = reservationsFor(g, ns, "refused")
		g.Expect(reserved).To(HaveLen(1))
	}).WithTimeout(5 * time.Second).Should(Succeed())
	g.Expect(holders.Bound(reserved[0].Owner, carriedNow(g)[reserved[0].MAC])).To(BeFalse(), "nothing carries the refused pod's MAC")
	g.Eventually(func(g Gomega) {
		g.Expect(reservationsFor(g, ns, "refused")).To(BeEmpty())
	}).WithTimeout(testGrace + 20*time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	// The same for a pod of a controller, known only by its generateName.
	gen := pod(ns, "", `[{"name":"a"}]`)
	gen.GenerateName = "refused-"
	gen.Labels = map[string]string{"reject-me": "true"}
	g.Expect(env.Client.Create(ctx, gen)).To(MatchError(ContainSubstring("rejected by test policy")))
	generated := func(g Gomega) []ledger.Entry {
		var out []ledger.Entry
		for _, e := range allEntries(g) {
			if e.Owner.Namespace == ns && e.Owner.GenerateName == "refused-" {
				out = append(out, e)
			}
		}
		return out
	}
	g.Expect(generated(g)).To(HaveLen(1))
	g.Eventually(func(g Gomega) { g.Expect(generated(g)).To(BeEmpty()) }).
		WithTimeout(testGrace + 20*time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
}

func reservationsFor(g Gomega, namespace, name string) []ledger.Entry {
	return entriesFor(g, "Pod", namespace, name)
}

// denyLabelled installs a ValidatingAdmissionPolicy refusing pods with label.
func denyLabelled(t testing.TB, label string) {
	t.Helper()
	deny(t, label, "", "pods", admissionregistrationv1.Create, func() error {
		probe := pod("default", "policy-probe", "")
		probe.Labels = map[string]string{label: "true"}
		return env.Client.Create(context.Background(), probe, client.DryRunAll)
	})
}

// deny installs a ValidatingAdmissionPolicy, which runs after mutating
// webhooks, refusing op on resource for objects with label, and waits until
// probe is refused by it.
func deny(t testing.TB, label, group, resource string, op admissionregistrationv1.OperationType, probe func() error) {
	t.Helper()
	denyWith(t, label, group, resource, op, admissionregistrationv1.Validation{Message: "rejected by test policy"}, "rejected by test policy", probe)
}

// denyWith is deny with the refusal's message (or messageExpression) set
// in refusal; refused is what the probe's error must contain.
func denyWith(t testing.TB, label, group, resource string, op admissionregistrationv1.OperationType, refusal admissionregistrationv1.Validation, refused string, probe func() error) {
	t.Helper()
	ctx := context.Background()
	refusal.Expression = `!has(object.metadata.labels) || !('` + label + `' in object.metadata.labels)`
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-" + label + "-" + resource},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{op},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: []string{resource}},
					},
				}},
			},
			Validations: []admissionregistrationv1.Validation{refusal},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-" + label + "-" + resource},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	for _, obj := range []client.Object{policy, binding} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("installing policy: %v", err)
		}
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(ctx, binding)
		_ = env.Client.Delete(ctx, policy)
	})
	// Policies take effect asynchronously: wait until the probe is refused.
	NewWithT(t).Eventually(probe).WithTimeout(30 * time.Second).Should(MatchError(ContainSubstring(refused)))
}

// Editing a pod's networks (which the Multus dynamic networks controller
// turns into hot-plugged interfaces): networks the pod had keep their MACs
// even when the edit leaves them out or a later edit plugs them back, added
// networks get MACs, and an edit cannot put a MAC held by another object on
// the pod.
func TestPodNetworksEdited(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	other := createPod(t, pod(ns, "other", `[{"name":"a"}]`))
	taken := macsOf(t, other)[0]
	p := createPod(t, pod(ns, "edited", `[{"name":"a"}]`))
	first := macsOf(t, p)[0]
	expectBound(t, first, p)

	edit := func(networks string) error {
		p.Annotations["k8s.v1.cni.cncf.io/networks"] = networks
		return env.Client.Update(ctx, p)
	}
	// A re-applied manifest without MACs, with a network added.
	g.Expect(edit(`[{"name":"a"},{"name":"b","interface":"net9"}]`)).To(Succeed())
	macs := macsOf(t, p)
	g.Expect(macs).To(HaveLen(2))
	g.Expect(macs[0]).To(Equal(first), "network a keeps its MAC")
	g.Expect(macs[1]).NotTo(BeElementOf(first, taken))
	g.Expect(networksOf(t, p)[1].Interface()).To(Equal("net9"), "the element's other keys are kept")
	expectBound(t, macs[1], p)

	// Unplugged, then plugged back: the network gets its MAC again (the pod
	// held it all along).
	g.Expect(edit(`[{"name":"a"}]`)).To(Succeed())
	g.Expect(edit(`[{"name":"a"},{"name":"b","interface":"net9"}]`)).To(Succeed())
	g.Expect(macsOf(t, p)).To(Equal(macs))

	// Someone else's MAC is refused, naming its holder; the pod is unchanged.
	// Through the status subresource too, which can also write metadata.
	err := edit(`[{"name":"a"},{"name":"b","interface":"net9"},{"name":"c","mac":"` + taken.String() + `"}]`)
	g.Expect(err).To(MatchError(And(ContainSubstring(taken.String()), ContainSubstring("Pod "+ns+"/other"))))
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
	g.Expect(macsOf(t, p)).To(Equal(macs))
	p.Annotations["k8s.v1.cni.cncf.io/networks"] = `[{"name":"c","mac":"` + taken.String() + `"}]`
	err = env.Client.SubResource("status").Update(ctx, p)
	g.Expect(err).To(MatchError(ContainSubstring("Pod " + ns + "/other")))
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(p), p)).To(Succeed())
	g.Expect(macsOf(t, p)).To(Equal(macs))

	// A free MAC chosen by the user is reserved for the pod.
	chosen := mustMAC("02:43:00:00:00:07")
	g.Expect(edit(`[{"name":"a"},{"name":"b","interface":"net9"},{"name":"c","mac":"` + chosen.String() + `"}]`)).To(Succeed())
	expectBound(t, chosen, p)

	g.Expect(env.Client.Delete(ctx, p)).To(Succeed())
	for _, m := range append(macs, chosen) {
		expectReleased(t, m)
	}
}

// Pods without secondary networks never wait on kubemacpool: with no
// replica running they are still created, and so are label edits of pods
// with networks. Creating a pod with networks, or editing its networks,
// waits for kubemacpool, as failurePolicy Fail requires (an unassigned MAC
// could collide).
func TestPodsWithoutNetworksNeedNoKubemacpool(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	kmp := startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	withNetworks := createPod(t, pod(ns, "with-networks", `[{"name":"a"}]`))
	kmp.Stop()

	plain := pod(ns, "plain", "")
	g.Expect(env.Client.Create(ctx, plain)).To(Succeed())
	withNetworks.Labels = map[string]string{"edited": "yes"}
	g.Expect(env.Client.Update(ctx, withNetworks)).To(Succeed())

	err := env.Client.Create(ctx, pod(ns, "needs-kubemacpool", `[{"name":"a"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("mutatepods.kubemacpool.io")))
	withNetworks.Annotations["k8s.v1.cni.cncf.io/networks"] = `[{"name":"a"},{"name":"b"}]`
	err = env.Client.Update(ctx, withNetworks)
	g.Expect(err).To(MatchError(ContainSubstring("mutatepods.kubemacpool.io")))
}
