// Package pool hands out MAC addresses. Every MAC in use is a MACAddress
// object named after the MAC; creating it is the lock, so any number of
// replicas may allocate at once. The in-memory index here is only a hint for
// picking a candidate that is probably free: the API server decides.
package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// maxCollisions bounds how many candidates one allocation tries when other
// replicas keep winning them. The index catches up within a watch event, so
// a handful is plenty; the bound keeps a broken cache from looping forever.
const maxCollisions = 64

// ErrNotReady is returned before the range configuration has been loaded,
// and while the indexes of what is held are not synced (ServeWhen).
var ErrNotReady = errors.New("the MAC pool is not ready yet; retry shortly")

// ExhaustedError says no allocatable MAC is free.
type ExhaustedError struct {
	Range mac.Range
	Size  uint64
	Held  uint64
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("no free MAC address in range %s: all %d allocatable addresses are held (%d held); "+
		"delete objects that hold MACs or widen the range in the range ConfigMap", e.Range, e.Size, e.Held)
}

// HeldError says a MAC asked for explicitly is held by another object:
// reserved for it (Holder set), or carried by it without a reservation
// yet (Carrier set).
type HeldError struct {
	MAC     mac.MAC
	Holder  *v1alpha1.MACAddress
	Carrier *carriers.Carrier
}

func (e *HeldError) Error() string {
	var holder, network string
	if e.Holder != nil {
		o := e.Holder.Spec.Owner
		holder, network = fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.DisplayName()), e.Holder.Spec.Network
	} else if e.Carrier != nil {
		holder, network = e.Carrier.Object.String(), e.Carrier.Network
	}
	if network != "" {
		holder += fmt.Sprintf(" (network %s)", network)
	}
	if c := e.Carrier; c != nil && c.For != c.Object {
		holder += " of " + c.For.String()
	}
	return fmt.Sprintf("MAC address %s is already in use by %s; choose another MAC or leave it out to get one assigned", e.MAC, holder)
}

// Request says who a MAC is for.
type Request struct {
	Owner     v1alpha1.Owner
	Network   string
	Interface string
	// DryRun asks for an answer without reserving anything.
	DryRun bool
}

// Pool chooses candidates and reserves them through the API server.
type Pool struct {
	writer client.Client // creates and deletes MACAddress objects
	reader client.Reader // uncached reads, for messages that must be current

	// carried is the index of MACs that objects carry; nil in tests of the
	// pool alone. Index -> pool is the lock order: the index calls
	// SetCarried with its lock held, so the pool never calls the index
	// while holding mu.
	carried *carriers.Index
	// synced, when set, says why the indexes of held MACs are not complete
	// yet (nil once they are); allocation waits for them.
	synced func() error

	mu     sync.Mutex
	loaded bool
	alloc  mac.Allocatable
	held   *indexSet // allocatable indices that are reserved or carried
	cursor uint64
	// marks has every MAC the cluster holds, in range or not, and why.
	marks map[mac.MAC]mark
}

// mark says why a MAC is held; a MAC leaves the index when both are gone.
type mark uint8

const (
	reserved mark = 1 << iota // a MACAddress holds it, or this replica is reserving it
	carried                   // an object carries it
)

// New returns a pool that writes MACAddress objects with writer and reads
// holders with reader (use an uncached reader). It is not ready until
// SetRange is called.
func New(writer client.Client, reader client.Reader) *Pool {
	return &Pool{writer: writer, reader: reader, marks: map[mac.MAC]mark{}}
}

// WatchCarried makes Claim refuse MACs that objects in ix carry for others.
// Candidates skip carried MACs through SetCarried, which ix calls.
func (p *Pool) WatchCarried(ix *carriers.Index) { p.carried = ix }

// ServeWhen makes Allocate and Claim fail with ErrNotReady while synced
// returns an error: a replica whose indexes have not seen every MACAddress
// and every carried MAC would pick MACs in use. Readiness keeps a Service
// from sending such a replica requests; this covers callers that do not
// go through one.
func (p *Pool) ServeWhen(synced func() error) { p.synced = synced }

// Synced returns why the indexes of held MACs are not complete yet, or nil.
func (p *Pool) Synced() error {
	if p.synced == nil {
		return nil
	}
	return p.synced()
}

func (p *Pool) checkSynced() error {
	if p.synced == nil {
		return nil
	}
	if err := p.synced(); err != nil {
		return fmt.Errorf("%w (%v)", ErrNotReady, err)
	}
	return nil
}

// SetCarried records that some object carries m (or none does any more).
// It is the carriers.Index callback.
func (p *Pool) SetCarried(m mac.MAC, isCarried bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setMarkLocked(m, carried, isCarried)
}

// setMarkLocked sets or clears one reason for m being held and keeps the
// candidate index in step: an index is held while any reason is.
func (p *Pool) setMarkLocked(m mac.MAC, why mark, on bool) {
	before := p.marks[m]
	after := before &^ why
	if on {
		after |= why
	}
	if after == 0 {
		delete(p.marks, m)
	} else {
		p.marks[m] = after
	}
	if !p.loaded || (before == 0) == (after == 0) {
		return
	}
	if i, ok := p.alloc.IndexOf(m); ok {
		if after == 0 {
			p.held.Remove(i)
		} else {
			p.held.Add(i)
		}
	}
}

