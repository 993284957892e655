package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/localnode"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

const networksAnnotation = "k8s.v1.cni.cncf.io/networks"

// bridgeNetwork is a NetworkAttachmentDefinition of a node bridge (named
// after the network, each its own: a bridge that lost its last port drops
// to MAC 00:00:00:00:00:00 on this kernel) with the tuning plugin.
func bridgeNetwork(ns, name, bridge string) *nadv1.NetworkAttachmentDefinition {
	return nad(ns, name, fmt.Sprintf(`{"cniVersion": "0.3.1", "name": %q, "plugins": [
		{"type": "bridge", "bridge": %q},
		{"type": "tuning", "capabilities": {"mac": true}}]}`, name, localnode.LinkPrefix+bridge))
}

func nad(ns, name, config string) *nadv1.NetworkAttachmentDefinition {
	return &nadv1.NetworkAttachmentDefinition{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       nadv1.NetworkAttachmentDefinitionSpec{Config: config},
	}
}

func testPod(ns, name, networks string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{networksAnnotation: networks}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name: "pause", Image: localnode.PauseImage, ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
}

func newNamespace(t *testing.T, labels map[string]string, networks ...*nadv1.NetworkAttachmentDefinition) string {
	t.Helper()
	ctx := context.Background()
	ns, err := createNamespace(ctx, strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))[:min(40, len(t.Name()))], labels)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}) })
	for _, n := range networks {
		n.Namespace = ns
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	return ns
}

// running waits for a pod to run and to have Multus's network-status, and
// returns it.
func running(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	Eventually(func(g Gomega) {
		g.Expect(c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s/%s is %s; its events: %s", ns, name, p.Status.Phase, podEvents(ns, name))
		g.Expect(p.Annotations).To(HaveKey(nadv1.NetworkStatusAnnot))
	}).WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
	return p
}

// podEvents lists a pod's events (the kubelet's and kubemacpool's), for
// failure messages.
func podEvents(ns, name string) string {
	list := &corev1.EventList{}
	if err := c.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return strings.Join(out, "; ")
}

// reported returns Multus's network-status entries of a pod's secondary
// networks, by interface.
func reported(t *testing.T, p *corev1.Pod) map[string]nadv1.NetworkStatus {
	t.Helper()
	var statuses []nadv1.NetworkStatus
	if err := json.Unmarshal([]byte(p.Annotations[nadv1.NetworkStatusAnnot]), &statuses); err != nil {
		t.Fatalf("pod %s/%s: network-status: %v", p.Namespace, p.Name, err)
	}
	out := map[string]nadv1.NetworkStatus{}
	for _, s := range statuses {
		if !s.Default {
			out[s.Interface] = s
		}
	}
	return out
}

// given returns the networks kubemacpool wrote into a stored pod.
func given(t *testing.T, p *corev1.Pod) []multus.Element {
	t.Helper()
	elems, err := multus.Parse(p.Annotations[networksAnnotation], p.Namespace)
	if err != nil {
		t.Fatalf("pod %s/%s: stored annotation: %v", p.Namespace, p.Name, err)
	}
	return elems
}

// expectApplied checks that each network of a running pod has, in Multus's
// network-status and on the interface inside the pod, the MAC kubemacpool
// wrote, and returns those MACs.
func expectApplied(t *testing.T, p *corev1.Pod) []string {
	t.Helper()
	status := reported(t, p)
	var macs []string
	for i, e := range given(t, p) {
		iface := e.Interface()
		if iface == "" {
			iface = fmt.Sprintf("net%d", i+1) // Multus's default names
		}
		if e.MAC() == "" {
			t.Fatalf("pod %s/%s: network %s got no MAC from kubemacpool", p.Namespace, p.Name, e.NetworkKey())
		}
		s, ok := status[iface]
		if !ok {
			t.Fatalf("pod %s/%s: Multus reports no %s: %s", p.Namespace, p.Name, iface, p.Annotations[nadv1.NetworkStatusAnnot])
		}
		if s.Name != e.NetworkKey() || !strings.EqualFold(s.Mac, e.MAC()) {
			t.Errorf("pod %s/%s: kubemacpool gave %s %s, Multus reports %s on %s", p.Namespace, p.Name, e.NetworkKey(), e.MAC(), s.Mac, s.Name)
		}
		onInterface, err := node.InterfaceMAC(p, iface)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.EqualFold(onInterface, e.MAC()) {
			t.Errorf("pod %s/%s: %s inside the pod has %s, kubemacpool gave %s", p.Namespace, p.Name, iface, onInterface, e.MAC())
		}
		macs = append(macs, strings.ToLower(e.MAC()))
	}
	return macs
}

// Pods with one and two networks, asked for in the JSON and the short
// annotation forms, run with the MACs kubemacpool wrote on their
// interfaces, as Multus reports them; no MAC is given twice.
func TestPodsRunWithTheirMACs(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	ns := newNamespace(t, nil, bridgeNetwork("", "net-a", "bra"), bridgeNetwork("", "net-b", "brb"))
	pods := map[string]string{
		"one-json":  `[{"name":"net-a"}]`,
		"two-json":  `[{"name":"net-a"},{"name":"net-b","interface":"eth7"}]`,
		"one-short": "net-b",
		"two-short": "net-a,net-b@eth9",
	}
	for name, networks := range pods {
		Expect(c.Create(ctx, testPod(ns, name, networks))).To(Succeed(), name)
	}
	seen := map[string]string{}
	for name := range pods {
		p := running(t, ns, name)
		for _, m := range expectApplied(t, p) {
			Expect(seen).NotTo(HaveKey(m), "MAC %s given to %s and %s", m, seen[m], name)
			seen[m] = name
		}
	}
	Expect(seen).To(HaveLen(6))
}

// A namespace that opts out keeps its pods' annotations as written: the pod
// runs on the network with whatever MAC the bridge picked, and kubemacpool
// wrote none.
func TestIgnoredNamespacePodRunsUntouched(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	ns := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "ignore"}, bridgeNetwork("", "net-a", "brign"))
	Expect(c.Create(ctx, testPod(ns, "p", `[{"name":"net-a"}]`))).To(Succeed())
	p := running(t, ns, "p")
	Expect(p.Annotations[networksAnnotation]).To(Equal(`[{"name":"net-a"}]`))
	Expect(reported(t, p)).To(HaveKey("net1"))
	onInterface, err := node.InterfaceMAC(p, "net1")
	Expect(err).NotTo(HaveOccurred())
	Expect(onInterface).To(Equal(reported(t, p)["net1"].Mac))
}

