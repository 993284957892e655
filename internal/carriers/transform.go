package carriers

import (
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
// served when the cache is built. Objects of other kinds pass unchanged.
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

// slimMeta keeps identity, labels and owners; managedFields and the other
// annotations go.
func slimMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, GenerateName: m.GenerateName, UID: m.UID,
		ResourceVersion: m.ResourceVersion, CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp, Labels: m.Labels,
	}
}

// slimPod keeps the Multus annotations, the phase, and the owner of a
// virt-launcher pod (what makes it one).
func slimPod(pod *corev1.Pod) *corev1.Pod {
	slim := &corev1.Pod{ObjectMeta: slimMeta(&pod.ObjectMeta)}
	if _, launcher := kubevirt.LauncherOf(pod); launcher {
		slim.OwnerReferences = pod.OwnerReferences
	}
	for _, key := range []string{multus.NetworksAnnotation, collision.NetworkStatusAnnotation, collision.OldNetworkStatusAnnotation} {
		if v, ok := pod.Annotations[key]; ok {
			if slim.Annotations == nil {
				slim.Annotations = map[string]string{}
			}
			slim.Annotations[key] = v
		}
	}
	slim.Status.Phase = pod.Status.Phase
	return slim
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
