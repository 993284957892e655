package integration

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// iface describes one VM interface for the builders below.
type iface struct {
	name, binding, network, mac string // binding: bridge|masquerade|sriov; network: "pod" or a Multus name
}

func vmSpec(ifaces ...iface) kubevirtv1.VirtualMachineInstanceSpec {
	spec := kubevirtv1.VirtualMachineInstanceSpec{}
	for _, i := range ifaces {
		in := kubevirtv1.Interface{Name: i.name, MacAddress: i.mac}
		switch i.binding {
		case "masquerade":
			in.Masquerade = &kubevirtv1.InterfaceMasquerade{}
		case "sriov":
			in.SRIOV = &kubevirtv1.InterfaceSRIOV{}
		default:
			in.Bridge = &kubevirtv1.InterfaceBridge{}
		}
		spec.Domain.Devices.Interfaces = append(spec.Domain.Devices.Interfaces, in)
		n := kubevirtv1.Network{Name: i.name}
		if i.network == "pod" {
			n.Pod = &kubevirtv1.PodNetwork{}
		} else {
			n.Multus = &kubevirtv1.MultusNetwork{NetworkName: i.network}
		}
		spec.Networks = append(spec.Networks, n)
	}
	return spec
}

func newVM(namespace, name string, ifaces ...iface) *kubevirtv1.VirtualMachine {
	return &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted),
			Template:    &kubevirtv1.VirtualMachineInstanceTemplateSpec{Spec: vmSpec(ifaces...)},
		},
	}
}

// vmMACs maps interface name to the MAC written in the stored VM.
func vmMACs(vm *kubevirtv1.VirtualMachine) map[string]string {
	out := map[string]string{}
	for _, i := range vm.Spec.Template.Spec.Domain.Devices.Interfaces {
		out[i.Name] = i.MacAddress
	}
	return out
}

func getVM(g Gomega, vm *kubevirtv1.VirtualMachine) *kubevirtv1.VirtualMachine {
	out := &kubevirtv1.VirtualMachine{}
	g.Expect(env.Client.Get(context.Background(), client.ObjectKeyFromObject(vm), out)).To(Succeed())
	return out
}

// expectHeldBy waits until m is bound to the object of kind with uid.
func expectHeldBy(t testing.TB, m string, kind string, obj client.Object) {
	t.Helper()
	parsed := mustMAC(m)
	NewWithT(t).Eventually(func(g Gomega) {
		h := entryOf(g, parsed)
		g.Expect(h).NotTo(BeNil(), "MAC %s must have a ledger entry", m)
		g.Expect(h.Owner.Kind).To(Equal(kind))
		g.Expect(h.Owner.Name).To(Equal(obj.GetName()))
		g.Expect(holders.OwnerIs(h.Owner, carriers.Ref{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID()})).To(BeTrue())
		g.Expect(holders.Bound(h.Owner, carriedNow(g)[parsed])).To(BeTrue(), "%s %s does not carry %s", kind, obj.GetName(), m)
	}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// Multus interfaces (any binding) and the masqueraded pod network get MACs;
// a bridged pod network is left to the pod network.
func TestVMCreateAssignsMACs(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	vm := newVM(ns, "vm1",
		iface{"default", "masquerade", "pod", ""},
		iface{"br", "bridge", "ovs-conf", ""},
		iface{"vf", "sriov", "other-ns/sriov-net", ""},
	)
	g.Expect(env.Client.Create(context.Background(), vm)).To(Succeed())
	macs := vmMACs(vm)
	seen := map[string]bool{}
	for _, name := range []string{"default", "br", "vf"} {
		m, err := mac.Parse(macs[name])
		g.Expect(err).NotTo(HaveOccurred(), "interface %s must get a MAC", name)
		g.Expect(mac.DefaultRange.Contains(m) && !m.IsUniversal() && !m.IsMulticast()).To(BeTrue())
		g.Expect(seen[m.String()]).To(BeFalse())
		seen[m.String()] = true
		expectHeldBy(t, m.String(), "VirtualMachine", vm)
	}
	g.Expect(entryOf(g, mustMAC(macs["br"])).Network).To(Equal("ovs-conf"))
	g.Expect(entryOf(g, mustMAC(macs["br"])).Interface).To(Equal("br"))

	bridged := newVM(ns, "vm2", iface{"default", "bridge", "pod", ""})
	g.Expect(env.Client.Create(context.Background(), bridged)).To(Succeed())
	g.Expect(vmMACs(bridged)["default"]).To(BeEmpty(), "a bridged pod network keeps the pod's MAC")

	// A VM without template or interfaces passes untouched.
	empty := &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "empty"}, Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted)}}
	g.Expect(env.Client.Create(context.Background(), empty)).To(Succeed())
	g.Expect(empty.Spec.Template).To(BeNil())
}

