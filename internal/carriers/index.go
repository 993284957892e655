package carriers

import (
	"hash/maphash"
	"slices"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/types"

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
	mu sync.RWMutex
	// byMAC is the first object to carry each MAC, and more the others
	// in order (an object listing a MAC twice is there twice): most MACs
	// have one carrier, and a map of lists would cost 24 bytes more per
	// MAC. All point at the Carries the cache holds (Cached.Carries),
	// stored once however many ways they are found.
	byMAC map[mac.MAC]*Carries
	more  map[mac.MAC][]*Carries
	// objects is what each object carries, by a hash of its kind,
	// namespace and name (a key of 8 bytes rather than the 48 of the
	// strings' headers: 2.6 MB at 50,000 objects); an object whose hash
	// another object already has is in collided, by its whole key.
	objects  map[uint64]*Carries
	collided map[objectKey]*Carries
	seed     maphash.Seed
	// onChange is told whenever the carriers of a MAC change, with whether
	// anyone carries it now: a MAC that starts or stops being carried, and
	// a second object taking up a carried MAC (a collision to report). It
	// is called with the index locked, so that calls for one MAC arrive in
	// the order of the changes: it must only queue the change (a
	// holders.Stream), never call into another index.
	onChange func(m mac.MAC, carried bool)
	// heldFor says whether the ledger holds a MAC for an object: a running
	// VMI keeps a MAC its VM's template has just dropped, and that MAC is
	// still the VM's. Nil: nothing is held for anyone. It is called with
	// the index unlocked: no lock is held while another is taken.
	heldFor func(m mac.MAC, owner Ref) bool
}

// NewIndex returns an empty index that tells onChange (may be nil) when
// the carriers of a MAC change.
func NewIndex(onChange func(m mac.MAC, carried bool)) *Index {
	return &Index{byMAC: map[mac.MAC]*Carries{}, more: map[mac.MAC][]*Carries{}, objects: map[uint64]*Carries{},
		collided: map[objectKey]*Carries{}, seed: maphash.MakeSeed(), onChange: onChange}
}

// CheckHeldWith makes Resolve accept a VMI's MAC as its VM's when held
// reports the ledger holds it for that VM. held is called with the index
// unlocked.
func (ix *Index) CheckHeldWith(held func(m mac.MAC, owner Ref) bool) { ix.heldFor = held }

// Set records that the object of the given kind, namespace and name
// carries exactly cs now (nil: nothing), replacing what it carried before.
// The carriers of one object share Object, For, ForReceiver and Created,
// as the Of functions make them (Pack).
func (ix *Index) Set(kind, namespace, name string, cs []Carrier) {
	ix.SetCarries(kind, namespace, name, Pack(cs))
}

// SetCarries is Set with what the object carries packed (nil: nothing).
// The index keeps cs: the caller must not change it afterwards.
func (ix *Index) SetCarries(kind, namespace, name string, cs *Carries) {
	if cs.Len() == 0 {
		cs = nil
	}
	key := objectKey{kind, namespace, name}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old, h := ix.objectLocked(key)
	if sameCarries(old, cs) {
		// Most updates (status, labels) change nothing carried: nobody is
		// told, but the index moves to the new Carries, the one the cache
		// now holds, so the old one can be freed.
		if cs != nil && cs != old {
			for _, c := range cs.MACs {
				ix.repointLocked(c.MAC, old, cs)
			}
			ix.storeObjectLocked(key, h, old, cs)
		}
		return
	}
	// Add before removing: a MAC the object keeps never looks uncarried,
	// not even between the two steps.
	if cs != nil {
		for _, c := range cs.MACs {
			if ix.byMAC[c.MAC] == nil {
				ix.byMAC[c.MAC] = cs
			} else {
				ix.more[c.MAC] = append(ix.more[c.MAC], cs)
			}
			if ix.onChange != nil {
				ix.onChange(c.MAC, true)
			}
		}
	}
	ix.storeObjectLocked(key, h, old, cs)
	if old != nil {
		for _, c := range old.MACs {
			ix.removeLocked(c.MAC, old)
		}
	}
}

