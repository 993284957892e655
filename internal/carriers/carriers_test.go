package carriers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

func mustMAC(t *testing.T, s string) mac.MAC {
	t.Helper()
	m, err := mac.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestOfPod(t *testing.T) {
	for _, tc := range []struct {
		name     string
		networks string
		launcher bool
		want     []string // MAC@network
		wantFor  string
	}{
		{name: "no annotation"},
		{name: "unparsable", networks: `[{"name":`},
		{name: "json list, one without MAC", networks: `[{"name":"a","mac":"02:00:00:00:00:01"},{"name":"b"}]`,
			want: []string{"02:00:00:00:00:01@ns/a"}, wantFor: "Pod ns/p"},
		{name: "not a MAC is skipped", networks: `[{"name":"a","mac":"nope"},{"namespace":"o","name":"b","mac":"02-00-00-00-00-02"}]`,
			want: []string{"02:00:00:00:00:02@o/b"}, wantFor: "Pod ns/p"},
		{name: "launcher pod carries for its VMI", networks: `[{"name":"a","mac":"02:00:00:00:00:03"}]`, launcher: true,
			want: []string{"02:00:00:00:00:03@ns/a"}, wantFor: "VirtualMachineInstance ns/vmi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u"}}
			if tc.networks != "" {
				p.Annotations = map[string]string{"k8s.v1.cni.cncf.io/networks": tc.networks}
			}
			if tc.launcher {
				p.Labels = map[string]string{"kubevirt.io": "virt-launcher"}
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: "vmi", UID: "v", Controller: ptr.To(true)}}
			}
			got := OfPod(p)
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i, c := range got {
				if s := c.MAC.String() + "@" + c.Network; s != tc.want[i] {
					t.Errorf("carrier %d: got %s, want %s", i, s, tc.want[i])
				}
				if c.For.String() != tc.wantFor || c.Object.String() != "Pod ns/p" {
					t.Errorf("carrier %d: object %s for %s, want Pod ns/p for %s", i, c.Object, c.For, tc.wantFor)
				}
			}
		})
	}
}

func vmiWith(owned bool, specMAC, statusMAC string) *kubevirtv1.VirtualMachineInstance {
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "vm", UID: "i"}}
	if owned {
		vmi.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: "vm", UID: "m", Controller: ptr.To(true)}}
	}
	vmi.Spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{
		{Name: "a", MacAddress: specMAC, InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}},
		{Name: "default", MacAddress: "02:00:00:00:00:99", InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}}},
	}
	vmi.Spec.Networks = []kubevirtv1.Network{
		{Name: "a", NetworkSource: kubevirtv1.NetworkSource{Multus: &kubevirtv1.MultusNetwork{NetworkName: "net-a"}}},
		{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}},
	}
	vmi.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{
		{Name: "a", MAC: statusMAC},
		{Name: "default", MAC: "0a:58:0a:f4:00:05"}, // the pod network's own: not ours
	}
	return vmi
}

func TestOfVMI(t *testing.T) {
	// A VM's VMI carries for the VM; the status adds the MAC in use when it
	// differs from the spec; the bridged pod network is not kubemacpool's.
	got := OfVMI(vmiWith(true, "02:00:00:00:00:01", "02:00:00:00:00:02"))
	if len(got) != 2 || got[0].MAC != mustMAC(t, "02:00:00:00:00:01") || got[1].MAC != mustMAC(t, "02:00:00:00:00:02") {
		t.Fatalf("got %v", got)
	}
	for _, c := range got {
		if c.For != (Ref{Kind: VirtualMachine, Namespace: "ns", Name: "vm", UID: "m"}) || c.Network != "net-a" {
			t.Errorf("carrier %v: want it carried for VirtualMachine ns/vm on net-a", c)
		}
	}
	standalone := OfVMI(vmiWith(false, "02:00:00:00:00:01", "02:00:00:00:00:01"))
	if len(standalone) != 1 || standalone[0].For != standalone[0].Object {
		t.Fatalf("a standalone VMI carries its one MAC for itself, got %v", standalone)
	}
}

