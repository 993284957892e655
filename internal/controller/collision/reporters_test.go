package collision

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

const shared = "02:00:00:00:00:07"

func runningPod(name string, launcherOf *kubevirtv1.VirtualMachineInstance, networks, status string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name),
		Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": networks, NetworkStatusAnnotation: status}}}
	p.Status.Phase = corev1.PodRunning
	if launcherOf != nil {
		p.Labels = map[string]string{"kubevirt.io": "virt-launcher"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance",
			Name: launcherOf.Name, UID: launcherOf.UID, Controller: ptr.To(true)}}
	}
	return p
}

// runningVMI reports shared on one interface, bound as binding says.
func runningVMI(name, binding string) *kubevirtv1.VirtualMachineInstance {
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}}
	iface := kubevirtv1.Interface{Name: "net"}
	network := kubevirtv1.Network{Name: "net"}
	switch binding {
	case "multus":
		iface.Bridge = &kubevirtv1.InterfaceBridge{}
		network.Multus = &kubevirtv1.MultusNetwork{NetworkName: "ovs"}
	case "masquerade":
		iface.Masquerade = &kubevirtv1.InterfaceMasquerade{}
		network.Pod = &kubevirtv1.PodNetwork{}
	case "plugin": // e.g. OVN's l2bridge on a primary user-defined network
		iface.Binding = &kubevirtv1.PluginBinding{Name: "l2bridge"}
		network.Pod = &kubevirtv1.PodNetwork{}
	}
	vmi.Spec.Domain.Devices.Interfaces = []kubevirtv1.Interface{iface}
	vmi.Spec.Networks = []kubevirtv1.Network{network}
	vmi.Status.Phase = kubevirtv1.Running
	vmi.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{Name: "net", MAC: shared}}
	return vmi
}

func TestColliding(t *testing.T) {
	vmi := runningVMI("vm", "multus")
	networks := `[{"name":"ovs","mac":"` + shared + `"}]`
	status := `[{"name":"cbr0","mac":"0a:58:0a:f4:00:01","default":true},{"name":"ns/ovs","interface":"net1","mac":"` + shared + `"}]`
	other := runningVMI("other", "multus")
	other.UID = "uid-other"
	cases := []struct {
		name    string
		objects []any
		collide []string
	}{
		{"two VMIs on a Multus network", []any{vmi, runningVMI("vm2", "multus")}, []string{"vm", "vm2"}},
		{"two VMIs on the masqueraded pod network", []any{runningVMI("a", "masquerade"), runningVMI("b", "masquerade")}, []string{"a", "b"}},
		{"two VMIs reporting OVN's pod-network MAC", []any{runningVMI("a", "plugin"), runningVMI("b", "plugin")}, nil},
		{"a VMI and its launcher pod", []any{vmi, runningPod("virt-launcher-vm-a", vmi, networks, status)}, nil},
		{"a VMI and both launcher pods of a migration", []any{vmi, runningPod("virt-launcher-vm-a", vmi, networks, status), runningPod("virt-launcher-vm-b", vmi, networks, status)}, nil},
		{"a pod claiming to be another VMI's launcher", []any{vmi, other, runningPod("virt-launcher-fake", other, networks, status)},
			[]string{"vm", "other", "virt-launcher-fake"}},
		{"a pod claiming a VMI that does not report the MAC", []any{vmi, runningPod("fake", &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: "ghost", UID: "g"}}, networks, status)},
			[]string{"vm", "fake"}},
		{"a pod and a VMI", []any{vmi, runningPod("p", nil, networks, status)}, []string{"vm", "p"}},
		{"a pod reporting a network it did not ask for", []any{vmi, runningPod("p", nil, `[{"name":"other-net"}]`, status)}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var reporters []Reporter
			for _, o := range c.objects {
				var r Reporter
				var ok bool
				switch o := o.(type) {
				case *corev1.Pod:
					r, ok = FromPod(o)
				case *kubevirtv1.VirtualMachineInstance:
					r, ok = FromVMI(o)
				}
				if ok {
					reporters = append(reporters, r)
				}
			}
			m, err := mac.Parse(shared)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, r := range Find(reporters)[m] {
				got[r.Name] = true
			}
			if len(got) != len(c.collide) {
				t.Fatalf("colliding %v, want %v", got, c.collide)
			}
			for _, n := range c.collide {
				if !got[n] {
					t.Fatalf("colliding %v, want %v", got, c.collide)
				}
			}
		})
	}
}
