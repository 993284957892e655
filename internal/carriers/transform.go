package carriers

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// Slim is the cache transform. Every replica caches every pod, VM and VMI
// of the cluster: each becomes a Cached, what kubemacpool derives from it
// (Of, the collision report, the MACs Multus applied), computed once here.
// StatefulSets, whose pods keep their MACs, keep the fields package sticky
// reads. It is a default transform rather than a per-kind one because
// KubeVirt's kinds may not be served when the cache is built. Objects of
// other kinds keep every field but managedFields.
func Slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return cachedPod(o), nil
	case *kubevirtv1.VirtualMachine:
		return cachedVM(o), nil
	case *kubevirtv1.VirtualMachineInstance:
		return cachedVMI(o), nil
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

// BecomesCached reports whether Slim turns objects of obj's kind into
// Cached: pods, VMs and VMIs. Their informers need no namespace index, as
// nothing lists them from the cache (a list of Cached is not a list of
// the kind); at 100,000 objects that index is 4 MB of every replica.
func BecomesCached(obj any) bool {
	switch obj.(type) {
	case *corev1.Pod, *kubevirtv1.VirtualMachine, *kubevirtv1.VirtualMachineInstance:
		return true
	}
	return false
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
