package holders

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Changes reach every subscriber in the order they were published, from
// publishers that hold locks of their own; CaughtUp turns true once what
// was published before it was asked for has been delivered, and stays so.
func TestStreamDeliversInOrder(t *testing.T) {
	s := NewStream()
	var mu sync.Mutex
	var got []Change
	release := make(chan struct{})
	s.Subscribe(func(c Change) {
		<-release // the first delivery waits: publishers must not
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Start(ctx)

	var publisherLock sync.Mutex // an index's lock, held while publishing
	for i := range 100 {
		publisherLock.Lock()
		s.Publish(Change{MAC: mac.MAC(i), Kind: ChangeKind(i % 2), On: i%3 == 0})
		publisherLock.Unlock()
	}
	caughtUp := s.CaughtUp()
	if caughtUp() {
		t.Fatal("caught up before anything was delivered")
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for !caughtUp() {
		if time.Now().After(deadline) {
			t.Fatal("never caught up")
		}
		time.Sleep(time.Millisecond)
	}
	s.Publish(Change{MAC: 1000})
	if !caughtUp() {
		t.Fatal("a later change made a caught-up check false again")
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range got[:100] {
		if c.MAC != mac.MAC(i) || c.Kind != ChangeKind(i%2) || c.On != (i%3 == 0) {
			t.Fatalf("change %d delivered as %+v", i, c)
		}
	}
}
