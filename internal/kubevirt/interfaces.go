// Package kubevirt knows which interfaces of a KubeVirt VM get MACs from
// kubemacpool, shared by the webhook that writes them and the controller
// that tracks them.
package kubevirt

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// Group is KubeVirt's API group.
const Group = "kubevirt.io"

// Managed is one interface kubemacpool gives a MAC to.
type Managed struct {
	// Index of the interface in domain.devices.interfaces.
	Index int
	// Interface is the interface's name.
	Interface string
	// Network is the Multus network name ("ns/name" or "name"), or "pod".
	Network string
	// MAC is what the interface carries now ("" when none).
	MAC string
	// Masquerade: the pod network, bound with masquerade.
	Masquerade bool
}

// ManagedInterfaces lists the interfaces of spec that get MACs:
//   - every interface on a Multus network, whatever its binding: the MAC is
//     seen on a shared L2 segment, where it must be unique;
//   - the pod network bound with masquerade: the guest's MAC sits behind
//     NAT, but it survives restarts only if it is written into the spec.
//
// Other interfaces on the pod network (bridge, passt, slirp, binding
// plugins) take the MAC of the pod's interface, which the pod network's own
// IPAM owns; writing one there would fight it.
func ManagedInterfaces(spec *kubevirtv1.VirtualMachineInstanceSpec) []Managed {
	if spec == nil {
		return nil
	}
	networks := map[string]kubevirtv1.Network{}
	for _, n := range spec.Networks {
		networks[n.Name] = n
	}
	var out []Managed
	for i, iface := range spec.Domain.Devices.Interfaces {
		n, ok := networks[iface.Name]
		if !ok {
			continue // KubeVirt refuses such a VM; nothing for us to do
		}
		switch {
		case n.Multus != nil:
			out = append(out, Managed{Index: i, Interface: iface.Name, Network: n.Multus.NetworkName, MAC: iface.MacAddress})
		case n.Pod != nil && iface.Masquerade != nil:
			out = append(out, Managed{Index: i, Interface: iface.Name, Network: "pod", MAC: iface.MacAddress, Masquerade: true})
		}
	}
	return out
}

// VMSpec returns the instance spec of a VM's template, or nil.
func VMSpec(vm *kubevirtv1.VirtualMachine) *kubevirtv1.VirtualMachineInstanceSpec {
	if vm.Spec.Template == nil {
		return nil
	}
	return &vm.Spec.Template.Spec
}

// ControllingVM returns the reference to the VirtualMachine that claims to
// have created vmi: a controller reference to KubeVirt's VirtualMachine
// kind. A reference is only a claim (anyone can write one): whoever relies
// on it checks that the VM exists with that UID and that the VMI's MACs are
// the VM's.
func ControllingVM(vmi *kubevirtv1.VirtualMachineInstance) (metav1.OwnerReference, bool) {
	for _, ref := range vmi.OwnerReferences {
		if ref.Kind == "VirtualMachine" && ref.Controller != nil && *ref.Controller &&
			strings.HasPrefix(ref.APIVersion, Group+"/") {
			return ref, true
		}
	}
	return metav1.OwnerReference{}, false
}

// IsMigrationReceiver reports whether vm waits to receive a decentralized
// live migration (runStrategy WaitAsReceiver): KubeVirt's receiving VM, in
// another namespace or cluster, carries the MACs of the source VM.
func IsMigrationReceiver(vm *kubevirtv1.VirtualMachine) bool {
	return vm.Spec.RunStrategy != nil && *vm.Spec.RunStrategy == kubevirtv1.RunStrategyWaitAsReceiver
}

// LauncherLabel is the label KubeVirt puts on its pods ("virt-launcher" on
// the pod a VMI runs in).
const LauncherLabel = "kubevirt.io"

// LauncherOf returns the reference to the VirtualMachineInstance whose
// virt-launcher pod this is: the pod KubeVirt runs a VM in. It carries the
// MACs of that VMI (held by the VMI, or by the VM that owns it), so the pod
// webhook must not give it more, nor count it as a holder. Both marks are
// required, the label and a controller reference to a VMI; both are
// writable by any user, so the webhook also checks the VMI exists and that
// the pod carries only its MACs.
func LauncherOf(pod metav1.Object) (metav1.OwnerReference, bool) {
	if pod.GetLabels()[LauncherLabel] != "virt-launcher" {
		return metav1.OwnerReference{}, false
	}
	for _, ref := range pod.GetOwnerReferences() {
		if ref.Kind == "VirtualMachineInstance" && ref.Controller != nil && *ref.Controller &&
			strings.HasPrefix(ref.APIVersion, Group+"/") {
			return ref, true
		}
	}
	return metav1.OwnerReference{}, false
}

// Served reports whether the API server serves KubeVirt's VirtualMachine
// and VirtualMachineInstance kinds.
func Served(mapper meta.RESTMapper) bool {
	for _, kind := range []string{"VirtualMachine", "VirtualMachineInstance"} {
		if _, err := mapper.RESTMapping(schema.GroupKind{Group: Group, Kind: kind}, "v1"); err != nil {
			return false
		}
	}
	return true
}
