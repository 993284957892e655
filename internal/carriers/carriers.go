// Package carriers knows which MACs the objects of the cluster carry, and
// keeps an index of them on every replica. What objects carry is the truth
// kubemacpool is built on: a MAC is held when a reservation holds it or any
// object carries it, in any namespace, managed by kubemacpool or not (a pod
// in an ignored namespace still shares the L2 network), so the pool never
// picks a carried MAC and the controller never frees one.
//
// The parsing of each kind lives here, next to the cache transform that
// keeps only its results (Cached).
package carriers

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/internal/intern"
	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// Kinds of objects that carry MACs.
const (
	Pod                    = "Pod"
	VirtualMachine         = "VirtualMachine"
	VirtualMachineInstance = "VirtualMachineInstance"
)

// Ref names one object.
type Ref struct {
	Kind      string
	Namespace string
	Name      string
	// UID is empty when unknown (a VMI reference without one, say).
	UID types.UID
}

func (r Ref) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// Reference is r as an event's regarding object: a pod, a KubeVirt object,
// or a StatefulSet (the owner of an ordinal's MACs).
func (r Ref) Reference() *corev1.ObjectReference {
	apiVersion := kubevirtv1.SchemeGroupVersion.String()
	switch r.Kind {
	case Pod:
		apiVersion = "v1"
	case "StatefulSet":
		apiVersion = appsv1.SchemeGroupVersion.String()
	}
	return &corev1.ObjectReference{APIVersion: apiVersion, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, UID: r.UID}
}

// Is reports whether r names the object kind namespace/name with uid: the
// same kind and name, and the same UID when both are known (an object
// being created has none yet).
func (r Ref) Is(kind, namespace, name string, uid types.UID) bool {
	return name != "" && r.Kind == kind && r.Namespace == namespace && r.Name == name &&
		(uid == "" || r.UID == "" || r.UID == uid)
}

// Carrier is one MAC that one object carries.
type Carrier struct {
	MAC    mac.MAC
	Object Ref
	// For is the object the MAC is carried on behalf of: the object itself,
	// except for a VMI created by a VM (its VM) and a virt-launcher pod
	// (its VMI, and through it that VMI's VM). What an object claims is
	// checked by the index (Index.Resolve) before anyone sees it.
	For Ref
	// ForReceiver says For is a VM waiting as the receiver of a
	// decentralized live migration (runStrategy WaitAsReceiver): it carries
	// the MACs of its source VM, which may be in any namespace.
	ForReceiver bool
	Network     string
	Interface   string
	// Created is the carrying object's creation time: the oldest carrier
	// of a MAC is the one it is adopted for.
	Created time.Time
}

// MaxCarried is the most MACs one object is taken to carry: the first
// MaxCarried of its annotation or interfaces. Pods and VMs outside the
// namespaces kubemacpool serves are not checked by its webhook, and every
// replica indexes them: one annotation of 256 KiB could list 6,000 MACs,
// and a few thousand such pods would exhaust every replica's memory. No
// Multus pod or KubeVirt VM sets up that many interfaces; --max-interfaces
// may not exceed it, so nothing kubemacpool admits is ever cut short. What
// is left out is counted (kmp_carried_macs_ignored).
const MaxCarried = 256

// capped is the first MaxCarried of cs, in a list of its own (a slice of
// the whole would keep all of it in memory), and how many were left out.
func capped(cs []Carrier) ([]Carrier, int) {
	if len(cs) <= MaxCarried {
		return cs, 0
	}
	out := make([]Carrier, MaxCarried)
	copy(out, cs)
	return out, len(cs) - MaxCarried
}

// OfPod lists the MACs a pod's Multus networks annotation carries (at most
// MaxCarried): those Multus applies, read as Multus reads the annotation,
// and never fewer than kubemacpool's own parser reads (see requests). An
// annotation that neither reads carries nothing, and values that are not
// 48-bit MACs are skipped.
func OfPod(pod *corev1.Pod) []Carrier {
	cs, _ := capped(ofPod(pod))
	return cs
}

