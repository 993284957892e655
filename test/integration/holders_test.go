package integration

// The holes a review of "never a duplicate, never a leak" found, each shown
// the way a user meets it: objects created with a client, MACs read back.

import (
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// setRunStrategy patches vm's run strategy, as virtctl or KubeVirt do.
func setRunStrategy(ctx context.Context, vm *kubevirtv1.VirtualMachine, s kubevirtv1.VirtualMachineRunStrategy) error {
	cur := &kubevirtv1.VirtualMachine{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(vm), cur); err != nil {
		return err
	}
	base := cur.DeepCopy()
	cur.Spec.RunStrategy = ptr.To(s)
	return env.Client.Patch(ctx, cur, client.MergeFrom(base))
}

// launcherPod is the pod KubeVirt would run vmi in, carrying mac on net-a.
func launcherPod(vmi *kubevirtv1.VirtualMachineInstance, name, mac string) *corev1.Pod {
	p := pod(vmi.Namespace, name, `[{"name":"net-a","mac":"`+mac+`"}]`)
	p.Labels = map[string]string{"kubevirt.io": "virt-launcher"}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance",
		Name: vmi.Name, UID: vmi.UID, Controller: ptr.To(true)}}
	return p
}

// migration is one side of a decentralized live migration: receiving with
// receive, sending otherwise.
func migration(namespace, name, vmi, id string, receive bool) *kubevirtv1.VirtualMachineInstanceMigration {
	m := &kubevirtv1.VirtualMachineInstanceMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       kubevirtv1.VirtualMachineInstanceMigrationSpec{VMIName: vmi},
	}
	if receive {
		m.Spec.Receive = &kubevirtv1.VirtualMachineInstanceMigrationTarget{MigrationID: id}
	} else {
		m.Spec.SendTo = &kubevirtv1.VirtualMachineInstanceMigrationSource{MigrationID: id, ConnectURL: "sync.example:9185"}
	}
	return m
}

// Hole 1: a VM waiting as a migration receiver may copy any VM's MACs (it
// runs nothing while it waits), but it runs on them only as the target of
// a migration that pairs it with that VM: its target pod needs the pairing
// (both sides' VirtualMachineInstanceMigrations, one migrationID), and
// leaving WaitAsReceiver needs that migration to have succeeded.
func TestReceiverRunsOnlyOnItsSourcesMACs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	victimNS, tenant := newNamespace(t, nil), newNamespace(t, nil)
	t.Cleanup(func() {
		_ = env.Client.DeleteAllOf(ctx, &kubevirtv1.VirtualMachineInstance{}, client.InNamespace(tenant))
		deleteCarriers(t, tenant)
		deleteCarriers(t, victimNS)
	})

	victim := newVM(victimNS, "victim", iface{"a", "bridge", "net-a", ""})
	victim.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyAlways)
	g.Expect(env.Client.Create(ctx, victim)).To(Succeed())
	stolen := vmMACs(victim)["a"]
	expectHeldBy(t, stolen, "VirtualMachine", victim)

	copyVM := newVM(tenant, "copy", iface{"a", "bridge", "net-a", stolen})
	copyVM.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyWaitAsReceiver)
	g.Expect(env.Client.Create(ctx, copyVM)).To(Succeed(), "a waiting receiver runs nothing: it may copy its source")

	// Running it without a migration is refused, naming the holder.
	err := setRunStrategy(ctx, copyVM, kubevirtv1.RunStrategyAlways)
	g.Expect(err).To(MatchError(ContainSubstring("may not leave runStrategy WaitAsReceiver")))
	g.Expect(err).To(MatchError(ContainSubstring("MAC address " + stolen + " is already in use by VirtualMachine " + victimNS + "/victim")))

	// So is a target pod for it.
	vmi := instanceOf(getVM(g, copyVM))
	g.Expect(env.Client.Create(ctx, vmi)).To(Succeed())
	err = env.Client.Create(ctx, launcherPod(vmi, "virt-launcher-copy-1", stolen))
	g.Expect(err).To(MatchError(ContainSubstring("may carry another VM's MAC only while a decentralized live migration from that VM pairs the two")))

	// A receiving side alone, or a sending side of another VM, pairs nothing.
	recv := migration(tenant, "in", "copy", "m-1", true)
	g.Expect(env.Client.Create(ctx, recv)).To(Succeed())
	other := newVM(tenant, "other", iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(ctx, other)).To(Succeed())
	g.Expect(env.Client.Create(ctx, migration(tenant, "out-other", "other", "m-1", false))).To(Succeed())
	g.Expect(env.Client.Create(ctx, launcherPod(vmi, "virt-launcher-copy-2", stolen))).
		To(MatchError(ContainSubstring("already in use by VirtualMachine " + victimNS + "/victim")))

	// The source's owner sends it: the target pod may run.
	g.Expect(env.Client.Create(ctx, migration(victimNS, "out", "victim", "m-1", false))).To(Succeed())
	g.Expect(env.Client.Create(ctx, launcherPod(vmi, "virt-launcher-copy-3", stolen))).To(Succeed())
	g.Expect(setRunStrategy(ctx, copyVM, kubevirtv1.RunStrategyAlways)).
		To(MatchError(ContainSubstring("may not leave runStrategy WaitAsReceiver")), "the migration has not succeeded")

	// Once it succeeded, KubeVirt gives the receiver its run strategy.
	cur := &kubevirtv1.VirtualMachineInstanceMigration{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(recv), cur)).To(Succeed())
	cur.Status.Phase = kubevirtv1.MigrationSucceeded
	g.Expect(env.Client.Status().Update(ctx, cur)).To(Succeed())
	g.Expect(setRunStrategy(ctx, copyVM, kubevirtv1.RunStrategyAlways)).To(Succeed())
	g.Expect(entryOf(g, mustMAC(stolen)).Owner.Namespace).To(Equal(victimNS), "the source keeps its entry until it is deleted")
}

