// Package holders is the one place that says who holds a MAC and who may
// take or share it. The webhook (real and dry-run), the pool, the repair, the
// collision reports and `kubemacpool who` ask it; none of them encodes the
// rule again. It runs on every replica and is pure: it judges what it is
// given (a ledger entry, the objects carrying the MAC), so the same facts give
// the same verdict wherever they are judged.
package holders

import (
	"fmt"
	"strings"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// OwnerIs reports whether an entry held for o is held for the object obj.
// An entry made for a generateName object matches any object whose name
// starts with that prefix; a UID, when recorded on both sides, must agree.
// An entry held for a StatefulSet's ordinal matches the pod of that name,
// whatever its UID: each pod created again under the name is it.
func OwnerIs(o v1alpha1.Owner, obj carriers.Ref) bool {
	if o.Kind == sticky.Kind && obj.Kind == carriers.Pod {
		return o.Namespace == obj.Namespace && obj.Name == sticky.PodName(o.Name, o.Ordinal)
	}
	if o.Kind != obj.Kind || o.Namespace != obj.Namespace {
		return false
	}
	if o.UID != "" && obj.UID != "" && o.UID != obj.UID {
		return false
	}
	if o.Name != "" {
		return o.Name == obj.Name
	}
	return o.GenerateName != "" && len(obj.Name) > len(o.GenerateName) && strings.HasPrefix(obj.Name, o.GenerateName)
}

// SameOwner reports whether a request for owner r is the object an entry
// held for o was made for: the same named object asking again (a retried
// create, a VM update putting back a MAC it had). Objects named only by
// generateName are never the same: nothing tells two of them apart.
func SameOwner(o, r v1alpha1.Owner) bool {
	if r.Name == "" || o.Kind != r.Kind || o.Namespace != r.Namespace || o.Name != r.Name || o.Ordinal != r.Ordinal {
		return false
	}
	return o.UID == "" || r.UID == "" || o.UID == r.UID
}

// CarriesFor reports whether carrier c carries its MAC for the owner of an
// entry: c is that owner, or carries the MAC on its behalf (a VM's VMI or
// virt-launcher pod).
func CarriesFor(o v1alpha1.Owner, c carriers.Carrier) bool {
	return OwnerIs(o, c.Object) || c.For.Is(o.Kind, o.Namespace, o.Name, o.UID)
}

// Bound reports whether an entry held for o is bound: one of cs, the
// carriers of its MAC, carries it for o. Nothing is written when an entry
// becomes bound; this is how everyone tells.
func Bound(o v1alpha1.Owner, cs []carriers.Carrier) bool {
	for _, c := range cs {
		if CarriesFor(o, c) {
			return true
		}
	}
	return false
}

// OwnerOf is the entry owner that holds a MAC for the object r names.
func OwnerOf(r carriers.Ref) v1alpha1.Owner {
	return v1alpha1.Owner{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, UID: r.UID}
}

// Request is who asks for a MAC.
type Request struct {
	Owner v1alpha1.Owner
	// Receiver says the owner is a VM waiting to receive a decentralized
	// live migration (runStrategy WaitAsReceiver). KubeVirt creates such a
	// VM as a copy of its migration source, MACs included, before the
	// migration objects that pair the two exist; while it waits it runs
	// nothing, so nothing of it is on a network yet. What puts the MAC on
	// a network (the migration's target pod, leaving WaitAsReceiver) is
	// judged against the migration's pairing by the webhook (PairedWith).
	Receiver bool
	// PairedWith are the VMs that a decentralized live migration pairs the
	// owner, a receiving VM, with as their copy: both sides'
	// VirtualMachineInstanceMigrations name them with one migrationID
	// (and, once the receiver leaves WaitAsReceiver, the migration
	// succeeded). The webhook finds them; the rule only reads them.
	PairedWith []carriers.Ref
}

// pairedWith reports whether r's pairing names the VM an entry is held for.
func (r Request) pairedWith(o v1alpha1.Owner) bool {
	for _, vm := range r.PairedWith {
		if vm.Is(o.Kind, o.Namespace, o.Name, o.UID) {
			return true
		}
	}
	return false
}

// Facts is what is known of one MAC when a request for it is judged.
type Facts struct {
	MAC mac.MAC
	// Entry is the ledger's entry for the MAC (nil: none). In a block
	// write it is the entry of the block being written, which decides; in
	// a dry run, the index's.
	Entry *v1alpha1.MACBlockEntry
	// Carriers are the objects carrying the MAC, with their claims
	// resolved (carriers.Index.Of).
	Carriers []carriers.Carrier
	// Peers are the entries that peer clusters' ledgers hold for the MAC
	// (clusters sharing an L2 network with this one), as last seen.
	Peers []PeerEntry
}

// PeerEntry is an entry of a peer cluster's ledger.
type PeerEntry struct {
	// Cluster is the peer's name, as its Secret's kubemacpool.io/peer
	// label gives it.
	Cluster string
	Entry   v1alpha1.MACBlockEntry
}

// Verdict is the answer to a request for one MAC.
type Verdict struct {
	// Case is the row of MayTake's table that decided.
	Case int
	// Allowed says the request may have the MAC.
	Allowed bool
	// Own says the entry is the request's own already (it asks again):
	// the entry is renewed rather than added.
	Own bool
	// Shared says the MAC stays held by its holder, a VM the receiving VM
	// is a copy of: nothing is written for the request.
	Shared bool
	// Entry is the entry that refuses the request; Carrier the object.
	Entry   *v1alpha1.MACBlockEntry
	Carrier *carriers.Carrier
	// Cluster names the peer cluster whose ledger holds Entry (case 11);
	// empty: this cluster's.
	Cluster string
}

// MayTake judges whether request r may have MAC f.MAC. Every caller that
// decides whether a MAC may go to an object asks it. Cases 1-3 judge the
// entry, 4-8 each carrier, 10-11 the peer clusters' entries; a carrier that
// refuses (8) is named before an entry that refuses (3), since it is what
// has the MAC on a network, and this cluster's entry before a peer's. The
// cases:
//
//	#  ledger entry of the MAC               carriers of the MAC                      verdict
//	1  held for r's owner (SameOwner)        -                                        own: go on to the carriers,
//	                                                                                  the entry is renewed
//	2  held for a VM, r a VM that waits as   -                                        shared: go on to the carriers,
//	   a receiver, or that a migration                                                the VM keeps its entry
//	   pairs with that VM (PairedWith)
//	3  held for anyone else                  -                                        refused, naming the holder
//	4  -                                     c carries it for r's owner (r itself     c is no obstacle
//	                                         re-applied, a VM's VMI or launcher pod)
//	5  -                                     c is the pod a StatefulSet ordinal r     c is no obstacle
//	                                         keeps the MAC for (gone or going)
//	6  -                                     r a receiver, c carries it for a VM      c is no obstacle (the source)
//	7  own (case 1), r a VM                  c carries it for a receiver VM           c is no obstacle: the source
//	                                                                                  keeps running while its copy waits
//	8  -                                     any other carrier                        refused, naming the carrier
//	9  none, own or shared                   no obstacle                              allowed
//
// A peer cluster's entry (f.Peers) is judged only when r holds the MAC
// here neither by its entry (1) nor by carrying it (4): an object that
// already has the MAC keeps it (a VM update re-applying it), and the
// collision between the clusters is reported, not refused on every edit.
//
//	#   peer cluster's entry                                                          verdict
//	10  held for a VM, r a VM that waits as a receiver: the source of a               no obstacle
//	    decentralized live migration from that cluster
//	11  held for anyone else                                                          refused, naming the cluster
//	                                                                                  and the holder
func MayTake(r Request, f Facts) Verdict {
	own, shared, carriesIt := false, false, false
	var refusedBy *v1alpha1.MACBlockEntry
	if e := f.Entry; e != nil {
		switch {
		case SameOwner(e.Owner, r.Owner):
			own = true
		case e.Owner.Kind == carriers.VirtualMachine && r.Owner.Kind == carriers.VirtualMachine && (r.Receiver || r.pairedWith(e.Owner)):
			shared = true
		default:
			held := *e
			refusedBy = &held
		}
	}
	for _, c := range f.Carriers {
		switch {
		case c.For.Is(r.Owner.Kind, r.Owner.Namespace, r.Owner.Name, r.Owner.UID):
			carriesIt = true
		case r.Owner.Kind == sticky.Kind && OwnerIs(r.Owner, c.Object):
			carriesIt = true
		case r.Receiver && c.For.Kind == carriers.VirtualMachine:
		case own && c.ForReceiver && r.Owner.Kind == carriers.VirtualMachine:
		default:
			found := c
			return Verdict{Case: 8, Carrier: &found}
		}
	}
	if refusedBy != nil {
		return Verdict{Case: 3, Entry: refusedBy}
	}
	if !own && !carriesIt {
		for _, p := range f.Peers {
			if r.Receiver && r.Owner.Kind == carriers.VirtualMachine && p.Entry.Owner.Kind == carriers.VirtualMachine {
				continue // case 10
			}
			held := p.Entry
			return Verdict{Case: 11, Entry: &held, Cluster: p.Cluster}
		}
	}
	return Verdict{Case: 9, Allowed: true, Own: own, Shared: shared}
}

// CollidesAcross reports whether carrier c, an object of this cluster,
// collides with the entry a peer cluster holds for the same MAC: whether
// MayTake refuses c's holder the MAC, judged against the peer's entry alone
// (c's own entry here would make it its own).
func CollidesAcross(c carriers.Carrier, p PeerEntry) bool {
	r := Request{Owner: OwnerOf(c.For), Receiver: c.ForReceiver}
	return !MayTake(r, Facts{MAC: c.MAC, Peers: []PeerEntry{p}}).Allowed
}

// Collides reports whether carrier c, carrying the same MAC as holder (the
// carrier the MAC is held for, under entry; nil: not held yet), collides
// with it: whether MayTake refuses each of them the MAC the other carries.
// One that may share the other's (a VM's VMI, a migration's receiver and
// source, whichever holds the entry) is no collision.
func Collides(c, holder carriers.Carrier, entry *v1alpha1.MACBlockEntry) bool {
	asks := func(who, other carriers.Carrier) bool {
		r := Request{Owner: OwnerOf(who.For), Receiver: who.ForReceiver}
		return MayTake(r, Facts{MAC: who.MAC, Entry: entry, Carriers: []carriers.Carrier{other}}).Allowed
	}
	return !asks(c, holder) && !asks(holder, c)
}

// Describe names an entry's owner for people: "Pod ns/name (network n)",
// with a StatefulSet ordinal's pod.
func Describe(e *v1alpha1.MACBlockEntry) string {
	o := e.Owner
	if heartbeat.IsStock(o) {
		// Explicit MACs are rare and chosen outside the hot range; a
		// replica's stock is short-lived and moves with its cursor.
		return fmt.Sprintf("kubemacpool: it is kept in stock by replica %s (incarnation %s) for pods and VMs that ask for no MAC", o.Name, o.UID)
	}
	holder := fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.DisplayName())
	if o.Kind == sticky.Kind {
		holder += " for its pod " + sticky.PodName(o.Name, o.Ordinal)
	}
	if e.Network != "" {
		holder += fmt.Sprintf(" (network %s)", e.Network)
	}
	return holder
}