// A MAC the user writes is reserved when free; refused when a pod holds it,
// when two interfaces ask for it, or when it is malformed or multicast.
func TestVMExplicitMACs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	holder := createPod(t, pod(ns, "holder", `[{"name":"a","mac":"02:dd:00:00:00:01"}]`))
	expectBound(t, mustMAC("02:dd:00:00:00:01"), holder)

	err := env.Client.Create(ctx, newVM(ns, "taken", iface{"br", "bridge", "ovs", "02:DD:00:00:00:01"}))
	g.Expect(err).To(MatchError(ContainSubstring("02:dd:00:00:00:01 is already in use by Pod " + ns + "/holder")))

	err = env.Client.Create(ctx, newVM(ns, "twice", iface{"a", "bridge", "ovs", "02:dd:00:00:00:02"}, iface{"b", "bridge", "ovs", "02:dd:00:00:00:02"}))
	g.Expect(err).To(MatchError(ContainSubstring("asked for by two interfaces of the same VirtualMachine")))
	err = env.Client.Create(ctx, newVM(ns, "garbage", iface{"a", "bridge", "ovs", "not-a-mac"}))
	g.Expect(err).To(MatchError(ContainSubstring(`interface a (network ovs): "not-a-mac" is not a MAC address`)))
	err = env.Client.Create(ctx, newVM(ns, "multicast", iface{"a", "bridge", "ovs", "01:00:5e:00:00:01"}))
	g.Expect(err).To(MatchError(ContainSubstring("multicast")))
	g.Expect(entryOf(g, mustMAC("02:dd:00:00:00:02"))).To(BeNil(), "refused VMs hold nothing")

	free := newVM(ns, "free", iface{"a", "bridge", "ovs", "00:50:56:00:00:01"}) // outside the range: reserved all the same
	g.Expect(env.Client.Create(ctx, free)).To(Succeed())
	expectHeldBy(t, "00:50:56:00:00:01", "VirtualMachine", free)
	err = env.Client.Create(ctx, pod(ns, "late", `[{"name":"a","mac":"00:50:56:00:00:01"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("already in use by VirtualMachine " + ns + "/free")))
}

// An update that omits MACs (a re-apply of the original manifest) keeps
// them; a new interface gets a new MAC; a removed interface's MAC is
// released once the update is persisted; deleting the VM releases the rest.
func TestVMUpdateKeepsAddsAndReleases(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	vm := newVM(ns, "vm", iface{"a", "bridge", "net-a", ""}, iface{"b", "bridge", "net-b", ""})
	g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	original := vmMACs(vm)
	expectHeldBy(t, original["a"], "VirtualMachine", vm)
	expectHeldBy(t, original["b"], "VirtualMachine", vm)

	// Re-apply without MACs.
	reapplied := getVM(g, vm)
	reapplied.Spec.Template.Spec = vmSpec(iface{"a", "bridge", "net-a", ""}, iface{"b", "bridge", "net-b", ""})
	g.Expect(env.Client.Update(ctx, reapplied)).To(Succeed())
	g.Expect(vmMACs(getVM(g, vm))).To(Equal(original))

	// Add c, remove b.
	changed := getVM(g, vm)
	changed.Spec.Template.Spec = vmSpec(iface{"a", "bridge", "net-a", ""}, iface{"c", "bridge", "net-c", ""})
	g.Expect(env.Client.Update(ctx, changed)).To(Succeed())
	now := vmMACs(getVM(g, vm))
	g.Expect(now["a"]).To(Equal(original["a"]))
	g.Expect(now["c"]).NotTo(BeEmpty())
	g.Expect(now["c"]).NotTo(Equal(original["b"]))
	expectHeldBy(t, now["c"], "VirtualMachine", vm)
	expectReleased(t, mustMAC(original["b"]))

	// An update asking for a MAC another object holds is refused, with an
	// event on the VM.
	holder := createPod(t, pod(ns, "holder", `[{"name":"a","mac":"02:ee:00:00:00:01"}]`))
	expectBound(t, mustMAC("02:ee:00:00:00:01"), holder)
	taken := getVM(g, vm)
	taken.Spec.Template.Spec = vmSpec(iface{"a", "bridge", "net-a", ""}, iface{"c", "bridge", "net-c", ""}, iface{"d", "bridge", "net-d", "02:ee:00:00:00:01"})
	g.Expect(env.Client.Update(ctx, taken)).To(MatchError(ContainSubstring("already in use by Pod " + ns + "/holder")))
	g.Eventually(func(g Gomega) {
		events := eventsAbout(g, ns, "vm", "MACAllocationRefused")
		g.Expect(events).NotTo(BeEmpty())
		g.Expect(events[0].Note).To(ContainSubstring("02:ee:00:00:00:01"))
	}).WithTimeout(10 * time.Second).Should(Succeed())

	g.Expect(env.Client.Delete(ctx, vm)).To(Succeed())
	expectReleased(t, mustMAC(now["a"]))
	expectReleased(t, mustMAC(now["c"]))
}

// A VM update that puts back a MAC the stored VM has just dropped races
// with the release of that MAC: the update's admission accepts the existing
// reservation, and until the update is stored the controller still sees a
// VM without the MAC. The acceptance (a renewal) makes the controller wait
// a grace period instead of freeing a MAC about to be carried again. Here
// the renewal comes first, then the VM is stored without the MAC, then the
// update that carries it again: the MAC is held throughout.
func TestVMMACPutBackWhileReleasing(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	vm := newVM(ns, "vm", iface{"a", "bridge", "net-a", ""}, iface{"b", "bridge", "net-b", ""})
	g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	b := vmMACs(vm)["b"]
	expectHeldBy(t, b, "VirtualMachine", vm)

	// The admission of the update that will carry b again accepts b.
	owner := v1alpha1.Owner{Kind: "VirtualMachine", Namespace: ns, Name: vm.Name, UID: vm.UID}
	book := &ledger.Ledger{Writer: env.Client, Live: env.Client, Log: testLogger()}
	res, err := pool.New(book, clock.RealClock{}).Reserve(ctx, pool.Request{Owner: owner, Slots: []pool.Slot{{Network: "net-b", Requested: mustMAC(b)}}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Written).To(BeEmpty(), "the VM's own entry is accepted and renewed")

	dropped := getVM(g, vm)
	dropped.Spec.Template.Spec = vmSpec(iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Update(ctx, dropped)).To(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(entryOf(g, mustMAC(b))).NotTo(BeNil(), "MAC %s freed while an accepted update is about to carry it", b)
	}).WithTimeout(testGrace / 2).WithPolling(100 * time.Millisecond).Should(Succeed())

	back := getVM(g, vm)
	back.Spec.Template.Spec = vmSpec(iface{"a", "bridge", "net-a", ""}, iface{"b", "bridge", "net-b", b})
	g.Expect(env.Client.Update(ctx, back)).To(Succeed())
	g.Consistently(func(g Gomega) {
		h := entryOf(g, mustMAC(b))
		g.Expect(h).NotTo(BeNil(), "MAC %s freed while the VM carries it", b)
		g.Expect(h.Owner.UID).To(Equal(vm.UID))
	}).WithTimeout(testGrace + 2*time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// An update refused by a later admission step does not release the MAC of
// the interface it would have removed: only persisted changes count.
func TestVMRefusedUpdateKeepsMAC(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	denyVMUpdates(t, "freeze")

	vm := newVM(ns, "vm", iface{"a", "bridge", "net-a", ""}, iface{"b", "bridge", "net-b", ""})
	g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	macs := vmMACs(vm)
	expectHeldBy(t, macs["b"], "VirtualMachine", vm)

	update := getVM(g, vm)
	update.Labels = map[string]string{"freeze": "true"}
	update.Spec.Template.Spec = vmSpec(iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Update(ctx, update)).To(MatchError(ContainSubstring("rejected by test policy")))

	g.Consistently(func(g Gomega) {
		h := entryOf(g, mustMAC(macs["b"]))
		g.Expect(h).NotTo(BeNil())
		g.Expect(h.Owner.Name).To(Equal(vm.Name))
	}).WithTimeout(testGrace + 2*time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	g.Expect(vmMACs(getVM(g, vm))).To(Equal(macs))
}

// Dry runs get MACs in the answer and reserve nothing, on create and update.
func TestVMDryRun(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	before := countEntries(g)

	vm := newVM(ns, "dry", iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(ctx, vm, client.DryRunAll)).To(Succeed())
	g.Expect(vmMACs(vm)["a"]).NotTo(BeEmpty())
	g.Expect(countEntries(g)).To(Equal(before))

	real := newVM(ns, "real", iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(ctx, real)).To(Succeed())
	expectHeldBy(t, vmMACs(real)["a"], "VirtualMachine", real)
	before = countEntries(g)
	update := getVM(g, real)
	update.Spec.Template.Spec = vmSpec(iface{"a", "bridge", "net-a", ""}, iface{"b", "bridge", "net-b", ""})
	g.Expect(env.Client.Update(ctx, update, client.DryRunAll)).To(Succeed())
	g.Expect(vmMACs(update)["b"]).NotTo(BeEmpty())
	g.Expect(vmMACs(update)["a"]).To(Equal(vmMACs(real)["a"]))
	g.Expect(countEntries(g)).To(Equal(before))
}

// A VirtualMachineInstance created directly gets MACs and holds them (one
// created by a VM: TestVMIOwnerClaimsAreChecked); virt-launcher pods never
// get a second MAC.
func TestVMIAndVirtLauncher(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "standalone"}, Spec: vmSpec(iface{"a", "bridge", "net-a", ""})}
	g.Expect(env.Client.Create(ctx, vmi)).To(Succeed())
	m := vmi.Spec.Domain.Devices.Interfaces[0].MacAddress
	g.Expect(m).NotTo(BeEmpty())
	expectHeldBy(t, m, "VirtualMachineInstance", vmi)

	owned := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "some-vm", UID: "0b6e8c4e-1111-2222-3333-444455556666", Controller: ptr.To(true),
		}}},
		Spec: vmSpec(iface{"a", "bridge", "net-a", ""}),
	}
	// Its VM does not exist: the reference is no more than a claim, and the
	// VMI gets a MAC of its own like any standalone VMI.
	g.Expect(env.Client.Create(ctx, owned)).To(Succeed())
	expectHeldBy(t, owned.Spec.Domain.Devices.Interfaces[0].MacAddress, "VirtualMachineInstance", owned)

	launcherOf := func(name, vmiName string, uid types.UID) *corev1.Pod {
		p := pod(ns, name, `[{"name":"net-a","namespace":"`+ns+`","mac":"`+m+`"}]`)
		p.Labels = map[string]string{"kubevirt.io": "virt-launcher"}
		if vmiName != "" {
			p.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: vmiName, UID: uid, Controller: ptr.To(true),
			}}
		}
		return p
	}
	launcher := createPod(t, launcherOf("virt-launcher-standalone-abcde", vmi.Name, vmi.UID))
	g.Expect(launcher.Annotations["k8s.v1.cni.cncf.io/networks"]).To(Equal(`[{"name":"net-a","namespace":"`+ns+`","mac":"`+m+`"}]`),
		"a virt-launcher pod is admitted unchanged")
	// The launcher carries the VMI's MAC, yet the VMI keeps holding it.
	g.Consistently(func(g Gomega) {
		g.Expect(entryOf(g, mustMAC(m)).Owner.Kind).To(Equal("VirtualMachineInstance"))
	}).WithTimeout(2 * time.Second).Should(Succeed())

	// The label alone does not make a launcher: such a pod is an ordinary
	// pod asking for a MAC the VMI holds, and is refused. Neither may a
	// launcher of another VMI carry it.
	err := env.Client.Create(ctx, launcherOf("labelled-only", "", ""))
	g.Expect(err).To(MatchError(And(ContainSubstring(m), ContainSubstring("VirtualMachineInstance "+ns+"/standalone"))))
	err = env.Client.Create(ctx, launcherOf("virt-launcher-ghost-abcde", "ghost", "0b6e8c4e-1111-2222-3333-777777777777"))
	g.Expect(err).To(MatchError(ContainSubstring("VirtualMachineInstance " + ns + "/ghost, which does not exist")))
	err = env.Client.Create(ctx, launcherOf("virt-launcher-stale-abcde", vmi.Name, "0b6e8c4e-1111-2222-3333-888888888888"))
	g.Expect(err).To(MatchError(ContainSubstring("that VMI's UID is " + string(vmi.UID))))
	// A launcher of a real VMI may carry only that VMI's MACs: not another
	// VMI's, and not a free MAC it would hold without a reservation.
	second := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "second"}, Spec: vmSpec(iface{"a", "bridge", "net-a", ""})}
	g.Expect(env.Client.Create(ctx, second)).To(Succeed())
	err = env.Client.Create(ctx, launcherOf("virt-launcher-second-abcde", second.Name, second.UID))
	g.Expect(err).To(MatchError(ContainSubstring("MAC address " + m + " is not a MAC of VirtualMachineInstance " + ns + "/second")))
	free := launcherOf("virt-launcher-second-fghij", second.Name, second.UID)
	free.Annotations["k8s.v1.cni.cncf.io/networks"] = `[{"name":"net-a","mac":"02:44:00:00:00:01"}]`
	g.Expect(env.Client.Create(ctx, free)).To(MatchError(ContainSubstring("is not a MAC of VirtualMachineInstance")))

	// The MAC stays held while the launcher pod still carries it (KubeVirt's
	// garbage collection removes it after the VMI; no controller manager
	// runs here, so the test does).
	g.Expect(env.Client.Delete(ctx, vmi)).To(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(entryOf(g, mustMAC(m))).NotTo(BeNil(), "released while the launcher pod still carries it")
	}).WithTimeout(2 * time.Second).Should(Succeed())
	g.Expect(env.Client.Delete(ctx, launcher)).To(Succeed())
	expectReleased(t, mustMAC(m))
}

// The VM namespace label is separate from the pod one.
func TestVMNamespaceLabel(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, map[string]string{"mutatevirtualmachines.kubemacpool.io": "ignore"})
	vm := newVM(ns, "vm", iface{"a", "bridge", "net-a", ""})
	g.Expect(env.Client.Create(context.Background(), vm)).To(Succeed())
	g.Expect(vmMACs(vm)["a"]).To(BeEmpty())
	p := createPod(t, pod(ns, "p", `[{"name":"a"}]`))
	g.Expect(macsOf(t, p)).To(HaveLen(1), "pods in the namespace are still served")
}

// Without the KubeVirt CRDs kubemacpool runs for pods alone; once they are
// installed, VMs are served and tracked without a restart.
func TestKubeVirtInstalledAfterStart(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	bare := ownControlPlane(t, testenv.Options{}, managerNamespace, "vms")
	startManagerOn(t, bare, optionsFor(t, bare))

	p := pod("vms", "p", `[{"name":"a"}]`)
	g.Expect(bare.Client.Create(ctx, p)).To(Succeed())
	g.Expect(macsOf(t, p)).To(HaveLen(1))

	// A MAC held for a VM before kubemacpool knows VMs must not be
	// released for want of a way to look at its owner.
	earlyMAC := mustMAC("02:ab:00:00:00:01")
	early := ledger.NewBlock(earlyMAC)
	ledger.Put(early, v1alpha1.MACBlockEntry{Offset: ledger.Offset(earlyMAC), MAC: earlyMAC.String(),
		Owner:    v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "vms", Name: "restored", UID: "4a1c0f3e-0000-4000-8000-000000000001"},
		Reserved: metav1.NewMicroTime(time.Now().Add(-time.Hour).Truncate(time.Microsecond))})
	g.Expect(bare.Client.Create(ctx, early)).To(Succeed())
	g.Consistently(func(g Gomega) {
		b := &v1alpha1.MACBlock{}
		g.Expect(bare.Client.Get(ctx, client.ObjectKeyFromObject(early), b)).To(Succeed())
		g.Expect(ledger.Find(b, ledger.Offset(earlyMAC))).NotTo(BeNil())
	}).WithTimeout(3 * time.Second).Should(Succeed())

	installCRDs(t, bare, "test/fixtures/crds/kubevirt.yaml")
	vm := newVM("vms", "vm", iface{"a", "bridge", "net-a", ""})
	g.Eventually(func() error { return bare.Client.Create(ctx, vm) }).WithTimeout(30 * time.Second).Should(Succeed())
	m := mustMAC(vmMACs(vm)["a"])
	// Tracked: bound to the VM, then released when it is deleted.
	g.Eventually(func(g Gomega) {
		var h *ledger.Entry
		for _, e := range allEntriesOn(g, bare.Client) {
			if e.MAC == m {
				h = &e
			}
		}
		g.Expect(h).NotTo(BeNil())
		g.Expect(h.Owner.Name).To(Equal(vm.Name))
		g.Expect(holders.Bound(h.Owner, carriedOn(g, bare.Client)[m])).To(BeTrue())
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(bare.Client.Delete(ctx, vm)).To(Succeed())
	g.Eventually(func(g Gomega) {
		for _, e := range allEntriesOn(g, bare.Client) {
			g.Expect(e.MAC).NotTo(Equal(m), "the deleted VM's MAC is still held")
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// denyVMUpdates refuses updates of VMs labelled label, after the webhook.
func denyVMUpdates(t testing.TB, label string) {
	t.Helper()
	ns := newNamespace(t, nil)
	probe := newVM(ns, "policy-probe", iface{"a", "bridge", "net-a", ""})
	if err := env.Client.Create(context.Background(), probe); err != nil {
		t.Fatalf("creating the probe VM: %v", err)
	}
	deny(t, label, "kubevirt.io", "virtualmachines", admissionregistrationv1.Update, func() error {
		p := &kubevirtv1.VirtualMachine{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(probe), p); err != nil {
			return err
		}
		p.Labels = map[string]string{label: "true"}
		return env.Client.Update(context.Background(), p, client.DryRunAll)
	})
}

// installCRDs installs CRD manifests (paths from the repository root) and
// waits until they are served.
func installCRDs(t testing.TB, e *testenv.Env, paths ...string) {
	t.Helper()
	var full []string
	for _, p := range paths {
		full = append(full, e.Root+"/"+p)
	}
	if _, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: full, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("installing CRDs: %v", err)
	}
}
