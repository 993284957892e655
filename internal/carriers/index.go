package carriers

import (
	"sort"
	"sync"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// objectKey identifies an object of a kind by name: an object re-created
// under the same name replaces what the old one carried.
type objectKey struct{ kind, namespace, name string }

// Index maps every carried MAC to the objects carrying it. It is fed from
// the informers of every replica (Feed) and read by the pool (never pick a
// carried MAC, refuse one asked for), the controller (never free one) and
// the webhook's refusal messages.
type Index struct {
	mu      sync.RWMutex
	byMAC   map[mac.MAC][]Carrier
	objects map[objectKey][]Carrier
	// onChange is told whenever the carriers of a MAC change, with whether
	// anyone carries it now: a MAC that starts or stops being carried, and
	// a second object taking up a carried MAC (a collision to report). It
	// is called with the index locked, so that calls for one MAC arrive in
	// the order of the changes: it must not call back into the index.
	onChange func(m mac.MAC, carried bool)
}

// NewIndex returns an empty index that tells onChange (may be nil) when
// the carriers of a MAC change.
func NewIndex(onChange func(m mac.MAC, carried bool)) *Index {
	return &Index{byMAC: map[mac.MAC][]Carrier{}, objects: map[objectKey][]Carrier{}, onChange: onChange}
}

// Set records that the object of the given kind, namespace and name
// carries exactly cs now (nil: nothing), replacing what it carried before.
func (ix *Index) Set(kind, namespace, name string, cs []Carrier) {
	key := objectKey{kind, namespace, name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.objects[key]
	if sameCarriers(old, cs) {
		return // most updates (status, labels) change nothing carried
	}
	// Add before removing: a MAC the object keeps never looks uncarried,
	// not even between the two steps.
	for _, c := range cs {
		ix.byMAC[c.MAC] = append(ix.byMAC[c.MAC], c)
		if ix.onChange != nil {
			ix.onChange(c.MAC, true)
		}
	}
	for _, c := range old {
		ix.removeLocked(c) // the first match is the old entry: new ones were appended after it
	}
	if len(cs) == 0 {
		delete(ix.objects, key)
	} else {
		ix.objects[key] = cs
	}
}

func sameCarriers(a, b []Carrier) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Delete forgets the object: it carries nothing any more.
func (ix *Index) Delete(kind, namespace, name string) { ix.Set(kind, namespace, name, nil) }

func (ix *Index) removeLocked(c Carrier) {
	list := ix.byMAC[c.MAC]
	for i := range list {
		if list[i] == c {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) > 0 {
		ix.byMAC[c.MAC] = list
	} else {
		delete(ix.byMAC, c.MAC)
	}
	if ix.onChange != nil {
		ix.onChange(c.MAC, len(list) > 0)
	}
}

// Of returns the objects carrying m, oldest first, each with For resolved
// (see Resolve).
func (ix *Index) Of(m mac.MAC) []Carrier {
	if ix == nil {
		return nil
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	list := ix.byMAC[m]
	if len(list) == 0 {
		return nil
	}
	out := make([]Carrier, len(list))
	for i, c := range list {
		c.For = ix.resolveLocked(c.For)
		out[i] = c
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].Object.String() < out[j].Object.String()
	})
	return out
}

// Carried reports whether any object carries m.
func (ix *Index) Carried(m mac.MAC) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byMAC[m]) > 0
}

// Len is how many distinct MACs are carried.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byMAC)
}

// MACs returns every carried MAC, in no order.
func (ix *Index) MACs() []mac.MAC {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]mac.MAC, 0, len(ix.byMAC))
	for m := range ix.byMAC {
		out = append(out, m)
	}
	return out
}

// Resolve follows a virt-launcher pod's For (its VMI) to the object that
// VMI carries its MACs for (its VM, when a VM created it), so every
// carrier of a VM's MAC names the VM. A VMI the index does not know (it
// carries no MAC, or it is gone) resolves to itself.
func (ix *Index) Resolve(r Ref) Ref {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.resolveLocked(r)
}

func (ix *Index) resolveLocked(r Ref) Ref {
	if r.Kind != VirtualMachineInstance {
		return r
	}
	for _, c := range ix.objects[objectKey{r.Kind, r.Namespace, r.Name}] {
		if r.UID == "" || c.Object.UID == r.UID {
			return c.For
		}
		break
	}
	return r
}
