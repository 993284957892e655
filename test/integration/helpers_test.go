package integration

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

const managerNamespace = "kubemacpool-system"

var nsCounter atomic.Int64

// newNamespace creates a namespace with a unique name and the given labels.
func newNamespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%100000, nsCounter.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

// ensureNamespace creates a namespace if it does not exist.
func ensureNamespace(name string) error {
	err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// pod is a minimal pod asking for the given networks annotation.
func pod(namespace, name, networks string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "samplepod",
			Image: "quay.io/schseba/kubemacpool-test:latest",
		}}},
	}
	if networks != "" {
		p.Annotations = map[string]string{multus.NetworksAnnotation: networks}
	}
	return p
}

// createPod creates p and fails the test on error.
func createPod(t testing.TB, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatalf("creating pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	return p
}

// networksOf parses the networks annotation as the API server stored it.
func networksOf(t testing.TB, p *corev1.Pod) []multus.Element {
	t.Helper()
	elems, err := multus.Parse(p.Annotations[multus.NetworksAnnotation], p.Namespace)
	if err != nil {
		t.Fatalf("stored annotation does not parse: %v", err)
	}
	return elems
}

// macsOf returns the MACs written into a stored pod, in element order.
func macsOf(t testing.TB, p *corev1.Pod) []mac.MAC {
	t.Helper()
	var out []mac.MAC
	for _, e := range networksOf(t, p) {
		m, err := mac.Parse(e.MAC())
		if err != nil {
			t.Fatalf("network %s has no valid MAC: %v", e.NetworkKey(), err)
		}
		out = append(out, m)
	}
	return out
}

// entryOf reads the ledger entry of m from its MACBlock; nil when absent.
func entryOf(g Gomega, m mac.MAC) *ledger.Entry {
	block := &v1alpha1.MACBlock{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Name: ledger.BlockName(m)}, block)
	if apierrors.IsNotFound(err) {
		return nil
	}
	g.Expect(err).NotTo(HaveOccurred())
	e := ledger.Find(block, ledger.Offset(m))
	if e == nil {
		return nil
	}
	return &ledger.Entry{MAC: m, MACBlockEntry: *e}
}

// allEntries lists every entry of the ledger.
func allEntries(g Gomega) []ledger.Entry { return allEntriesOn(g, env.Client) }

// allEntriesOn is allEntries through c (another control plane's client).
func allEntriesOn(g Gomega, c client.Client) []ledger.Entry {
	list := &v1alpha1.MACBlockList{}
	g.Expect(c.List(context.Background(), list)).To(Succeed())
	var out []ledger.Entry
	for i := range list.Items {
		start, ok := ledger.StartOf(&list.Items[i])
		g.Expect(ok).To(BeTrue(), "block %s is not named after its first MAC", list.Items[i].Name)
		g.Expect(list.Items[i].Spec.Held).To(BeEquivalentTo(len(list.Items[i].Spec.Entries)), "block %s miscounts", list.Items[i].Name)
		for _, e := range list.Items[i].Spec.Entries {
			out = append(out, ledger.Entry{MAC: start + mac.MAC(e.Offset), MACBlockEntry: e})
		}
	}
	return out
}

// countEntries is how many MACs the ledger holds for objects: a replica's
// stock is left out unless an object carries the MAC (handed out, and
// passed to the object shortly), so the count does not move with refills
// or re-owns.
func countEntries(g Gomega) int {
	carried := carriedNow(g)
	n := 0
	for _, e := range allEntries(g) {
		if !heartbeat.IsStock(e.Owner) || len(carried[e.MAC]) > 0 {
			n++
		}
	}
	return n
}

