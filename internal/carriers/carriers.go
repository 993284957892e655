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
	"slices"
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

// Carries is what one object carries, as the cache and the index keep it.
// Every MAC an object carries shares the object, whom it is carried for
// and when the object was created; only the MAC and what it serves
// differ. Every replica indexes every carried MAC, and a Carrier is 200
// bytes: keeping what they share once per object rather than once per MAC
// is some 10 MB of every replica at 100,000 carried MACs (issue 24).
type Carries struct {
	Object Ref
	// For is whom the MACs are carried for, when not the object itself
	// (nil): see Carrier.For.
	For         *Ref
	ForReceiver bool
	created     unixNano // the object's creation time (Carrier.Created)
	MACs        []CarriedMAC
}

// CarriedMAC is one MAC of an object's Carries.
type CarriedMAC struct {
	MAC       mac.MAC
	Network   string
	Interface string
}

// Len is how many MACs cs lists (nil: none).
func (cs *Carries) Len() int {
	if cs == nil {
		return 0
	}
	return len(cs.MACs)
}

// At is the carrier of cs's MAC i.
func (cs *Carries) At(i int) Carrier {
	forRef := cs.Object
	if cs.For != nil {
		forRef = *cs.For
	}
	m := &cs.MACs[i]
	return Carrier{MAC: m.MAC, Object: cs.Object, For: forRef, ForReceiver: cs.ForReceiver,
		Network: m.Network, Interface: m.Interface, Created: cs.created.Time()}
}

// List is every carrier of cs, in order (nil: none).
func (cs *Carries) List() []Carrier {
	if cs.Len() == 0 {
		return nil
	}
	out := make([]Carrier, len(cs.MACs))
	for i := range cs.MACs {
		out[i] = cs.At(i)
	}
	return out
}

// Pack is list as one object's Carries (nil when it is empty). The
// carriers of one object share Object, For, ForReceiver and Created, as
// the Of functions make them; Pack takes those of the first.
func Pack(list []Carrier) *Carries {
	if len(list) == 0 {
		return nil
	}
	first := &list[0]
	cs := &Carries{Object: first.Object, ForReceiver: first.ForReceiver, created: unixNanoOf(first.Created),
		MACs: make([]CarriedMAC, len(list))}
	if first.For != first.Object {
		forRef := first.For
		cs.For = &forRef
	}
	for i := range list {
		cs.MACs[i] = CarriedMAC{MAC: list[i].MAC, Network: list[i].Network, Interface: list[i].Interface}
	}
	return cs
}

// sameCarries reports whether a and b carry the same, the same way.
func sameCarries(a, b *Carries) bool {
	switch {
	case a.Len() == 0 || b.Len() == 0:
		return a.Len() == b.Len()
	case a.Object != b.Object || a.ForReceiver != b.ForReceiver || a.created != b.created:
		return false
	case (a.For == nil) != (b.For == nil) || (a.For != nil && *a.For != *b.For):
		return false
	}
	return slices.Equal(a.MACs, b.MACs)
}

