// Package controller keeps MACAddress objects in step with the objects that
// carry MACs: it binds reservations to their owners, releases MACs whose
// owner is gone, expires reservations that were never used, adopts MACs
// carried without a MACAddress, and reports two holders of one MAC.
package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Carried is one MAC an object carries, and what for.
type Carried struct {
	MAC       mac.MAC
	Network   string
	Interface string
}

// Kind describes one kind of object that carries MACs (Pod, VirtualMachine,
// ...), so the lifecycle logic is written once for all of them.
type Kind interface {
	// APIVersion and Kind as recorded in MACAddress owners.
	APIVersion() string
	Kind() string
	// New returns an empty object of the kind.
	New() client.Object
	// Carried lists the MACs obj carries. Values that are not valid MACs are
	// skipped: they were not written by kubemacpool and hold nothing.
	Carried(obj client.Object) []Carried
	// FixedAtCreation says the object keeps every MAC it was given, bound,
	// whatever later edits say, until it is deleted: for a pod, an edit
	// that drops a network does not prove its interface is gone, so it
	// must not free the MAC.
	FixedAtCreation() bool
}

// ownerKey identifies an owner object for the MACAddress owner index.
func ownerKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// ownerIndex is the MACAddress field index by owner (kind/namespace/name).
const ownerIndex = "kubemacpool.io/owner"

// HeldFor lists the MACAddresses held for the object kind namespace/name
// with the given UID, from a cache indexed by owner (every replica's cache
// is, once the MAC controller is set up).
func HeldFor(ctx context.Context, c client.Reader, kind, namespace, name string, uid types.UID) ([]v1alpha1.MACAddress, error) {
	list := &v1alpha1.MACAddressList{}
	if err := c.List(ctx, list, client.MatchingFields{ownerIndex: ownerKey(kind, namespace, name)}); err != nil {
		return nil, err
	}
	var out []v1alpha1.MACAddress
	for _, m := range list.Items {
		if m.Spec.Owner.UID == uid {
			out = append(out, m)
		}
	}
	return out, nil
}

// carriedIndex is the field index of carrier objects by the MACs they carry.
const carriedIndex = "kubemacpool.io/carried-mac"

func indexMACAddressOwner(obj client.Object) []string {
	m := obj.(*v1alpha1.MACAddress)
	if m.Spec.Owner.Name == "" {
		return nil
	}
	return []string{ownerKey(m.Spec.Owner.Kind, m.Spec.Owner.Namespace, m.Spec.Owner.Name)}
}

func indexCarried(k Kind) client.IndexerFunc {
	return func(obj client.Object) []string {
		var keys []string
		for _, c := range k.Carried(obj) {
			keys = append(keys, c.MAC.String())
		}
		return keys
	}
}

// carries reports whether obj carries m according to k.
func carries(k Kind, obj client.Object, m mac.MAC) (Carried, bool) {
	for _, c := range k.Carried(obj) {
		if c.MAC == m {
			return c, true
		}
	}
	return Carried{}, false
}

// ownerMatches reports whether a MACAddress owner names obj. A reservation
// made for a generateName object matches any object whose name starts with
// that prefix; a bound one matches only the same UID.
func ownerMatches(o v1alpha1.Owner, kind string, obj client.Object) bool {
	if o.Kind != kind || o.Namespace != obj.GetNamespace() {
		return false
	}
	if o.UID != "" {
		return o.UID == obj.GetUID()
	}
	if o.Name != "" {
		return o.Name == obj.GetName()
	}
	return o.GenerateName != "" && len(obj.GetName()) > len(o.GenerateName) &&
		obj.GetName()[:len(o.GenerateName)] == o.GenerateName
}
