package integration

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/controller/legacy"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
)

// vmRef is a controller reference to vm, as KubeVirt writes on its VMIs.
func vmRef(vm *kubevirtv1.VirtualMachine) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: vm.Name, UID: vm.UID, Controller: ptr.To(true)}
}

// instanceOf is the VMI KubeVirt would start from vm: its template's spec,
// a controller reference to it.
func instanceOf(vm *kubevirtv1.VirtualMachine) *kubevirtv1.VirtualMachineInstance {
	return &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: vm.Namespace, Name: vm.Name, OwnerReferences: []metav1.OwnerReference{vmRef(vm)}},
		Spec:       *vm.Spec.Template.Spec.DeepCopy(),
	}
}

// A VMI is its VM's only when that VM exists, with the referenced UID and
// group, and the VMI's MACs are the VM's. A forged reference gets the
// refusals any object gets; and what the ledger holds never goes to a VM
// that a VMI merely names.
func TestVMIOwnerClaimsAreChecked(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	victimNS, tenant := newNamespace(t, nil), newNamespace(t, nil)

	victim := newVM(victimNS, "victim", iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(ctx, victim)).To(Succeed())
	stolen := vmMACs(victim)["a"]
	mine := newVM(tenant, "mine", iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(ctx, mine)).To(Succeed())
	expectHeldBy(t, stolen, "VirtualMachine", victim)

	// The VM's own instance is admitted as it is: its MACs come from the VM.
	own := instanceOf(mine)
	g.Expect(env.Client.Create(ctx, own)).To(Succeed())
	g.Expect(own.Spec.Domain.Devices.Interfaces[0].MacAddress).To(Equal(vmMACs(mine)["a"]))
	expectHeldBy(t, vmMACs(mine)["a"], "VirtualMachine", mine)

	claiming := func(name string, ref metav1.OwnerReference) *kubevirtv1.VirtualMachineInstance {
		vmi := &kubevirtv1.VirtualMachineInstance{
			ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: name, OwnerReferences: []metav1.OwnerReference{ref}},
			Spec:       vmSpec(iface{"a", "bridge", "net-a", stolen}),
		}
		return vmi
	}
	ghost := vmRef(mine)
	ghost.Name, ghost.UID = "ghost", "0b6e8c4e-1111-2222-3333-000000000001"
	stale := vmRef(mine)
	stale.UID = "0b6e8c4e-1111-2222-3333-000000000002"
	otherGroup := vmRef(mine)
	otherGroup.APIVersion = "virt.example.com/v1"
	for name, ref := range map[string]metav1.OwnerReference{
		"real-vm-other-macs": vmRef(mine), // the tenant's own VM, which does not have that MAC
		"missing-vm":         ghost,
		"wrong-uid":          stale,
		"other-group":        otherGroup,
	} {
		err := env.Client.Create(ctx, claiming(name, ref))
		g.Expect(err).To(MatchError(ContainSubstring("MAC address "+stolen+" is already in use by VirtualMachine "+victimNS+"/victim")), "VMI %s", name)
	}
	g.Expect(entryOf(g, mustMAC(stolen)).Owner.Name).To(Equal("victim"))

	// Stored claims are checked too. A VMI created while the webhook skips
	// its namespace names a real VM of that namespace as its controller
	// while carrying the victim's MAC: once the victim is gone, the MAC is
	// held for the VMI that carries it, never for the VM it names.
	skipped := newNamespace(t, map[string]string{"mutatevirtualmachines.kubemacpool.io": "ignore"})
	decoy := newVM(skipped, "decoy", iface{"a", "bridge", "net-a", "02:de:00:00:00:01"})
	g.Expect(env.Client.Create(ctx, decoy)).To(Succeed())
	forged := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: skipped, Name: "forged", OwnerReferences: []metav1.OwnerReference{vmRef(decoy)}},
		Spec:       vmSpec(iface{"a", "bridge", "net-a", stolen}),
	}
	g.Expect(env.Client.Create(ctx, forged)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(eventsAbout(g, victimNS, "victim", "MACCollision")).NotTo(BeEmpty(), "the forged VMI carries the victim's MAC")
	}).WithTimeout(20 * time.Second).Should(Succeed())
	g.Expect(env.Client.Delete(ctx, victim)).To(Succeed())
	expectHeldBy(t, stolen, "VirtualMachineInstance", forged)
}

