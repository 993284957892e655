package sticky

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
)

func TestClaimOf(t *testing.T) {
	ref := func(apiVersion, kind string, controller bool) metav1.OwnerReference {
		return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: "web", UID: "s", Controller: ptr.To(controller)}
	}
	cases := []struct {
		pod     string
		ref     metav1.OwnerReference
		ok      bool
		ordinal int32
	}{
		{"web-0", ref("apps/v1", "StatefulSet", true), true, 0},
		{"web-12", ref("apps/v1", "StatefulSet", true), true, 12},
		{"web-012", ref("apps/v1", "StatefulSet", true), false, 0}, // not a name the controller makes
		{"web-x", ref("apps/v1", "StatefulSet", true), false, 0},
		{"other-0", ref("apps/v1", "StatefulSet", true), false, 0},
		{"web-0", ref("apps/v1", "StatefulSet", false), false, 0},       // not the controller
		{"web-0", ref("example.com/v1", "StatefulSet", true), false, 0}, // another group's kind
		{"web-0", ref("apps/v1", "ReplicaSet", true), false, 0},
	}
	for _, c := range cases {
		pod := &metav1.ObjectMeta{Namespace: "ns", Name: c.pod, OwnerReferences: []metav1.OwnerReference{c.ref}}
		claim, ok := ClaimOf(pod)
		if ok != c.ok || (ok && (claim.Ordinal != c.ordinal || claim.Name != "web" || claim.UID != "s")) {
			t.Errorf("ClaimOf(%s, %s %s) = %+v, %v; want ordinal %d, %v", c.pod, c.ref.APIVersion, c.ref.Kind, claim, ok, c.ordinal, c.ok)
		}
	}
}

func TestKeeps(t *testing.T) {
	set := func(replicas, start int32, annotations map[string]string) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "s", Annotations: annotations}}
		s.Spec.Replicas = ptr.To(replicas)
		if start > 0 {
			s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: start}
		}
		return s
	}
	owner := func(ordinal int32) v1alpha1.Owner {
		return v1alpha1.Owner{Kind: Kind, Namespace: "ns", Name: "web", UID: "s", Ordinal: ordinal}
	}
	replaced := set(3, 0, nil)
	replaced.UID = "another"
	cases := []struct {
		name string
		set  *appsv1.StatefulSet
		o    v1alpha1.Owner
		want bool
	}{
		{"an ordinal it has", set(3, 0, nil), owner(2), true},
		{"scaled below the ordinal", set(2, 0, nil), owner(2), false},
		{"ordinals starting at 5", set(2, 5, nil), owner(6), true},
		{"below the start", set(2, 5, nil), owner(0), false},
		{"opted out", set(3, 0, map[string]string{OptOutAnnotation: "False"}), owner(0), false},
		{"deleted", nil, owner(0), false},
		{"created again under the name", replaced, owner(0), false},
	}
	for _, c := range cases {
		if got := Keeps(c.set, c.o); got != c.want {
			t.Errorf("%s: Keeps = %v, want %v", c.name, got, c.want)
		}
	}
}