// objectLocked returns what the object key names carries (nil: nothing),
// and key's hash.
func (ix *Index) objectLocked(key objectKey) (*Carries, uint64) {
	h := maphash.Comparable(ix.seed, key)
	if cs := ix.objects[h]; cs != nil && cs.names(key) {
		return cs, h
	}
	return ix.collided[key], h
}

// storeObjectLocked records that the object key names, whose hash is h,
// carries cs (nil: nothing) rather than old.
func (ix *Index) storeObjectLocked(key objectKey, h uint64, old, cs *Carries) {
	if old != nil {
		if ix.objects[h] == old {
			delete(ix.objects, h)
		} else {
			delete(ix.collided, key)
		}
	}
	if cs != nil {
		if ix.objects[h] == nil && cs.names(key) {
			ix.objects[h] = cs
		} else {
			ix.collided[key] = cs
		}
	}
}

// names reports whether cs is what the object key names carries.
func (cs *Carries) names(key objectKey) bool {
	return cs.Object.Kind == key.kind && cs.Object.Namespace == key.namespace && cs.Object.Name == key.name
}

// ObjectCarries reports whether the object kind namespace/name (with uid,
// when not empty) carries m, as the informers last showed it.
func (ix *Index) ObjectCarries(kind, namespace, name string, uid types.UID, m mac.MAC) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	cs, _ := ix.objectLocked(objectKey{kind, namespace, name})
	if cs == nil || (uid != "" && cs.Object.UID != uid) {
		return false
	}
	for _, c := range cs.MACs {
		if c.MAC == m {
			return true
		}
	}
	return false
}

// repointLocked makes m's carriers refer to to wherever they referred to
// from.
func (ix *Index) repointLocked(m mac.MAC, from, to *Carries) {
	if ix.byMAC[m] == from {
		ix.byMAC[m] = to
	}
	for i, p := range ix.more[m] {
		if p == from {
			ix.more[m][i] = to
		}
	}
}

// Delete forgets the object: it carries nothing any more.
func (ix *Index) Delete(kind, namespace, name string) { ix.SetCarries(kind, namespace, name, nil) }

// removeLocked takes one mention of cs out of m's list.
func (ix *Index) removeLocked(m mac.MAC, cs *Carries) {
	more := ix.more[m]
	if ix.byMAC[m] == cs {
		if len(more) == 0 {
			delete(ix.byMAC, m)
		} else {
			ix.byMAC[m], more = more[0], more[1:]
		}
	} else if i := slices.Index(more, cs); i >= 0 {
		more = slices.Delete(slices.Clone(more), i, i+1)
	}
	if len(more) > 0 {
		ix.more[m] = slices.Clip(more)
	} else {
		delete(ix.more, m)
	}
	if ix.onChange != nil {
		ix.onChange(m, ix.byMAC[m] != nil)
	}
}

// carriersLocked lists the Carries of every object carrying m, each once.
func (ix *Index) carriersLocked(m mac.MAC) []*Carries {
	first := ix.byMAC[m]
	if first == nil {
		return nil
	}
	out := []*Carries{first}
	for _, cs := range ix.more[m] {
		if !slices.Contains(out, cs) {
			out = append(out, cs)
		}
	}
	return out
}