// KubeVirt keeps 02:00:00:00:00:00 for the in-pod bridge: a range starting
// there hands out everything but it, and a masqueraded interface asking
// for it is refused with KubeVirt's reason.
func TestKubeVirtBridgeMACNeverHandedOut(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	setRange(t, map[string]string{rangeconfig.KeyStart: "02:00:00:00:00:00", rangeconfig.KeyEnd: "02:00:00:00:00:03"})
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	got := map[string]bool{}
	for _, name := range []string{"vm-1", "vm-2", "vm-3"} {
		vm := newVM(ns, name, iface{"default", "masquerade", "pod", ""})
		g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
		got[vmMACs(vm)["default"]] = true
	}
	g.Expect(got).To(Equal(map[string]bool{"02:00:00:00:00:01": true, "02:00:00:00:00:02": true, "02:00:00:00:00:03": true}))
	err := env.Client.Create(ctx, newVM(ns, "vm-4", iface{"default", "masquerade", "pod", ""}))
	g.Expect(err).To(MatchError(ContainSubstring("all 3 allocatable addresses are held")))

	err = env.Client.Create(ctx, newVM(ns, "asks", iface{"default", "masquerade", "pod", "02-00-00-00-00-00"}))
	g.Expect(err).To(MatchError(ContainSubstring("interface default: The requested MAC address is reserved for the in-pod bridge")))
}

// Decentralized live migration: the receiving VM (runStrategy
// WaitAsReceiver, another namespace) carries the source's MACs. It is
// admitted, the pair raises no collision, running or not, and when the
// source goes its MACs pass to the receiver. Anyone else asking for them is
// still refused.
func TestMigrationReceiverTakesSourceMACs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	addr, _ := withMetrics(t)
	srcNS, dstNS, otherNS := newNamespace(t, nil), newNamespace(t, nil), newNamespace(t, nil)

	src := newVM(srcNS, "vm", iface{"default", "masquerade", "pod", ""}, iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(ctx, src)).To(Succeed())
	macs := vmMACs(src)
	expectHeldBy(t, macs["a"], "VirtualMachine", src)

	dst := newVM(dstNS, "vm", iface{"default", "masquerade", "pod", macs["default"]}, iface{"a", "bridge", "net-a", macs["a"]}, iface{"b", "bridge", "net-b", ""})
	dst.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyWaitAsReceiver)
	g.Expect(env.Client.Create(ctx, dst)).To(Succeed())
	g.Expect(vmMACs(dst)["a"]).To(Equal(macs["a"]))
	g.Expect(vmMACs(dst)["b"]).NotTo(BeEmpty())
	expectHeldBy(t, vmMACs(dst)["b"], "VirtualMachine", dst)
	g.Expect(entryOf(g, mustMAC(macs["a"])).Owner.Namespace).To(Equal(srcNS), "the source keeps holding its MACs")

	// The refusal names one of the pair (the older; created in the same
	// second, the first by name).
	refusal := MatchRegexp("MAC address " + macs["a"] + " is already in use by VirtualMachine (" + srcNS + "|" + dstNS + ")/vm")
	g.Expect(env.Client.Create(ctx, newVM(otherNS, "vm", iface{"a", "bridge", "net-a", macs["a"]}))).To(MatchError(refusal))
	g.Expect(env.Client.Create(ctx, pod(otherNS, "p", `[{"name":"net-a","mac":"`+macs["a"]+`"}]`))).To(MatchError(refusal))

	// Both sides running, one migration.
	srcVMI, dstVMI := instanceOf(src), instanceOf(getVM(g, dst))
	for _, vmi := range []*kubevirtv1.VirtualMachineInstance{srcVMI, dstVMI} {
		g.Expect(env.Client.Create(ctx, vmi)).To(Succeed())
		reportRunning(t, vmi, "a", macs["a"], types.UID("migration-1"))
	}
	g.Consistently(func(g Gomega) {
		_, collides := scrape(g, addr)[`kmp_mac_collisions{mac="`+macs["a"]+`"}`]
		g.Expect(collides).To(BeFalse())
		for _, ns := range []string{srcNS, dstNS} {
			g.Expect(eventsAbout(g, ns, "vm", "MACCollision")).To(BeEmpty(), "collision reported in %s", ns)
		}
	}).WithTimeout(4 * time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())

	// The migration done, the source goes.
	g.Expect(env.Client.Delete(ctx, srcVMI)).To(Succeed())
	g.Expect(env.Client.Delete(ctx, src)).To(Succeed())
	expectHeldBy(t, macs["a"], "VirtualMachine", dst)
	expectHeldBy(t, macs["default"], "VirtualMachine", dst)
	g.Expect(env.Client.Create(ctx, newVM(otherNS, "vm2", iface{"a", "bridge", "net-a", macs["a"]}))).
		To(MatchError(ContainSubstring("already in use by VirtualMachine " + dstNS + "/vm")))
}