// SetRange switches to a new allocatable set and rebuilds the index from
// the MACs known to be held. MACs held outside the new range stay held: they
// simply are no longer candidates.
func (p *Pool) SetRange(alloc mac.Allocatable) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.alloc = alloc
	p.rebuildLocked()
	// A random start keeps replicas (and restarts of one) from walking the
	// same candidates in step.
	p.cursor = rand.Uint64N(alloc.Size())
	p.loaded = true
}

// rebuildLocked recomputes the index of the range from marks.
func (p *Pool) rebuildLocked() {
	p.held = newIndexSet(p.alloc.Size())
	for m := range p.marks {
		if i, ok := p.alloc.IndexOf(m); ok {
			p.held.Add(i)
		}
	}
}

// Ready reports whether a range has been loaded.
func (p *Pool) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.loaded
}

// Stats is a point-in-time view of the pool.
type Stats struct {
	Range mac.Range
	Size  uint64 // allocatable addresses in the range
	Held  uint64 // of those, held (reserved or carried)
	Total uint64 // every MAC held, in the range or not
}

// Stats returns the pool's current numbers.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		return Stats{Total: uint64(len(p.marks))}
	}
	return Stats{Range: p.alloc.Range(), Size: p.alloc.Size(), Held: p.held.Len(), Total: uint64(len(p.marks))}
}

// MarkHeld records that the cluster holds m (a MACAddress exists).
func (p *Pool) MarkHeld(m mac.MAC) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setMarkLocked(m, reserved, true)
}

// MarkFree records that no MACAddress holds m any more. m stays taken
// while an object carries it.
func (p *Pool) MarkFree(m mac.MAC) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setMarkLocked(m, reserved, false)
}

// Replace resets the set of reserved MACs, e.g. from a full list of
// MACAddress objects, so a hint that went stale (a watch event lost) heals.
// Carried MACs stay as the carrier index says. The cursor stays where it
// is, so a just-freed MAC is still not handed straight back.
func (p *Pool) Replace(held []mac.MAC) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for m, why := range p.marks {
		if why &^= reserved; why == 0 {
			delete(p.marks, m)
		} else {
			p.marks[m] = why
		}
	}
	for _, m := range held {
		p.marks[m] |= reserved
	}
	if p.loaded {
		p.rebuildLocked()
	}
}

// candidate picks the next probably-free MAC after the cursor and marks it
// held so concurrent requests on this replica pick others.
func (p *Pool) candidate() (mac.MAC, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.loaded {
		return 0, fmt.Errorf("%w (range configuration not loaded)", ErrNotReady)
	}
	size := p.alloc.Size()
	for {
		if p.held.Len() >= size {
			return 0, &ExhaustedError{Range: p.alloc.Range(), Size: size, Held: p.held.Len()}
		}
		i, ok := p.held.NextFree(p.cursor)
		if !ok {
			i, _ = p.held.NextFree(0) // wrap around: Len < size, so one exists
		}
		p.cursor = (i + 1) % size
		m := p.alloc.At(i)
		p.setMarkLocked(m, reserved, true)
		return m, nil
	}
}

// Unmark undoes the in-memory mark of a candidate that was not reserved: the
// picks of a dry-run request once it has been answered, or a failed create.
// If another replica reserved the same MAC meanwhile, the next full resync
// (Replace) marks it again; until then the create would catch it.
func (p *Pool) Unmark(m mac.MAC) { p.MarkFree(m) }

// Allocate reserves a free MAC for r. With r.DryRun it picks a MAC that is
// free now and reserves nothing; the pick stays marked so the same request
// gets distinct MACs, and the caller Unmarks the picks once it has answered.
func (p *Pool) Allocate(ctx context.Context, r Request) (mac.MAC, error) {
	if err := p.checkSynced(); err != nil {
		return 0, err
	}
	for attempt := 0; attempt < maxCollisions; attempt++ {
		m, err := p.candidate()
		if err != nil {
			return 0, err
		}
		if r.DryRun {
			return m, nil
		}
		err = p.writer.Create(ctx, newMACAddress(m, r))
		switch {
		case err == nil:
			return m, nil
		case apierrors.IsAlreadyExists(err):
			continue // another replica won it; the mark stays, the watch confirms it
		default:
			p.Unmark(m)
			return 0, fmt.Errorf("reserving MAC %s: %w", m, err)
		}
	}
	return 0, fmt.Errorf("no free MAC found after %d candidates that turned out to be held; the pool's view is catching up, retry", maxCollisions)
}