func TestIndex(t *testing.T) {
	// The callback is told of every change of a MAC's carriers; what must
	// hold is the order of its carried / not carried transitions.
	var changes []string
	state := map[mac.MAC]bool{}
	calls := 0
	ix := NewIndex(func(m mac.MAC, carried bool) {
		calls++
		if state[m] != carried {
			state[m] = carried
			changes = append(changes, map[bool]string{true: "+", false: "-"}[carried]+m.String())
		}
	})
	m1, m2 := mustMAC(t, "02:00:00:00:00:01"), mustMAC(t, "02:00:00:00:00:02")
	t0 := time.Unix(1000, 0)
	vm := Ref{Kind: VirtualMachine, Namespace: "ns", Name: "vm", UID: "m"}
	vmiRef := Ref{Kind: VirtualMachineInstance, Namespace: "ns", Name: "vm", UID: "i"}
	podRef := Ref{Kind: Pod, Namespace: "ns", Name: "virt-launcher-vm-x", UID: "p"}

	ix.Set(VirtualMachine, "ns", "vm", []Carrier{{MAC: m1, Object: vm, For: vm, Created: t0}})
	ix.Set(VirtualMachineInstance, "ns", "vm", []Carrier{{MAC: m1, Object: vmiRef, For: vm, Created: t0.Add(time.Second)}})
	ix.Set(Pod, "ns", podRef.Name, []Carrier{{MAC: m1, Object: podRef, For: vmiRef, Created: t0.Add(2 * time.Second)}})

	of := ix.Of(m1)
	if len(of) != 3 || of[0].Object != vm || of[1].Object != vmiRef || of[2].Object != podRef {
		t.Fatalf("want VM, VMI, pod oldest first, got %v", of)
	}
	if of[2].For != vm {
		t.Errorf("the launcher pod's MAC resolves to the VM through its VMI, got %v", of[2].For)
	}
	// Re-setting what an object carries, or moving it to another MAC, never
	// makes a kept MAC look uncarried.
	ix.Set(VirtualMachine, "ns", "vm", []Carrier{{MAC: m1, Object: vm, For: vm, Created: t0}, {MAC: m2, Object: vm, For: vm, Created: t0}})
	ix.Set(VirtualMachine, "ns", "vm", []Carrier{{MAC: m2, Object: vm, For: vm, Created: t0}})
	ix.Delete(VirtualMachineInstance, "ns", "vm")
	if !ix.Carried(m1) {
		t.Fatal("the launcher pod still carries m1")
	}
	if r := ix.Of(m1)[0].For; r != podRef {
		t.Errorf("with the VMI gone the launcher's claim no longer holds: it carries m1 for itself, got %v", r)
	}
	ix.Delete(Pod, "ns", podRef.Name)
	ix.Delete(VirtualMachine, "ns", "vm")
	want := []string{"+02:00:00:00:00:01", "+02:00:00:00:00:02", "-02:00:00:00:00:01", "-02:00:00:00:00:02"}
	if len(changes) != len(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("changes %v, want %v", changes, want)
		}
	}
	if calls <= len(want) {
		t.Errorf("%d calls: a second carrier of a carried MAC must be told too", calls)
	}
	if ix.Len() != 0 {
		t.Errorf("index not empty: %v", ix.MACs())
	}
}