// deepCopy is a copy of cs that shares nothing it could change.
func (cs *Carries) deepCopy() *Carries {
	if cs == nil {
		return nil
	}
	out := *cs
	if cs.For != nil {
		forRef := *cs.For
		out.For = &forRef
	}
	out.MACs = slices.Clone(cs.MACs)
	return &out
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

// capped is cs with the first MaxCarried of its MACs, in a list of their
// own (a slice of the whole would keep all of it in memory), and how many
// were left out.
func capped(cs *Carries) (*Carries, int) {
	n := cs.Len()
	if n <= MaxCarried {
		return cs, 0
	}
	kept := make([]CarriedMAC, MaxCarried)
	copy(kept, cs.MACs)
	cs.MACs = kept
	return cs, n - MaxCarried
}

// OfPod lists the MACs a pod's Multus networks annotation carries (at most
// MaxCarried): those Multus applies, read as Multus reads the annotation,
// and never fewer than kubemacpool's own parser reads (see requests). An
// annotation that neither reads carries nothing, and values that are not
// 48-bit MACs are skipped.
func OfPod(pod *corev1.Pod) []Carrier {
	cs, _ := capped(ofPod(pod))
	return cs.List()
}

func ofPod(pod *corev1.Pod) *Carries {
	value := pod.Annotations[multus.NetworksAnnotation]
	if value == "" {
		return nil
	}
	rs := requests(value, pod.Namespace)
	if len(rs) == 0 {
		return nil
	}
	cs := &Carries{Object: Ref{Kind: Pod, Namespace: intern.String(pod.Namespace), Name: pod.Name, UID: pod.UID},
		created: unixNanoOf(pod.CreationTimestamp.Time), MACs: make([]CarriedMAC, 0, len(rs))}
	if vmi, ok := kubevirt.LauncherOf(pod); ok {
		cs.For = &Ref{Kind: VirtualMachineInstance, Namespace: cs.Object.Namespace, Name: vmi.Name, UID: vmi.UID}
	}
	for _, r := range rs {
		cs.MACs = append(cs.MACs, CarriedMAC{MAC: r.mac, Network: intern.String(r.network), Interface: intern.String(r.iface)})
	}
	return cs
}

// OfVM lists the MACs in the interfaces of a VM's template that
// kubemacpool manages (kubevirt.ManagedInterfaces), at most MaxCarried.
func OfVM(vm *kubevirtv1.VirtualMachine) []Carrier {
	cs, _ := capped(ofVM(vm))
	return cs.List()
}

func ofVM(vm *kubevirtv1.VirtualMachine) *Carries {
	cs := &Carries{Object: Ref{Kind: VirtualMachine, Namespace: intern.String(vm.Namespace), Name: vm.Name, UID: vm.UID},
		ForReceiver: kubevirt.IsMigrationReceiver(vm), created: unixNanoOf(vm.CreationTimestamp.Time)}
	cs.MACs = ofSpec(kubevirt.VMSpec(vm))
	return nonEmpty(cs)
}

// nonEmpty is cs, or nil when it lists no MAC: most objects carry none.
func nonEmpty(cs *Carries) *Carries {
	if len(cs.MACs) == 0 {
		return nil
	}
	return cs
}

// OfVMI lists the MACs of a VMI's managed interfaces: those in its spec and
// those its status reports for them, at most MaxCarried. A running VMI
// keeps the MACs it was started with until a restart, whatever its VM's
// template says now, and its status shows what the guest's interfaces
// actually use.
func OfVMI(vmi *kubevirtv1.VirtualMachineInstance) []Carrier {
	cs, _ := capped(ofVMI(vmi))
	return cs.List()
}

func ofVMI(vmi *kubevirtv1.VirtualMachineInstance) *Carries {
	cs := &Carries{Object: Ref{Kind: VirtualMachineInstance, Namespace: intern.String(vmi.Namespace), Name: vmi.Name, UID: vmi.UID},
		created: unixNanoOf(vmi.CreationTimestamp.Time)}
	if vm, ok := kubevirt.ControllingVM(vmi); ok {
		cs.For = &Ref{Kind: VirtualMachine, Namespace: cs.Object.Namespace, Name: vm.Name, UID: vm.UID}
	}
	out := ofSpec(&vmi.Spec)
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
		out = append(out, CarriedMAC{MAC: m, Network: intern.String(iface.Network), Interface: intern.String(iface.Interface)})
	}
	cs.MACs = out
	return nonEmpty(cs)
}

func ofSpec(spec *kubevirtv1.VirtualMachineInstanceSpec) []CarriedMAC {
	var out []CarriedMAC
	for _, m := range kubevirt.ManagedInterfaces(spec) {
		parsed, err := mac.Parse(m.MAC)
		if err != nil {
			continue
		}
		out = append(out, CarriedMAC{MAC: parsed, Network: intern.String(m.Network), Interface: intern.String(m.Interface)})
	}
	return out
}

// Of lists what obj carries, for the kinds above and what the cache holds
// of them (Cached); nil for anything else.
func Of(obj any) []Carrier {
	switch o := obj.(type) {
	case *Cached:
		return o.Carries.List()
	case *corev1.Pod:
		return OfPod(o)
	case *kubevirtv1.VirtualMachine:
		return OfVM(o)
	case *kubevirtv1.VirtualMachineInstance:
		return OfVMI(o)
	}
	return nil
}