// Claim reserves the MAC m that a user asked for. It may lie outside the
// range: a MAC in use must be unique whoever chose it. A reservation left by
// an earlier attempt to create the same named object is accepted; created
// says whether this call made the reservation (only those may be released
// if the request fails after all: an accepted one may belong to an object
// that was persisted by that earlier attempt).
func (p *Pool) Claim(ctx context.Context, m mac.MAC, r Request) (created bool, err error) {
	if err := p.checkSynced(); err != nil {
		return false, err
	}
	if c := p.carriedByOther(m, r.Owner); c != nil {
		return false, &HeldError{MAC: m, Carrier: c}
	}
	if r.DryRun {
		holder, err := p.Holder(ctx, m)
		switch {
		case err != nil:
			return false, err
		case holder == nil:
			return true, nil
		case sameReservation(holder, r):
			return false, nil
		default:
			return false, &HeldError{MAC: m, Holder: holder}
		}
	}
	for attempt := 0; ; attempt++ {
		err = p.writer.Create(ctx, newMACAddress(m, r))
		if err == nil {
			p.MarkHeld(m)
			return true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("reserving MAC %s: %w", m, err)
		}
		p.MarkHeld(m)
		holder := &v1alpha1.MACAddress{}
		err = p.reader.Get(ctx, client.ObjectKey{Name: m.ObjectName()}, holder)
		switch {
		case apierrors.IsNotFound(err) && attempt < claimAttempts:
			continue // released just now: reserve it afresh
		case apierrors.IsNotFound(err):
			return false, fmt.Errorf("MAC address %s was being released just now; retry", m)
		case err != nil:
			return false, fmt.Errorf("MAC address %s is in use; reading its holder failed: %w", m, err)
		case !sameReservation(holder, r):
			return false, &HeldError{MAC: m, Holder: holder}
		}
		// Accepting the existing reservation races with the controller,
		// which may be releasing it at this moment (a VM update that puts
		// back a MAC it had dropped, a reservation about to expire). The
		// controller deletes only the version it judged; renewing bumps
		// that version, so its delete fails and it looks again, and sees
		// the object this request is about to store.
		err = p.renew(ctx, holder)
		switch {
		case err == nil:
			return false, nil
		case (apierrors.IsConflict(err) || apierrors.IsNotFound(err)) && attempt < claimAttempts:
			continue
		default:
			return false, fmt.Errorf("renewing the reservation of MAC %s: %w", m, err)
		}
	}
}

// carriedByOther returns an object that carries m on behalf of anyone but
// owner, or nil. What owner's own objects carry (the object itself,
// re-applied; a VM's running VMI and virt-launcher pod) is its own.
func (p *Pool) carriedByOther(m mac.MAC, owner v1alpha1.Owner) *carriers.Carrier {
	if p.carried == nil {
		return nil
	}
	for _, c := range p.carried.Of(m) {
		if !c.For.Is(owner.Kind, owner.Namespace, owner.Name, owner.UID) {
			return &c
		}
	}
	return nil
}

// claimAttempts bounds Claim's retries when the reservation it accepts is
// changed or released under it.
const claimAttempts = 3

// RenewedAnnotation records when a request last accepted an existing
// reservation (see Claim).
const RenewedAnnotation = "kubemacpool.io/renewed"

func (p *Pool) renew(ctx context.Context, holder *v1alpha1.MACAddress) error {
	holder = holder.DeepCopy()
	if holder.Annotations == nil {
		holder.Annotations = map[string]string{}
	}
	holder.Annotations[RenewedAnnotation] = time.Now().UTC().Format(time.RFC3339Nano)
	return p.writer.Update(ctx, holder)
}

// Holder returns the MACAddress holding m, read from the API server, or
// nil when m is free.
func (p *Pool) Holder(ctx context.Context, m mac.MAC) (*v1alpha1.MACAddress, error) {
	holder := &v1alpha1.MACAddress{}
	err := p.reader.Get(ctx, client.ObjectKey{Name: m.ObjectName()}, holder)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("checking MAC %s: %w", m, err)
	}
	return holder, nil
}

// Release deletes a reservation the current request made but will not use
// (a later network of the same object was refused). Nothing can have bound
// it: the object it was for has not been persisted.
func (p *Pool) Release(ctx context.Context, m mac.MAC) error {
	obj := &v1alpha1.MACAddress{}
	obj.Name = m.ObjectName()
	err := p.writer.Delete(ctx, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing MAC %s: %w", m, err)
	}
	p.MarkFree(m)
	return nil
}

// sameReservation reports whether holder already holds the MAC for the
// object of the request: a reservation left by a create that was retried,
// or (on an update, where the object's UID is known) a MAC bound to it.
func sameReservation(holder *v1alpha1.MACAddress, r Request) bool {
	h, o := holder.Spec.Owner, r.Owner
	if o.Name == "" || h.Kind != o.Kind || h.Namespace != o.Namespace || h.Name != o.Name {
		return false
	}
	return !holder.IsBound() || (o.UID != "" && h.UID == o.UID)
}

func newMACAddress(m mac.MAC, r Request) *v1alpha1.MACAddress {
	return &v1alpha1.MACAddress{
		ObjectMeta: metav1.ObjectMeta{Name: m.ObjectName()},
		Spec: v1alpha1.MACAddressSpec{
			Address:   m.String(),
			Owner:     r.Owner,
			Network:   r.Network,
			Interface: r.Interface,
		},
		Status: v1alpha1.MACAddressStatus{Phase: v1alpha1.PhaseReserved},
	}
}