// Hole 2: a named pod refused by a later admission step and created again
// gets the same MAC back, and nothing stays held for the refused attempt.
func TestRetriedCreateGetsItsMACBack(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	t.Cleanup(func() { deleteCarriers(t, ns) })

	// Refused after kubemacpool admitted it, by a policy whose message
	// shows the MACs it was given (from the replica's stock: no entry names
	// the pod yet).
	denyShowingNetworks(t, "refuse-retried")
	refused := pod(ns, "retried", `[{"name":"net-a"},{"name":"net-b"}]`)
	refused.Labels = map[string]string{"refuse-retried": "true"}
	err := env.Client.Create(ctx, refused)
	g.Expect(err).To(MatchError(ContainSubstring("rejected with networks")))
	var first []mac.MAC
	for _, found := range regexp.MustCompile(`"mac":"([0-9a-f:]{17})"`).FindAllStringSubmatch(err.Error(), -1) {
		first = append(first, mustMAC(found[1]))
	}
	g.Expect(first).To(HaveLen(2), "the refused create was given two MACs: %v", err)

	p := createPod(t, pod(ns, "retried", `[{"name":"net-a"},{"name":"net-b"}]`))
	got := macsOf(t, p)
	g.Expect(got).To(ConsistOf(first[0], first[1]), "the retried create gets the MACs its first attempt was given")

	// Past the grace nothing is held for the pod but what it carries.
	time.Sleep(testGrace + 2*time.Second)
	g.Eventually(func(g Gomega) {
		held := reservationsFor(g, ns, "retried")
		g.Expect(held).To(HaveLen(2))
		for _, e := range held {
			g.Expect(got).To(ContainElement(e.MAC))
		}
	}).WithTimeout(10 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// Hole 3: a pod edited in a loop, each edit dropping its network for a new
// one, holds at most --max-interfaces MACs: the oldest dropped go first.
func TestEditsBoundWhatAPodHolds(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	o := testOptions(t)
	o.MaxInterfaces = 3
	startManager(t, o)
	ns := newNamespace(t, nil)
	t.Cleanup(func() { deleteCarriers(t, ns) })
	p := createPod(t, pod(ns, "edited", `[{"name":"net-0","interface":"net1"}]`))
	var given []string
	given = append(given, networksOf(t, p)[0].MAC())
	for i := 1; i <= 6; i++ {
		cur := &corev1.Pod{}
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(p), cur)).To(Succeed())
		cur.Annotations[multus.NetworksAnnotation] = `[{"name":"net-` + string(rune('0'+i)) + `","interface":"net1"}]`
		g.Expect(env.Client.Update(ctx, cur)).To(Succeed())
		given = append(given, networksOf(t, cur)[0].MAC())
	}
	g.Eventually(func(g Gomega) {
		var held []string
		for _, e := range reservationsFor(g, ns, "edited") {
			held = append(held, e.MAC.String())
		}
		g.Expect(held).To(ConsistOf(given[4], given[5], given[6]), "the pod keeps what it carries and its two newest dropped MACs")
	}).WithTimeout(testGrace + 10*time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// Hole 9: a pod seen carrying its MAC and then deleted frees it at once,
// not the grace period after it was reserved: a VM created again under a
// new name with its old MAC (to keep a DHCP lease) is admitted.
func TestDeletedOwnerReleasesAtOnce(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	o := testOptions(t)
	o.ReservationGrace = 2 * time.Minute // far longer than the test waits
	startManager(t, o)
	ns := newNamespace(t, nil)
	vm := newVM(ns, "old", iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	m := vmMACs(vm)["a"]
	expectHeldBy(t, m, "VirtualMachine", vm)
	time.Sleep(time.Second) // the repair sees it bound

	g.Expect(env.Client.Delete(ctx, vm)).To(Succeed())
	start := time.Now()
	g.Eventually(func() error {
		return env.Client.Create(ctx, newVM(ns, "new", iface{"a", "bridge", "net-a", m}))
	}).WithTimeout(20*time.Second).WithPolling(250*time.Millisecond).Should(Succeed(), "the deleted VM's MAC is still held")
	t.Logf("the MAC of a deleted VM was free again %s after the delete (grace %s)", time.Since(start).Round(100*time.Millisecond), o.ReservationGrace)
}

// Hole 6: a grace period shorter than an object can take from admission to
// storage is refused at start, saying why.
func TestShortGraceRefused(t *testing.T) {
	o := testOptions(t)
	o.MinReservationGrace = time.Minute
	o.ReservationGrace = 10 * time.Second
	out, err := exec.Command(kubemacpoolBinary(t), append(o.Args(), "--kubeconfig", kubeconfigFor(t, env))...).CombinedOutput()
	g := NewWithT(t)
	g.Expect(err).To(HaveOccurred(), "kubemacpool started with a 10s grace:\n%s", out)
	g.Expect(string(out)).To(ContainSubstring("--reservation-grace must be at least 1m0s (--min-reservation-grace), got 10s"))
}