// With no replica running, what virt-controller, virtctl and users do to
// VMs day to day still works: the webhook is called only for a create or an
// edit of interfaces or networks, and never for a VM being deleted.
func TestVMOperationsNeverWaitOnKubemacpool(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	r := startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	vm := newVM(ns, "vm", iface{"a", "bridge", "net-a", ""})
	vm.Finalizers = []string{"example.com/hold"}
	g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	r.Stop()

	patch := func(change func(*kubevirtv1.VirtualMachine)) error {
		cur := &kubevirtv1.VirtualMachine{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(vm), cur); err != nil {
			return err
		}
		base := cur.DeepCopy()
		change(cur)
		return env.Client.Patch(ctx, cur, client.MergeFrom(base))
	}
	// The webhook is in the path, and down: an interface edit fails.
	err := patch(func(v *kubevirtv1.VirtualMachine) {
		v.Spec.Template.Spec.Domain.Devices.Interfaces[0].MacAddress = "02:ab:00:00:00:01"
	})
	g.Expect(err).To(MatchError(ContainSubstring("mutatevirtualmachines.kubemacpool.io")))

	g.Expect(patch(func(v *kubevirtv1.VirtualMachine) { v.Labels = map[string]string{"team": "blue"} })).To(Succeed())
	g.Expect(patch(func(v *kubevirtv1.VirtualMachine) { v.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyAlways) })).To(Succeed())
	g.Expect(env.Client.Delete(ctx, vm)).To(Succeed())
	g.Expect(patch(func(v *kubevirtv1.VirtualMachine) { v.Finalizers = nil })).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(vm), &kubevirtv1.VirtualMachine{}))
	}).WithTimeout(10 * time.Second).Should(BeTrue())
}

// Upstream kubemacpool's finalizer, left on VMs after a migration from it,
// is removed, so those VMs can be deleted; other finalizers stay.
func TestLegacyFinalizerRemoved(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	// Created while no kubemacpool runs, as upstream left them.
	ns := newNamespace(t, map[string]string{"mutatevirtualmachines.kubemacpool.io": "ignore"})
	stuck := newVM(ns, "stuck", iface{"a", "bridge", "net-a", ""})
	stuck.Finalizers = []string{legacy.Finalizer}
	kept := newVM(ns, "kept", iface{"a", "bridge", "net-a", ""})
	kept.Finalizers = []string{legacy.Finalizer, "example.com/keep"}
	for _, vm := range []*kubevirtv1.VirtualMachine{stuck, kept} {
		g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	}
	g.Expect(env.Client.Delete(ctx, stuck)).To(Succeed())
	g.Expect(getVM(g, stuck).DeletionTimestamp).NotTo(BeNil(), "held by the finalizer")

	startManager(t, testOptions(t))
	g.Eventually(func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(stuck), &kubevirtv1.VirtualMachine{}))
	}).WithTimeout(20*time.Second).Should(BeTrue(), "a VM with upstream's finalizer was never deleted")
	g.Eventually(func(g Gomega) {
		g.Expect(getVM(g, kept).Finalizers).To(Equal([]string{"example.com/keep"}))
	}).WithTimeout(20 * time.Second).Should(Succeed())

	cur := getVM(g, kept)
	base := cur.DeepCopy()
	cur.Finalizers = nil
	g.Expect(env.Client.Patch(ctx, cur, client.MergeFrom(base))).To(Succeed())
}
