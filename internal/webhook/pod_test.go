package webhook

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

func TestHeldForVMI(t *testing.T) {
	vmi := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: "rs-x7k2p", UID: "vmi-uid",
		OwnerReferences: []metav1.OwnerReference{{Kind: "VirtualMachine", Name: "vm", UID: "vm-uid", Controller: ptr.To(true)}},
	}}
	cases := []struct {
		name  string
		owner v1alpha1.Owner
		want  bool
	}{
		{"the VMI, bound", v1alpha1.Owner{Kind: "VirtualMachineInstance", Namespace: "ns", Name: "rs-x7k2p", UID: "vmi-uid"}, true},
		{"a VMI of the same name, bound to another UID", v1alpha1.Owner{Kind: "VirtualMachineInstance", Namespace: "ns", Name: "rs-x7k2p", UID: "old-uid"}, false},
		{"the VMI, reserved by name", v1alpha1.Owner{Kind: "VirtualMachineInstance", Namespace: "ns", Name: "rs-x7k2p"}, true},
		{"the VMI of a replica set, reserved by generateName", v1alpha1.Owner{Kind: "VirtualMachineInstance", Namespace: "ns", GenerateName: "rs-"}, true},
		{"another generateName", v1alpha1.Owner{Kind: "VirtualMachineInstance", Namespace: "ns", GenerateName: "other-"}, false},
		{"the owning VM, bound", v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "vm-uid"}, true},
		{"the owning VM, reserved", v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}, true},
		{"a VM of that name with another UID", v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "other"}, false},
		{"another namespace", v1alpha1.Owner{Kind: "VirtualMachineInstance", Namespace: "elsewhere", Name: "rs-x7k2p"}, false},
		{"a pod", v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "rs-x7k2p"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := heldForVMI(c.owner, vmi); got != c.want {
				t.Errorf("heldForVMI = %v, want %v", got, c.want)
			}
		})
	}
}

func TestPodSlots(t *testing.T) {
	parse := func(value string) []multus.Element {
		t.Helper()
		elems, err := multus.Parse(value, "ns")
		if err != nil {
			t.Fatal(err)
		}
		return elems
	}
	old := parse(`[{"name":"a","mac":"02:00:00:00:00:01"},{"name":"a","mac":"02:00:00:00:00:02"},{"name":"b","interface":"x","mac":"02:00:00:00:00:03"}]`)
	cases := []struct {
		name string
		now  string
		want []slot
	}{
		{"create: nothing kept", `[{"name":"a"}]`, []slot{{Network: "ns/a"}}},
		{"networks that omit their MAC get theirs back, in order", `[{"name":"a"},{"name":"a"},{"name":"b","interface":"x"}]`, []slot{
			{Network: "ns/a", Requested: "02:00:00:00:00:01", Held: true},
			{Network: "ns/a", Requested: "02:00:00:00:00:02", Held: true},
			{Network: "ns/b", Interface: "x", Requested: "02:00:00:00:00:03", Held: true},
		}},
		{"a MAC named elsewhere is not restored twice", `[{"name":"a"},{"name":"c","mac":"02:00:00:00:00:01"}]`, []slot{
			{Network: "ns/a", Requested: "02:00:00:00:00:02", Held: true},
			{Network: "ns/c", Requested: "02:00:00:00:00:01", Held: true},
		}},
		{"another interface name is another network", `[{"name":"b","interface":"y"}]`, []slot{{Network: "ns/b", Interface: "y"}}},
		{"a new explicit MAC is claimed", `[{"name":"d","mac":"02:00:00:00:00:09"}]`, []slot{{Network: "ns/d", Requested: "02:00:00:00:00:09"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before []multus.Element
			if c.name != "create: nothing kept" {
				before = old
			}
			got := podSlots(parse(c.now), before)
			if len(got) != len(c.want) {
				t.Fatalf("podSlots = %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("slot %d = %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}