func ofPod(pod *corev1.Pod) []Carrier {
	value := pod.Annotations[multus.NetworksAnnotation]
	if value == "" {
		return nil
	}
	rs := requests(value, pod.Namespace)
	if len(rs) == 0 {
		return nil
	}
	self := Ref{Kind: Pod, Namespace: intern.String(pod.Namespace), Name: pod.Name, UID: pod.UID}
	forRef := self
	if vmi, ok := kubevirt.LauncherOf(pod); ok {
		forRef = Ref{Kind: VirtualMachineInstance, Namespace: self.Namespace, Name: vmi.Name, UID: vmi.UID}
	}
	out := make([]Carrier, 0, len(rs))
	for _, r := range rs {
		out = append(out, Carrier{MAC: r.mac, Object: self, For: forRef, Network: intern.String(r.network),
			Interface: intern.String(r.iface), Created: pod.CreationTimestamp.Time})
	}
	return out
}

// OfVM lists the MACs in the interfaces of a VM's template that
// kubemacpool manages (kubevirt.ManagedInterfaces), at most MaxCarried.
func OfVM(vm *kubevirtv1.VirtualMachine) []Carrier {
	cs, _ := capped(ofVM(vm))
	return cs
}

func ofVM(vm *kubevirtv1.VirtualMachine) []Carrier {
	self := Ref{Kind: VirtualMachine, Namespace: intern.String(vm.Namespace), Name: vm.Name, UID: vm.UID}
	out := ofSpec(kubevirt.VMSpec(vm), self, self, vm.CreationTimestamp.Time)
	if kubevirt.IsMigrationReceiver(vm) {
		for i := range out {
			out[i].ForReceiver = true
		}
	}
	return out
}

// OfVMI lists the MACs of a VMI's managed interfaces: those in its spec and
// those its status reports for them, at most MaxCarried. A running VMI
// keeps the MACs it was started with until a restart, whatever its VM's
// template says now, and its status shows what the guest's interfaces
// actually use.
func OfVMI(vmi *kubevirtv1.VirtualMachineInstance) []Carrier {
	cs, _ := capped(ofVMI(vmi))
	return cs
}

func ofVMI(vmi *kubevirtv1.VirtualMachineInstance) []Carrier {
	self := Ref{Kind: VirtualMachineInstance, Namespace: intern.String(vmi.Namespace), Name: vmi.Name, UID: vmi.UID}
	forRef := self
	if vm, ok := kubevirt.ControllingVM(vmi); ok {
		forRef = Ref{Kind: VirtualMachine, Namespace: self.Namespace, Name: vm.Name, UID: vm.UID}
	}
	out := ofSpec(&vmi.Spec, self, forRef, vmi.CreationTimestamp.Time)
	managed := map[string]kubevirt.Managed{}
	for _, m := range kubevirt.ManagedInterfaces(&vmi.Spec) {
		managed[m.Interface] = m
	}
	seen := map[mac.MAC]bool{}
	for _, c := range out {
		seen[c.MAC] = true
	}
	for _, s := range vmi.Status.Interfaces {
		iface, ok := managed[s.Name]
		if !ok {
			continue
		}
		m, err := mac.Parse(s.MAC)
		if err != nil || seen[m] {
			continue
		}
		seen[m] = true
		out = append(out, Carrier{MAC: m, Object: self, For: forRef, Network: intern.String(iface.Network), Interface: intern.String(iface.Interface),
			Created: vmi.CreationTimestamp.Time})
	}
	return out
}

func ofSpec(spec *kubevirtv1.VirtualMachineInstanceSpec, self, forRef Ref, created time.Time) []Carrier {
	var out []Carrier
	for _, m := range kubevirt.ManagedInterfaces(spec) {
		parsed, err := mac.Parse(m.MAC)
		if err != nil {
			continue
		}
		out = append(out, Carrier{MAC: parsed, Object: self, For: forRef, Network: intern.String(m.Network), Interface: intern.String(m.Interface), Created: created})
	}
	return out
}

// Of lists what obj carries, for the kinds above and what the cache holds
// of them (Cached); nil for anything else.
func Of(obj any) []Carrier {
	switch o := obj.(type) {
	case *Cached:
		return o.Carried
	case *corev1.Pod:
		return OfPod(o)
	case *kubevirtv1.VirtualMachine:
		return OfVM(o)
	case *kubevirtv1.VirtualMachineInstance:
		return OfVMI(o)
	}
	return nil
}