// A network whose plugins do not set the MAC (the ptp plugin ignores the
// MAC Multus passes, and there is no tuning) gets the real MACNotApplied
// event: kubemacpool gave one MAC, the interface has another.
func TestMACNotAppliedOnARealInterface(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	ptp := nad("", "no-mac", fmt.Sprintf(`{"cniVersion": "0.3.1", "name": "no-mac", "type": "ptp",
		"ipam": {"type": "host-local", "subnet": "10.250.0.0/24", "dataDir": %q}}`, node.Dir+"/cni/ipam"))
	ns := newNamespace(t, nil, ptp)
	Expect(c.Create(ctx, testPod(ns, "p", `[{"name":"no-mac"}]`))).To(Succeed())
	p := running(t, ns, "p")
	gave := given(t, p)[0].MAC()
	got := reported(t, p)["net1"].Mac
	Expect(got).NotTo(BeEmpty())
	Expect(strings.EqualFold(got, gave)).To(BeFalse(), "the ptp plugin applied %s", gave)
	onInterface, err := node.InterfaceMAC(p, "net1")
	Expect(err).NotTo(HaveOccurred())
	Expect(onInterface).To(Equal(got))
	Eventually(func(g Gomega) {
		list := &eventsv1.EventList{}
		g.Expect(c.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var notes []string
		for _, e := range list.Items {
			if e.Regarding.Name == "p" && e.Reason == "MACNotApplied" {
				notes = append(notes, e.Note)
			}
		}
		g.Expect(notes).To(ContainElement(And(ContainSubstring("kubemacpool gave "+gave), ContainSubstring("Multus reports "+got))))
	}).WithTimeout(time.Minute).Should(Succeed())
}

// One of kubemacpool's two replicas is deleted while pods are created: no
// create fails (the other replica serves; the deleted one drains), every
// pod runs with its own MAC, and the Deployment is whole again.
func TestReplicaDeletedWhileCreating(t *testing.T) {
	RegisterTestingT(t)
	ctx := context.Background()
	ns := newNamespace(t, nil, bridgeNetwork("", "net-a", "brdel"))
	replicas := &corev1.PodList{}
	Expect(c.List(ctx, replicas, client.InNamespace(kmpNamespace))).To(Succeed())
	Expect(replicas.Items).To(HaveLen(2))

	const total, workers = 40, 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		created  = make(chan int, total)
	)
	names := make(chan int, total)
	for i := range total {
		names <- i
	}
	close(names)
	for range workers {
		wg.Go(func() {
			for i := range names {
				err := c.Create(ctx, testPod(ns, fmt.Sprintf("p%02d", i), `[{"name":"net-a"}]`))
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
				}
				created <- i
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	for range 8 {
		<-created
	}
	Expect(c.Delete(ctx, &replicas.Items[0])).To(Succeed())
	t.Logf("deleted replica %s after 8 creates", replicas.Items[0].Name)
	wg.Wait()
	Expect(failures).To(BeEmpty())

	seen := map[string]string{}
	for i := range total {
		name := fmt.Sprintf("p%02d", i)
		for _, m := range expectApplied(t, running(t, ns, name)) {
			Expect(seen).NotTo(HaveKey(m), "MAC %s given to %s and %s", m, seen[m], name)
			seen[m] = name
		}
	}
	Eventually(func(g Gomega) {
		list := &corev1.PodList{}
		g.Expect(c.List(ctx, list, client.InNamespace(kmpNamespace))).To(Succeed())
		ready := 0
		for _, p := range list.Items {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		g.Expect(ready).To(Equal(2))
	}).WithTimeout(2 * time.Minute).Should(Succeed())
}
