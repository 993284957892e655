package controller

import (
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// PodKind reads MACs from a pod's Multus networks annotation.
type PodKind struct{}

func (PodKind) APIVersion() string { return "v1" }
func (PodKind) Kind() string       { return "Pod" }
func (PodKind) New() client.Object { return &corev1.Pod{} }

// FixedAtCreation is true: an edit that drops a network from the
// annotation does not prove the interface is gone (Multus set it up from
// the annotation at sandbox start, and only the dynamic networks controller,
// if installed, unplugs), so a pod keeps every MAC it was given until it
// is deleted.
func (PodKind) FixedAtCreation() bool { return true }

func (PodKind) Carried(obj client.Object) []Carried {
	value := obj.GetAnnotations()[multus.NetworksAnnotation]
	if value == "" || kubevirt.IsVirtLauncher(obj) {
		return nil
	}
	elems, err := multus.Parse(value, obj.GetNamespace())
	if err != nil {
		return nil
	}
	var out []Carried
	for _, e := range elems {
		m, err := mac.Parse(e.MAC())
		if err != nil {
			continue
		}
		out = append(out, Carried{MAC: m, Network: e.NetworkKey(), Interface: e.Interface()})
	}
	return out
}
