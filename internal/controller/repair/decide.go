// Package repair keeps the ledger true to what the objects of the cluster
// carry. It runs on the leader only; everything that serves admissions
// (ledger, pool, carriers, webhook) runs on every replica and imports
// nothing from here.
package repair

import (
	"time"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// OwnerState is what a look at an entry's owner found.
type OwnerState int

const (
	// OwnerNotLookedUp: the decision did not need the owner yet.
	OwnerNotLookedUp OwnerState = iota
	// OwnerGone: no object of that kind, name (and UID, if recorded).
	OwnerGone
	// OwnerExists: the owner exists but does not carry the MAC (for a
	// StatefulSet: it still keeps the ordinal, and its pod is away or is
	// the one the entry was made for).
	OwnerExists
	// OwnerCarries: the owner, read live, carries the MAC (the index had
	// not caught up).
	OwnerCarries
)

// Facts is what the repair knows of one MAC of a block when it judges it.
type Facts struct {
	MAC mac.MAC
	// Entry is the ledger's entry for the MAC; nil if it has none.
	Entry *v1alpha1.MACBlockEntry
	// Carriers are the objects carrying the MAC, oldest first.
	Carriers []carriers.Carrier
	// OwnerKindWatched says the entry's owner kind is indexed: KubeVirt's
	// kinds are only once KubeVirt is found.
	OwnerKindWatched bool
	// Owner is what a look at the entry's owner found.
	Owner OwnerState
	// OwnerCreated is when the owner found by the look was created (zero
	// when not looked up). An entry made at a create has no UID (the API
	// server sets it after admission): a pod of that name created well
	// after the entry was reserved is a later object of the same name (a
	// create retried after a refusal), not the one the entry was made for.
	OwnerCreated time.Time
	// SeenBound says this replica has seen the entry bound before.
	SeenBound bool
	// FirstSeen is when this replica first saw the entry as it is now (its
	// owner and reservation time), on this replica's clock. An entry's
	// age is judged from it, never from the reservation time another
	// replica's clock wrote: clocks differ.
	FirstSeen time.Time
	// UnboundSince is when this replica first saw the entry unbound, for
	// the same owner, whatever renewals moved its reserved time since (zero
	// when not known). Renewals keep an entry waiting at most twice the
	// grace: re-sending a create that a later admission step refuses must
	// not hold a MAC forever with no object.
	UnboundSince time.Time
	// OwnerGoneSince is when this replica first found the owner gone (zero
	// when it did not): a StatefulSet's ordinal keeps its MACs for the
	// grace period after the StatefulSet stops keeping it.
	OwnerGoneSince time.Time
	// Stock says the entry is kept in a replica's stock (heartbeat.Kind),
	// and StockExpires is when that replica's heartbeat runs out on this
	// replica's clock (heartbeat.Tracker): its last renewal seen here plus
	// its duration.
	Stock        bool
	StockExpires time.Time
	// DroppedNewer is, for an entry of a pod that the pod does not carry
	// (an edit dropped it), how many of the pod's entries are carried by
	// it or were dropped more recently: a pod keeps at most MaxHeld.
	DroppedNewer int
}

// RequestWindow is the longest an object can take from its admission to
// its storage: the API server's default request timeout. A pod created
// later than this after an entry without a UID was reserved for its name
// is another pod of that name.
const RequestWindow = time.Minute

// Action is what the repair does with one MAC.
type Action int

const (
	Nothing     Action = iota // leave it as it is
	Keep                      // the entry stays; its owner has it
	Wait                      // the entry stays; judge it again after Decision.After
	LookUpOwner               // read the owner, then decide again
	Adopt                     // add Decision.Entry for a MAC carried without one
	Reown                     // replace the entry by Decision.Entry, for another carrier
	Release                   // remove the entry: its owner had it, and is gone or dropped it
	Expire                    // remove the entry: its owner was never seen with it
)

func (a Action) String() string {
	return [...]string{"nothing", "keep", "wait", "look up owner", "adopt", "reown", "release", "expire"}[a]
}

// Decision is the verdict on one MAC.
type Decision struct {
	// Case is the row of the table (see Decide) that decided.
	Case   int
	Action Action
	// Bound says the entry's owner, or an object carrying the MAC for it,
	// was seen with the MAC.
	Bound bool
	// Entry is the entry to write, for Adopt and Reown.
	Entry v1alpha1.MACBlockEntry
	// Carrier is whom Adopt and Reown hold the MAC for.
	Carrier *carriers.Carrier
	// After is when to judge again, for Wait.
	After time.Duration
	// Collisions are the objects that carry the MAC for someone other
	// than its holder (the entry's owner, or the carrier adopted for):
	// reported with a Warning event on both, never rewritten.
	Collisions []carriers.Carrier
	// Holder is the carrier that holds the MAC, for the collision events.
	Holder *carriers.Carrier
}

// unwatchedRetry is how soon an entry whose owner's kind is not watched
// yet is looked at again.
const unwatchedRetry = 30 * time.Second

// Decide judges one MAC. It is pure: the same facts and time give the
// same decision. maxHeld is the most MACs one pod may hold (what it carries
// plus what edits dropped). The cases, in the order they are tried:
//
//	 #  entry                        carried by                           decision
//	 1  none                         nothing                              nothing to do
//	 2  none                         one or more objects                  adopt: an entry for the oldest carrier
//	                                                                      (for whom it carries the MAC: a VMI's VM);
//	                                                                      carriers the holders' rule refuses collide
//	 3  owner's kind not watched     anything                             keep, look again in 30 s (KubeVirt's
//	                                                                      kinds before KubeVirt is found: never
//	                                                                      release on a guess)
//	 4  kept in stock by a replica   anything                             keep, look again when its heartbeat would
//	    whose heartbeat is alive                                          run out: a live replica's stock is its own
//	                                                                      (it re-owns what its objects carry)
//	 5  kept in stock by a replica   one or more objects                  re-own to the oldest carrier: the replica
//	    whose heartbeat ran out                                           handed it out before it died
//	 6  kept in stock, heartbeat     nothing                              keep, look again when the grace ends: an
//	    ran out < grace ago                                               object it handed the MAC to may still be
//	                                                                      on its way to the API server
//	 7  kept in stock, heartbeat     nothing                              expire: the dead replica's unused stock
//	    ran out >= grace ago
//	 8  yes                          its owner (index, or a live read)    bound: keep; any carrier the holders' rule
//	                                                                      refuses is a collision (events on both)
//	 9  yes                          an object carrying it for the        keep: a VM's MAC stays while its VMI or
//	                                 owner                                launcher pod carries it
//	10  never seen bound, first      not the owner                        keep, look again when the grace ends:
//	    seen < grace ago, first                                           the object may not be stored yet (an entry
//	    seen unbound < 2x grace                                           seen bound does not wait: its owner had it)
//	    ago (renewals extend it
//	    no further)
//	11  named owner not looked up    not the owner                        look the owner up (cache, then live),
//	                                                                      decide again
//	12  owner a pod that exists,     not the pod                          keep: a pod keeps its MACs until it is
//	    the one the entry was made                                        deleted, whatever edits its annotation,
//	    for (seen bound, its UID,                                         up to maxHeld in all (what it carries and
//	    or created within the                                             what edits dropped, newest first); a
//	    request window of the                                             StatefulSet's pod keeps them while it is
//	    entry); or a StatefulSet                                          away, to get them back
//	    that keeps the ordinal
//	13  a StatefulSet gone (deleted, not the pod                          keep, look again when the grace ends:
//	    scaled below the ordinal,                                         the ordinal keeps its MACs for the grace
//	    opted out; or its pod                                             period after the StatefulSet lets it go
//	    created again without the
//	    MAC) less than grace ago
//	14  yes                          another object, not for the owner    re-own: the entry goes to the oldest
//	                                                                      carrier, in one guarded write, so the
//	                                                                      MAC never looks free
//	15  seen bound                   nothing                              release: its owner had it, and is gone,
//	                                                                      dropped it, or dropped more than maxHeld
//	16  never seen bound             nothing                              expire: refused by a later admission
//	                                                                      step, abandoned, or made for an earlier
//	                                                                      object of the owner's name
func Decide(f Facts, now time.Time, grace time.Duration, maxHeld int) Decision {
	e := f.Entry
	if e == nil {
		if len(f.Carriers) == 0 {
			return Decision{Case: 1, Action: Nothing}
		}
		c := f.Carriers[0]
		return Decision{Case: 2, Action: Adopt, Carrier: &c, Entry: entryFor(f.MAC, c, now),
			Holder: &c, Collisions: collisions(f.Carriers[1:], c, nil)}
	}
	if !f.OwnerKindWatched {
		return Decision{Case: 3, Action: Wait, After: unwatchedRetry}
	}
	if f.Stock {
		return decideStock(f, now, grace)
	}
	var other *carriers.Carrier
	for i, c := range f.Carriers {
		switch {
		case holders.OwnerIs(e.Owner, c.Object):
			return Decision{Case: 8, Action: Keep, Bound: true, Holder: &f.Carriers[i], Collisions: collisions(f.Carriers, c, e)}
		case c.For.Is(e.Owner.Kind, e.Owner.Namespace, e.Owner.Name, e.Owner.UID):
			return Decision{Case: 9, Action: Keep, Bound: true}
		case other == nil:
			other = &f.Carriers[i]
		}
	}
	if f.Owner == OwnerCarries {
		return Decision{Case: 8, Action: Keep, Bound: true}
	}
	if !f.SeenBound {
		if after := waitForObject(f, now, grace); after > 0 {
			return Decision{Case: 10, Action: Wait, After: after}
		}
	}
	if e.Owner.Name != "" && f.Owner == OwnerNotLookedUp {
		return Decision{Case: 11, Action: LookUpOwner}
	}
	if e.Owner.Kind == sticky.Kind && f.Owner == OwnerExists {
		return Decision{Case: 12, Action: Keep}
	}
	if e.Owner.Kind == carriers.Pod && f.Owner == OwnerExists && madeFor(f) && f.DroppedNewer < maxHeld {
		return Decision{Case: 12, Action: Keep}
	}
	if e.Owner.Kind == sticky.Kind && f.Owner == OwnerGone && !f.OwnerGoneSince.IsZero() {
		if gone := now.Sub(f.OwnerGoneSince); gone < grace {
			return Decision{Case: 13, Action: Wait, After: grace - gone}
		}
	}
	if other != nil {
		return Decision{Case: 14, Action: Reown, Carrier: other, Entry: entryFor(f.MAC, *other, now)}
	}
	if f.SeenBound {
		return Decision{Case: 15, Action: Release}
	}
	return Decision{Case: 16, Action: Expire}
}

// decideStock judges an entry kept in a replica's stock (cases 4-7).
func decideStock(f Facts, now time.Time, grace time.Duration) Decision {
	switch end := f.StockExpires; {
	case now.Before(end):
		return Decision{Case: 4, Action: Wait, After: end.Sub(now)}
	case len(f.Carriers) > 0:
		c := f.Carriers[0]
		return Decision{Case: 5, Action: Reown, Carrier: &c, Entry: entryFor(f.MAC, c, now),
			Holder: &c, Collisions: collisions(f.Carriers[1:], c, nil)}
	case now.Before(end.Add(grace)):
		return Decision{Case: 6, Action: Wait, After: end.Add(grace).Sub(now)}
	default:
		return Decision{Case: 7, Action: Expire}
	}
}

// madeFor reports whether the existing owner looked up is the object the
// entry was made for, not a later object of the same name: the entry was
// seen bound, records the owner's UID (which the look-up checked), or was
// reserved no more than RequestWindow before the owner was created.
func madeFor(f Facts) bool {
	return f.SeenBound || f.Entry.Owner.UID != "" || f.OwnerCreated.IsZero() ||
		!f.OwnerCreated.After(f.Entry.Reserved.Add(RequestWindow))
}

// waitForObject is how much longer an unbound entry waits for its object:
// the grace period from when this replica first saw it as it is (its own
// clock, never the reserving replica's), but never past twice the grace
// from when it was first seen unbound for the same owner. A create re-sent
// in a loop and refused each time by a later admission step (an invalid
// spec) renews its entry; without the bound it would hold the MAC forever
// with no object. (The price: an object refused for that long and then
// stored loses its entry, and is adopted again once it carries the MAC.)
func waitForObject(f Facts, now time.Time, grace time.Duration) time.Duration {
	seen := f.FirstSeen
	if seen.IsZero() {
		seen = now
	}
	wait := grace - now.Sub(seen)
	if !f.UnboundSince.IsZero() {
		wait = min(wait, 2*grace-now.Sub(f.UnboundSince))
	}
	return wait
}

// collisions are the carriers in cs that the holders' rule would refuse
// the MAC held by holder under entry (nil: not held yet): those carrying
// it for someone else. The two VMs of a decentralized live migration do
// not collide: a receiver carries its source's MACs by design, and the
// repair passes them on once the source is gone (case 14).
func collisions(cs []carriers.Carrier, holder carriers.Carrier, entry *v1alpha1.MACBlockEntry) []carriers.Carrier {
	var out []carriers.Carrier
	for _, c := range cs {
		if c.Object != holder.Object && holders.Collides(c, holder, entry) {
			out = append(out, c)
		}
	}
	return out
}

// entryFor is the entry that holds m for carrier c: for the object c
// carries it for, which is c itself unless c is a VM's instance or pod.
func entryFor(m mac.MAC, c carriers.Carrier, now time.Time) v1alpha1.MACBlockEntry {
	return v1alpha1.MACBlockEntry{
		Offset: ledger.Offset(m),
		MAC:    m.String(),
		Owner: v1alpha1.Owner{
			Kind: c.For.Kind, Namespace: c.For.Namespace, Name: c.For.Name, UID: c.For.UID,
		},
		Network:   c.Network,
		Interface: c.Interface,
		Reserved:  microTime(now),
		Adopted:   true,
	}
}
