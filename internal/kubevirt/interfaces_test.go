package kubevirt

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestLauncherOf(t *testing.T) {
	label := map[string]string{"kubevirt.io": "virt-launcher"}
	vmiRef := metav1.OwnerReference{APIVersion: "kubevirt.io/v1", Kind: "VirtualMachineInstance", Name: "vm1", Controller: ptr.To(true)}
	notController := vmiRef
	notController.Controller = nil
	otherGroup := vmiRef
	otherGroup.APIVersion = "example.com/v1"
	cases := []struct {
		name   string
		labels map[string]string
		refs   []metav1.OwnerReference
		want   string
		ok     bool
	}{
		{"label and VMI controller reference", label, []metav1.OwnerReference{vmiRef}, "vm1", true},
		{"label only", label, nil, "", false},
		{"reference only", nil, []metav1.OwnerReference{vmiRef}, "", false},
		{"VMI reference that is not the controller", label, []metav1.OwnerReference{notController}, "", false},
		{"a VirtualMachineInstance of another group", label, []metav1.OwnerReference{otherGroup}, "", false},
		{"other label value", map[string]string{"kubevirt.io": "virt-handler"}, []metav1.OwnerReference{vmiRef}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := &metav1.ObjectMeta{Labels: c.labels, OwnerReferences: c.refs}
			ref, ok := LauncherOf(pod)
			if got := ref.Name; got != c.want || ok != c.ok {
				t.Errorf("LauncherOf = %q, %v; want %q, %v", ref.Name, ok, c.want, c.ok)
			}
		})
	}
}
