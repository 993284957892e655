// Package sticky keeps the MACs of a StatefulSet's pods with their
// identity: a StatefulSet pod is its name (web-0), so its MACs follow the
// name across deletions. Entries are held for the StatefulSet, by UID, and
// the ordinal; a StatefulSet created again under the same name is another
// one.
package sticky

import (
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
)

// Kind is the owner kind of sticky entries.
const Kind = "StatefulSet"

// OptOutAnnotation on a StatefulSet set to "false" makes its pods ordinary
// pods: their MACs are released when they are deleted.
const OptOutAnnotation = "kubemacpool.io/sticky-macs"

// Claim is the StatefulSet a pod says controls it, and its ordinal. Like
// any owner reference it is only a claim, checked against the StatefulSet
// (Owner).
type Claim struct {
	Namespace, Name string
	UID             string
	Ordinal         int32
}

// ClaimOf returns the claim of pod: a controller reference to an apps/v1
// StatefulSet, and a name that is that StatefulSet's name, "-", an ordinal.
func ClaimOf(pod metav1.Object) (Claim, bool) {
	for _, ref := range pod.GetOwnerReferences() {
		if ref.Kind != Kind || ref.Controller == nil || !*ref.Controller || ref.APIVersion != appsv1.SchemeGroupVersion.String() {
			continue
		}
		ordinal, ok := ordinalOf(pod.GetName(), ref.Name)
		if !ok {
			return Claim{}, false
		}
		return Claim{Namespace: pod.GetNamespace(), Name: ref.Name, UID: string(ref.UID), Ordinal: ordinal}, true
	}
	return Claim{}, false
}

func ordinalOf(podName, setName string) (int32, bool) {
	suffix, ok := strings.CutPrefix(podName, setName+"-")
	if !ok || suffix == "" || (len(suffix) > 1 && suffix[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseInt(suffix, 10, 32)
	if err != nil || n < 0 {
		return 0, false
	}
	return int32(n), true
}

// PodName is the name of a StatefulSet's pod with the ordinal.
func PodName(set string, ordinal int32) string { return fmt.Sprintf("%s-%d", set, ordinal) }

// Owner returns the owner of the claim's entries, if set (the
// StatefulSet read, nil when it does not exist) is the claimed one and
// keeps its pods' MACs.
func Owner(c Claim, set *appsv1.StatefulSet) (v1alpha1.Owner, bool) {
	if set == nil || string(set.UID) != c.UID || set.DeletionTimestamp != nil || OptedOut(set) {
		return v1alpha1.Owner{}, false
	}
	return v1alpha1.Owner{Kind: Kind, Namespace: c.Namespace, Name: c.Name, UID: set.UID, Ordinal: c.Ordinal}, true
}

// OptedOut reports whether set opts out of sticky MACs.
func OptedOut(set *appsv1.StatefulSet) bool {
	return strings.EqualFold(strings.TrimSpace(set.Annotations[OptOutAnnotation]), "false")
}

// Keeps reports whether set (nil: it does not exist) still keeps the
// entries of owner: it is the same StatefulSet, not being deleted, not
// opted out, and the ordinal is one of its replicas (not scaled below it).
func Keeps(set *appsv1.StatefulSet, owner v1alpha1.Owner) bool {
	if set == nil || set.UID != owner.UID || set.DeletionTimestamp != nil || OptedOut(set) {
		return false
	}
	replicas := int32(1)
	if set.Spec.Replicas != nil {
		replicas = *set.Spec.Replicas
	}
	start := int32(0)
	if set.Spec.Ordinals != nil {
		start = set.Spec.Ordinals.Start
	}
	return owner.Ordinal >= start && owner.Ordinal < start+replicas
}
