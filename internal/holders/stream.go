package holders

import (
	"context"
	"sync"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// What changed of a MAC.
const (
	// Reserved: its ledger entry appeared (On) or went.
	Reserved ChangeKind = iota
	// Carried: an object started carrying it (On), or the last one stopped
	// or the set of its carriers changed.
	Carried
	// Peer: a peer cluster's ledger gained (On) or lost an entry for it;
	// whether any peer still holds it is asked of the peers' index.
	Peer
)

// ChangeKind says which index a Change comes from.
type ChangeKind uint8

// Change is one change of what is known of a MAC.
type Change struct {
	MAC  mac.MAC
	Kind ChangeKind
	// On: the MAC has an entry, or is carried, after the change.
	On bool
}

// Stream is the one change stream of a replica: the ledger's index and the
// carrier index publish every change of a MAC to it, and it delivers them,
// in the order they were published, to its subscribers (the pool's
// candidate index, the repair) from one goroutine of its own. Nothing is
// ever called with an index's lock held: Publish only appends to a queue,
// under a lock of the stream's own that is held for nothing else, so no
// lock is taken while another is held and there is no lock order to keep.
//
// A subscriber therefore hears of a change shortly after the index has
// it. What it keeps is a hint for choosing candidates; the decisions read
// the indexes themselves (the holders' rule, at the block write).
type Stream struct {
	mu          sync.Mutex
	queue       []Change
	wake        chan struct{}
	published   uint64
	delivered   uint64
	subscribers []func(Change)
}

// NewStream returns a stream with no subscribers.
func NewStream() *Stream { return &Stream{wake: make(chan struct{}, 1)} }

// Subscribe adds f, called with every change from then on, in order, from
// the stream's goroutine: f must not block for long. Subscribe before
// Start.
func (s *Stream) Subscribe(f func(Change)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subscribers = append(s.subscribers, f)
}

// Publish queues c. It never blocks and may be called with any lock held.
func (s *Stream) Publish(c Change) {
	s.mu.Lock()
	s.queue = append(s.queue, c)
	s.published++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Published is how many changes were published so far.
func (s *Stream) Published() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.published
}

// Delivered is how many changes every subscriber has been told of.
func (s *Stream) Delivered() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered
}

// NeedLeaderElection is false: every replica delivers its own changes.
func (s *Stream) NeedLeaderElection() bool { return false }

// Start delivers changes until ctx ends.
func (s *Stream) Start(ctx context.Context) error {
	for {
		s.mu.Lock()
		batch, subs := s.queue, s.subscribers
		s.queue = nil
		s.mu.Unlock()
		for _, c := range batch {
			for _, f := range subs {
				f(c)
			}
		}
		if len(batch) > 0 {
			s.mu.Lock()
			s.delivered += uint64(len(batch))
			s.mu.Unlock()
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
	}
}

// CaughtUp returns a check that reports whether everything published when
// it was made has been delivered, and keeps reporting true once it has: a
// replica serves once its indexes are synced and their changes so far have
// reached the pool.
func (s *Stream) CaughtUp() func() bool {
	target := s.Published()
	var reached bool
	var mu sync.Mutex
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		if !reached {
			reached = s.Delivered() >= target
		}
		return reached
	}
}