// What an object claims (a VMI's VM, a launcher pod's VMI) is believed only
// while the index holds it: the claimed object exists with the UID of the
// reference and, for a launcher, its VMI carries the same MAC.
func TestIndexChecksClaims(t *testing.T) {
	ix := NewIndex(nil)
	m1, m2 := mustMAC(t, "02:00:00:00:00:01"), mustMAC(t, "02:00:00:00:00:02")
	vm := Ref{Kind: VirtualMachine, Namespace: "ns", Name: "vm", UID: "m"}
	impostorVM := Ref{Kind: VirtualMachine, Namespace: "ns", Name: "vm", UID: "not-m"}
	vmi := Ref{Kind: VirtualMachineInstance, Namespace: "ns", Name: "vm", UID: "i"}
	forged := Ref{Kind: VirtualMachineInstance, Namespace: "ns", Name: "forged", UID: "f"}
	pod := Ref{Kind: Pod, Namespace: "ns", Name: "virt-launcher-vm-x", UID: "p"}

	ix.Set(VirtualMachine, "ns", "vm", []Carrier{{MAC: m1, Object: vm, For: vm, ForReceiver: true}})
	ix.Set(VirtualMachineInstance, "ns", "vm", []Carrier{{MAC: m1, Object: vmi, For: vm}})
	ix.Set(VirtualMachineInstance, "ns", "forged", []Carrier{{MAC: m2, Object: forged, For: impostorVM}})
	// The launcher carries its VMI's MAC, and one its VMI does not carry.
	ix.Set(Pod, "ns", pod.Name, []Carrier{{MAC: m1, Object: pod, For: vmi}, {MAC: m2, Object: pod, For: vmi}})

	for _, c := range ix.Of(m1) {
		if c.For != vm || !c.ForReceiver {
			t.Errorf("%s carries m1 for %v (receiver %v), want the VM, a migration receiver", c.Object, c.For, c.ForReceiver)
		}
	}
	for _, c := range ix.Of(m2) {
		if c.For != c.Object || c.ForReceiver {
			t.Errorf("%s carries m2 for %v: a claim that does not hold must make it carry the MAC for itself", c.Object, c.For)
		}
	}
	// The VM re-created under its name (a new UID) is not the VMI's VM:
	// the VMI carries m1 for itself, and its launcher for the VMI.
	ix.Set(VirtualMachine, "ns", "vm", []Carrier{{MAC: m1, Object: impostorVM, For: impostorVM}})
	want := map[Ref]Ref{impostorVM: impostorVM, vmi: vmi, pod: vmi}
	for _, c := range ix.Of(m1) {
		if c.For != want[c.Object] || c.ForReceiver {
			t.Errorf("%s carries m1 for %v (receiver %v) after its VM was replaced, want %v", c.Object, c.For, c.ForReceiver, want[c.Object])
		}
	}
}

// A VMI keeps a MAC its VM's template has dropped while the VM runs: that
// MAC is still the VM's as long as the ledger holds it for the VM.
func TestIndexAsksTheLedgerForDroppedMACs(t *testing.T) {
	ix := NewIndex(nil)
	kept, dropped := mustMAC(t, "02:00:00:00:00:01"), mustMAC(t, "02:00:00:00:00:02")
	vm := Ref{Kind: VirtualMachine, Namespace: "ns", Name: "vm", UID: "m"}
	vmi := Ref{Kind: VirtualMachineInstance, Namespace: "ns", Name: "vm", UID: "i"}
	ix.Set(VirtualMachine, "ns", "vm", []Carrier{{MAC: kept, Object: vm, For: vm}})
	ix.Set(VirtualMachineInstance, "ns", "vm", []Carrier{{MAC: kept, Object: vmi, For: vm}, {MAC: dropped, Object: vmi, For: vm}})

	if c := ix.Of(dropped)[0]; c.For != vmi {
		t.Fatalf("without a ledger entry the dropped MAC is the VMI's own, got %v", c.For)
	}
	heldForVM := true
	ix.CheckHeldWith(func(m mac.MAC, owner Ref) bool { return heldForVM && m == dropped && owner == vm })
	if c := ix.Of(dropped)[0]; c.For != vm {
		t.Fatalf("held for the VM, the dropped MAC is the VM's, got %v", c.For)
	}
	heldForVM = false
	if c := ix.Of(dropped)[0]; c.For != vmi {
		t.Fatalf("released, the dropped MAC is the VMI's own, got %v", c.For)
	}
}