// Of returns the objects carrying m, oldest first, each with For checked
// and resolved (see Resolve).
func (ix *Index) Of(m mac.MAC) []Carrier {
	if ix == nil {
		return nil
	}
	ix.mu.RLock()
	list := ix.carriersLocked(m)
	if len(list) == 0 {
		ix.mu.RUnlock()
		return nil
	}
	out := make([]Carrier, 0, len(list))
	claims := make([]heldClaim, 0, len(list))
	for _, cs := range list {
		for j := range cs.MACs { // an object listing m twice has two carriers of it
			if cs.MACs[j].MAC == m {
				c, claim := ix.resolveLocked(cs.At(j))
				out, claims = append(out, c), append(claims, claim)
			}
		}
	}
	ix.mu.RUnlock()
	for i := range out {
		out[i] = ix.settle(out[i], claims[i])
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
	return ix.byMAC[m] != nil
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

// Resolve returns c with its For checked against what is indexed now,
// not taken from the marks the object wrote about itself (an owner
// reference, a label: anyone can write them, and edit them later without
// passing the webhook):
//   - a VMI carries a MAC for its VM only while it bears the VM's name and
//     the MAC is that VM's: the VM, with the UID of the VMI's reference,
//     carries it too, or the ledger holds it for that VM (a template edited
//     while the VM runs; an entry recorded without a UID matches any);
//   - a virt-launcher pod carries a MAC for its VMI only while that VMI is
//     indexed with the referenced UID and carries the same MAC; it is then
//     followed on to whom the VMI carries it for (its VM, checked the same
//     way).
//
// A claim that does not hold makes the object carry the MAC for itself.
// ForReceiver is set when the resolved For is a VM waiting as a migration
// receiver.
func (ix *Index) Resolve(c Carrier) Carrier {
	ix.mu.RLock()
	c, claim := ix.resolveLocked(c)
	ix.mu.RUnlock()
	return ix.settle(c, claim)
}

// heldClaim is a claim on a VM that holds only if the ledger holds the MAC
// for that VM: checked once the index is unlocked (settle).
type heldClaim struct {
	vm *Ref
	// otherwise is whom the MAC is carried for if the claim fails.
	otherwise Ref
}

// settle checks c's pending claim, if any, against the ledger.
func (ix *Index) settle(c Carrier, claim heldClaim) Carrier {
	if claim.vm == nil {
		return c
	}
	if ix.heldFor == nil || !ix.heldFor(c.MAC, *claim.vm) {
		c.For, c.ForReceiver = claim.otherwise, false
	}
	return c
}

// resolveLocked resolves what the index alone can tell; a claim that rests
// on the ledger is returned to be settled once the index is unlocked.
func (ix *Index) resolveLocked(c Carrier) (Carrier, heldClaim) {
	if c.For == c.Object {
		return c, heldClaim{}
	}
	switch c.For.Kind {
	case VirtualMachine:
		if c.Object.Kind == VirtualMachineInstance && c.Object.Name != c.For.Name {
			break // KubeVirt names a VM's instance after it
		}
		if vm, ok := ix.carrierLocked(c.For, c.MAC); ok {
			c.ForReceiver = vm.ForReceiver
			return c, heldClaim{}
		}
		if ix.heldFor != nil {
			// The VM's while the ledger holds it for the VM.
			vm, _ := ix.carrierLocked(c.For, 0)
			c.ForReceiver = vm.ForReceiver
			forVM := c.For
			return c, heldClaim{vm: &forVM, otherwise: c.Object}
		}
	case VirtualMachineInstance:
		if vmi, ok := ix.carrierLocked(c.For, c.MAC); ok {
			vmi, claim := ix.resolveLocked(vmi)
			forVMI := c.For
			c.For, c.ForReceiver = vmi.For, vmi.ForReceiver
			if claim.vm != nil {
				// The VMI's VM only if the ledger says so; else the VMI's.
				claim.otherwise = forVMI
			}
			return c, claim
		}
	}
	c.For, c.ForReceiver = c.Object, false
	return c, heldClaim{}
}

// carrierLocked returns a carrier of the object r names, with r's UID: its
// carrier of m, or any of its carriers when m is zero.
func (ix *Index) carrierLocked(r Ref, m mac.MAC) (Carrier, bool) {
	cs, _ := ix.objectLocked(objectKey{r.Kind, r.Namespace, r.Name})
	if cs == nil || cs.Object.UID != r.UID {
		return Carrier{}, false
	}
	for i := range cs.MACs {
		if m == 0 || cs.MACs[i].MAC == m {
			return cs.At(i), true
		}
	}
	return Carrier{}, false
}
