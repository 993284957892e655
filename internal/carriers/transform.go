package carriers

import (
	"encoding/json"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/internal/collision"
	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// Slim is the cache transform for the kinds that carry MACs (and
// StatefulSets, whose pods keep theirs): every replica caches every pod,
// VM and VMI of the cluster, so each keeps only what
// kubemacpool reads (Of, and the collision detector). It is a default
// transform rather than a per-kind one because KubeVirt's kinds may not be
// served when the cache is built. Objects of other kinds keep every field
// but managedFields.
func Slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return slimPod(o), nil
	case *kubevirtv1.VirtualMachine:
		return slimVM(o), nil
	case *kubevirtv1.VirtualMachineInstance:
		return slimVMI(o), nil
	case *appsv1.StatefulSet:
		return slimStatefulSet(o), nil
	}
	// Everything else cached (namespaces, MAC blocks, ConfigMaps, ...)
	// keeps its fields but loses managedFields, which nothing reads.
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// slimStatefulSet keeps what says whether a StatefulSet keeps its pods'
// MACs (package sticky): identity, the opt-out annotation, replicas and
// ordinals. Its pod template, the bulk of it, goes.
func slimStatefulSet(set *appsv1.StatefulSet) *appsv1.StatefulSet {
	slim := &appsv1.StatefulSet{ObjectMeta: slimMeta(&set.ObjectMeta)}
	if v, ok := set.Annotations[sticky.OptOutAnnotation]; ok {
		slim.Annotations = map[string]string{sticky.OptOutAnnotation: v}
	}
	slim.Spec.Replicas = set.Spec.Replicas
	slim.Spec.Ordinals = set.Spec.Ordinals
	return slim
}

// slimMeta keeps identity and lifecycle; labels, annotations, owners and
// managedFields go (each kind keeps what it reads of them).
func slimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, GenerateName: m.GenerateName, UID: m.UID,
		ResourceVersion: m.ResourceVersion, CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// slimPod keeps the phase, the owner of a virt-launcher pod (what makes
// it one), and the Multus annotations rewritten to what is read of them:
// each network's name, namespace, interface and MAC, and the network-status
// entries paired with those networks (collision.MatchStatus), with a count
// of those dropped. Both annotations are user-writable, up to 256 KiB each,
// on every pod of the cluster: cached whole they would let one tenant's
// padded pods exhaust every replica's memory.
func slimPod(pod *corev1.Pod) *corev1.Pod {
	slim := &corev1.Pod{ObjectMeta: slimMeta(&pod.ObjectMeta)}
	if _, launcher := kubevirt.LauncherOf(pod); launcher {
		slim.Labels = map[string]string{kubevirt.LauncherLabel: pod.Labels[kubevirt.LauncherLabel]}
		slim.OwnerReferences = pod.OwnerReferences
	}
	slim.Status.Phase = pod.Status.Phase
	annotations := map[string]string{}
	elems, err := multus.Parse(pod.Annotations[multus.NetworksAnnotation], pod.Namespace)
	if err == nil && len(elems) > 0 {
		value := pod.Annotations[multus.NetworksAnnotation]
		if compact := compactNetworks(elems, pod.Namespace); len(compact) < len(value) {
			value = compact // never longer: the short form may be shorter still
		}
		annotations[multus.NetworksAnnotation] = value
	}
	if entries, ok := collision.NetworkStatus(pod); ok {
		if err != nil {
			elems = nil
		}
		var kept []collision.StatusEntry
		dropped := 0
		matched := collision.MatchStatus(elems, entries)
		isMatched := map[int]bool{}
		for _, j := range matched {
			if j >= 0 {
				isMatched[j] = true
			}
		}
		for j, e := range entries {
			switch {
			case isMatched[j]:
				kept = append(kept, collision.StatusEntry{Name: e.Name, Interface: e.Interface, Mac: e.Mac})
			case !e.Default:
				dropped++
			}
		}
		// The pairing is kept: entries in their order, each still first of
		// its network and interface.
		data, _ := json.Marshal(compactStatus(kept))
		annotations[collision.NetworkStatusAnnotation] = string(data)
		if dropped > 0 {
			annotations[collision.UnreadAnnotation] = strconv.Itoa(dropped)
		}
	}
	if len(annotations) > 0 {
		slim.Annotations = annotations
	}
	return slim
}

// compactNetworks renders elements with only the keys kubemacpool reads
// (the namespace only where it is not the pod's).
func compactNetworks(elems []multus.Element, podNamespace string) string {
	type element struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace,omitempty"`
		Interface string `json:"interface,omitempty"`
		MAC       string `json:"mac,omitempty"`
	}
	out := make([]element, len(elems))
	for i := range elems {
		e := &elems[i]
		out[i] = element{Name: e.Name(), Interface: e.Interface(), MAC: e.MAC()}
		if e.Namespace() != podNamespace {
			out[i].Namespace = e.Namespace()
		}
	}
	data, _ := json.Marshal(out)
	return string(data)
}

// statusEntry is a network-status entry with only what is read of it.
type statusEntry struct {
	Name      string `json:"name"`
	Interface string `json:"interface,omitempty"`
	MAC       string `json:"mac,omitempty"`
}

func compactStatus(entries []collision.StatusEntry) []statusEntry {
	out := make([]statusEntry, len(entries))
	for i, e := range entries {
		out[i] = statusEntry{Name: e.Name, Interface: e.Interface, MAC: e.Mac}
	}
	return out
}

// slimVM keeps the template's interfaces and networks, the run strategy
// (a migration receiver's says so) and the finalizers (upstream
// kubemacpool's is removed).
func slimVM(vm *kubevirtv1.VirtualMachine) *kubevirtv1.VirtualMachine {
	slim := &kubevirtv1.VirtualMachine{ObjectMeta: slimMeta(&vm.ObjectMeta)}
	slim.OwnerReferences = vm.OwnerReferences
	slim.Finalizers = vm.Finalizers
	slim.Spec.RunStrategy = vm.Spec.RunStrategy
	if t := vm.Spec.Template; t != nil {
		slim.Spec.Template = &kubevirtv1.VirtualMachineInstanceTemplateSpec{}
		slim.Spec.Template.Spec.Domain.Devices.Interfaces = t.Spec.Domain.Devices.Interfaces
		slim.Spec.Template.Spec.Networks = t.Spec.Networks
	}
	return slim
}

// slimVMI keeps the owner, the interfaces and networks of the spec, and
// the MACs and migration state of the status.
func slimVMI(vmi *kubevirtv1.VirtualMachineInstance) *kubevirtv1.VirtualMachineInstance {
	slim := &kubevirtv1.VirtualMachineInstance{ObjectMeta: slimMeta(&vmi.ObjectMeta)}
	slim.OwnerReferences = vmi.OwnerReferences
	slim.Spec.Domain.Devices.Interfaces = vmi.Spec.Domain.Devices.Interfaces
	slim.Spec.Networks = vmi.Spec.Networks
	slim.Status.Phase = vmi.Status.Phase
	slim.Status.Interfaces = vmi.Status.Interfaces
	slim.Status.MigrationState = vmi.Status.MigrationState
	return slim
}
