package carriers

import (
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubemacpool/kubemacpool/internal/intern"
)

// cachedMeta is what Cached keeps of an object's metadata: identity and
// lifecycle, and a VM's finalizers. A metav1.ObjectMeta is 232 bytes before
// any field is set and most of it (labels, annotations, owners, managed
// fields) is dropped by the transform anyway; at 100,000 cached objects the
// difference is 14 MB of every replica's heap (issue 24).
//
// It implements metav1.Object, as informers and controller-runtime require.
// Fields it does not keep read as empty, and setting them does nothing: the
// cache transform drops them all the same.
type cachedMeta struct {
	name, namespace, generateName string
	uid                           types.UID
	resourceVersion               string
	created                       unixNano
	deleted                       *metav1.Time
	// finalizers is nil but for VMs: a pointer costs the others 8 bytes,
	// a slice 24.
	finalizers *[]string
}

// unixNano is a time as nanoseconds since 1970, 0 for the zero time: 8
// bytes rather than a time.Time's 24, for the creation time every cached
// object keeps (twice: in its metadata and its Carries). The API server
// sets creation times to its clock's now, well within what it can hold.
type unixNano int64

func unixNanoOf(t time.Time) unixNano {
	if t.IsZero() {
		return 0
	}
	return unixNano(t.UnixNano())
}

// Time is the time n stands for.
func (n unixNano) Time() time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(n))
}

// metaOf keeps what Cached needs of m. Namespaces are interned: the
// objects of a namespace share its name's bytes (package intern).
func metaOf(m *metav1.ObjectMeta) cachedMeta {
	return cachedMeta{
		name: m.Name, namespace: intern.String(m.Namespace), generateName: m.GenerateName, uid: m.UID,
		resourceVersion: m.ResourceVersion, created: unixNanoOf(m.CreationTimestamp.Time), deleted: m.DeletionTimestamp,
	}
}

func (m *cachedMeta) deepCopy() cachedMeta {
	out := *m
	if m.deleted != nil {
		out.deleted = m.deleted.DeepCopy()
	}
	if m.finalizers != nil {
		f := slices.Clone(*m.finalizers)
		out.finalizers = &f
	}
	return out
}

func (m *cachedMeta) GetNamespace() string                { return m.namespace }
func (m *cachedMeta) SetNamespace(namespace string)       { m.namespace = namespace }
func (m *cachedMeta) GetName() string                     { return m.name }
func (m *cachedMeta) SetName(name string)                 { m.name = name }
func (m *cachedMeta) GetGenerateName() string             { return m.generateName }
func (m *cachedMeta) SetGenerateName(name string)         { m.generateName = name }
func (m *cachedMeta) GetUID() types.UID                   { return m.uid }
func (m *cachedMeta) SetUID(uid types.UID)                { m.uid = uid }
func (m *cachedMeta) GetResourceVersion() string          { return m.resourceVersion }
func (m *cachedMeta) SetResourceVersion(version string)   { m.resourceVersion = version }
func (m *cachedMeta) GetCreationTimestamp() metav1.Time   { return metav1.Time{Time: m.created.Time()} }
func (m *cachedMeta) SetCreationTimestamp(t metav1.Time)  { m.created = unixNanoOf(t.Time) }
func (m *cachedMeta) GetDeletionTimestamp() *metav1.Time  { return m.deleted }
func (m *cachedMeta) SetDeletionTimestamp(t *metav1.Time) { m.deleted = t }
func (m *cachedMeta) GetFinalizers() []string {
	if m.finalizers == nil {
		return nil
	}
	return *m.finalizers
}

func (m *cachedMeta) SetFinalizers(finalizers []string) {
	m.finalizers = nil
	if finalizers != nil {
		m.finalizers = &finalizers
	}
}
func (m *cachedMeta) GetGeneration() int64                          { return 0 }
func (m *cachedMeta) SetGeneration(int64)                           {}
func (m *cachedMeta) GetSelfLink() string                           { return "" }
func (m *cachedMeta) SetSelfLink(string)                            {}
func (m *cachedMeta) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (m *cachedMeta) SetDeletionGracePeriodSeconds(*int64)          {}
func (m *cachedMeta) GetLabels() map[string]string                  { return nil }
func (m *cachedMeta) SetLabels(map[string]string)                   {}
func (m *cachedMeta) GetAnnotations() map[string]string             { return nil }
func (m *cachedMeta) SetAnnotations(map[string]string)              {}
func (m *cachedMeta) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (m *cachedMeta) SetOwnerReferences([]metav1.OwnerReference)    {}
func (m *cachedMeta) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (m *cachedMeta) SetManagedFields([]metav1.ManagedFieldsEntry)  {}

// cachedKind is a Cached object's kind: one of three, shared, rather than two
// strings in every object.
type cachedKind struct{ gvk *schema.GroupVersionKind }

func (k *cachedKind) GroupVersionKind() schema.GroupVersionKind {
	if k.gvk == nil {
		return schema.GroupVersionKind{}
	}
	return *k.gvk
}

// SetGroupVersionKind keeps gvk, shared when it is one of the three kinds
// cached as Cached.
func (k *cachedKind) SetGroupVersionKind(gvk schema.GroupVersionKind) {
	for _, known := range []*schema.GroupVersionKind{&podKind, &vmKind, &vmiKind} {
		if *known == gvk {
			k.gvk = known
			return
		}
	}
	k.gvk = &gvk
}