// HeldError says a MAC asked for explicitly is held by another object:
// reserved for it in the ledger (Entry set), or carried by it (Carrier
// set).
type HeldError struct {
	MAC     mac.MAC
	Entry   *v1alpha1.MACBlockEntry
	Carrier *carriers.Carrier
	// Cluster is the peer cluster whose ledger holds Entry; empty: this
	// cluster's.
	Cluster string
}

// Err is the refusal a verdict that does not allow says, or nil.
func (v Verdict) Err(m mac.MAC) error {
	if v.Allowed {
		return nil
	}
	return &HeldError{MAC: m, Entry: v.Entry, Carrier: v.Carrier, Cluster: v.Cluster}
}

func (e *HeldError) Error() string {
	var holder string
	if e.Entry != nil {
		holder = Describe(e.Entry)
	} else if c := e.Carrier; c != nil {
		holder = c.Object.String()
		if c.Network != "" {
			holder += fmt.Sprintf(" (network %s)", c.Network)
		}
		if c.For != c.Object {
			holder += " of " + c.For.String()
		}
	}
	where := ""
	if e.Cluster != "" {
		where = " in cluster " + e.Cluster
	}
	return fmt.Sprintf("MAC address %s is already in use%s by %s; choose another MAC or leave it out to get one assigned", e.MAC, where, holder)
}