// entriesFor lists the entries held for the named object of kind.
func entriesFor(g Gomega, kind, namespace, name string) []ledger.Entry {
	var out []ledger.Entry
	for _, e := range allEntries(g) {
		if e.Owner.Kind == kind && e.Owner.Namespace == namespace && e.Owner.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// carriedNow lists what every pod, VM and VMI carries, read live.
func carriedNow(g Gomega) map[mac.MAC][]carriers.Carrier { return carriedOn(g, env.Client) }

// carriedOn is carriedNow through c.
func carriedOn(g Gomega, c client.Client) map[mac.MAC][]carriers.Carrier {
	out := map[mac.MAC][]carriers.Carrier{}
	var objs []any
	pods := &corev1.PodList{}
	g.Expect(c.List(context.Background(), pods)).To(Succeed())
	for i := range pods.Items {
		objs = append(objs, &pods.Items[i])
	}
	vms := &kubevirtv1.VirtualMachineList{}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	for _, l := range []client.ObjectList{vms, vmis} {
		if err := c.List(context.Background(), l); err != nil && !meta.IsNoMatchError(err) {
			g.Expect(err).NotTo(HaveOccurred())
		}
	}
	for i := range vms.Items {
		objs = append(objs, &vms.Items[i])
	}
	for i := range vmis.Items {
		objs = append(objs, &vmis.Items[i])
	}
	for _, o := range objs {
		for _, cr := range carriers.Of(o) {
			out[cr.MAC] = append(out[cr.MAC], cr)
		}
	}
	return out
}

// expectAllBoundOn checks that no entry of the ledger behind c is left
// unbound: reservations of refused creates expired, none outlives its owner.
func expectAllBoundOn(g Gomega, c client.Client) {
	carried := carriedOn(g, c)
	live := liveIncarnations(g, c)
	for _, e := range allEntriesOn(g, c) {
		if heartbeat.IsStock(e.Owner) && live[e.Owner.UID] {
			continue // a running replica's stock: held for admissions
		}
		g.Expect(holders.Bound(e.Owner, carried[e.MAC])).To(BeTrue(), "entry of %s for %+v left unbound", e.MAC, e.Owner)
	}
}

// liveIncarnations are the replica incarnations whose stock heartbeat
// Lease was renewed within its duration.
func liveIncarnations(g Gomega, c client.Client) map[types.UID]bool {
	leases := &coordinationv1.LeaseList{}
	g.Expect(c.List(context.Background(), leases, client.HasLabels{heartbeat.Label})).To(Succeed())
	live := map[types.UID]bool{}
	for _, l := range leases.Items {
		renewed := l.Spec.RenewTime
		if renewed != nil && l.Spec.LeaseDurationSeconds != nil &&
			time.Since(renewed.Time) < time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second {
			live[types.UID(strings.TrimPrefix(l.Name, "kubemacpool-stock-"))] = true
		}
	}
	return live
}

// stockEntries lists the entries replicas keep in stock.
func stockEntries(g Gomega) []ledger.Entry {
	var out []ledger.Entry
	for _, e := range allEntries(g) {
		if heartbeat.IsStock(e.Owner) {
			out = append(out, e)
		}
	}
	return out
}

// expectBound waits until m has an entry for p and p carries it, which is
// what bound means: nothing is written when an entry becomes bound.
func expectBound(t testing.TB, m mac.MAC, p *corev1.Pod) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		e := entryOf(g, m)
		g.Expect(e).NotTo(BeNil(), "MAC %s must have a ledger entry", m)
		g.Expect(e.Owner.Kind).To(BeElementOf("Pod", "StatefulSet"), "a pod's, or its StatefulSet's for its name")
		g.Expect(e.Owner.Namespace).To(Equal(p.Namespace))
		g.Expect(holders.OwnerIs(e.Owner, carriers.Ref{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID})).To(BeTrue(), "entry %+v is not for pod %s", e.Owner, p.Name)
		g.Expect(e.MAC.String()).To(Equal(e.MACBlockEntry.MAC))
		g.Expect(holders.Bound(e.Owner, carriedNow(g)[m])).To(BeTrue(), "pod %s does not carry %s", p.Name, m)
	}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// expectReleased waits until the ledger has no entry for m.
func expectReleased(t testing.TB, m mac.MAC) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(entryOf(g, m)).To(BeNil(), "MAC %s must be released", m)
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// setRange writes the range ConfigMap, and removes it when the test ends.
func setRange(t testing.TB, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: rangeconfig.ConfigMapName}}
	err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	switch {
	case apierrors.IsNotFound(err):
		cm.Data = data
		err = env.Client.Create(ctx, cm)
	case err == nil:
		cm.Data = data
		err = env.Client.Update(ctx, cm)
	}
	if err != nil {
		t.Fatalf("writing the range ConfigMap: %v", err)
	}
	t.Cleanup(func() { resetRange(t) })
}

// resetRange puts the default range back for the next test, as a first
// start has it. Deleting the ConfigMap alone would not: a replica keeps
// the range in force, and one starting later takes the recorded one. So
// the ConfigMap is set to the default first (a running replica applies
// and records it), the record is set too (for when none runs), and then
// the ConfigMap goes.
func resetRange(t testing.TB) {
	ctx := context.Background()
	defaults, err := rangeconfig.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	data := rangeconfig.Data(defaults)
	reset := func(name string) (bool, error) {
		changed := false
		// A running replica may be rewriting the record meanwhile.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cm := &corev1.ConfigMap{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: name}, cm); err != nil {
				return client.IgnoreNotFound(err)
			}
			if maps.Equal(cm.Data, data) {
				return nil
			}
			changed = true
			cm.Data = data
			return env.Client.Update(ctx, cm)
		})
		return changed, err
	}
	for _, name := range []string{rangeconfig.ConfigMapName, pool.RangeRecordName} {
		if _, err := reset(name); err != nil {
			t.Errorf("resetting the range: %v", err)
		}
	}
	// A replica that had not applied the default yet may have recorded
	// its range again: settle.
	NewWithT(t).Eventually(func() (bool, error) {
		changed, err := reset(pool.RangeRecordName)
		return !changed, err
	}).WithTimeout(10 * time.Second).WithPolling(500 * time.Millisecond).MustPassRepeatedly(3).Should(BeTrue())
	_ = env.Client.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: rangeconfig.ConfigMapName}})
}

// eventsAbout lists the events.k8s.io events regarding an object.
func eventsAbout(g Gomega, namespace, name, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(namespace))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// podsIn lists the pods of a namespace.
func podsIn(g Gomega, namespace string) []corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(namespace))).To(Succeed())
	return list.Items
}

// ownControlPlane starts a control plane for one test, apart from the shared
// one (for tests that break it, or need it without something), with the
// given namespaces created, and stops it when the test ends.
func ownControlPlane(t testing.TB, o testenv.Options, namespaces ...string) *testenv.Env {
	t.Helper()
	e, err := testenv.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	for _, ns := range namespaces {
		if err := e.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	return e
}
