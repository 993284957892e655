package integration

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// roundRobin is a TCP proxy standing in for the webhook Service: each
// connection from the API server goes to the next backend in turn.
type roundRobin struct {
	listener net.Listener
	backends []string
	next     atomic.Uint64
	conns    sync.WaitGroup
	served   []atomic.Int64

	mu   sync.Mutex
	open map[net.Conn]bool

	// readiness, when set, says whether backend i may take new
	// connections, as a Service only routes to ready endpoints.
	readiness func(i int) bool
}

// startRoundRobin listens on addr and forwards to backends until the test
// ends. ready, when not nil, says whether backend i takes new connections.
func startRoundRobin(t testing.TB, addr string, ready func(i int) bool, backends ...string) *roundRobin {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy listening on %s: %v", addr, err)
	}
	p := &roundRobin{listener: l, backends: backends, served: make([]atomic.Int64, len(backends)), open: map[net.Conn]bool{}, readiness: ready}
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		// The API server keeps idle connections open: cut them, as a
		// Service endpoint going away would.
		p.mu.Lock()
		for c := range p.open {
			c.Close()
		}
		p.mu.Unlock()
		p.conns.Wait()
	})
	return p
}

func (p *roundRobin) serve() {
	for {
		in, err := p.listener.Accept()
		if err != nil {
			return
		}
		i := p.pick()
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.track(in, true)
			defer p.track(in, false)
			defer in.Close()
			out, err := net.Dial("tcp", p.backends[i])
			if err != nil {
				return // the API server sees a failed call, as with a dead endpoint
			}
			defer out.Close()
			p.served[i].Add(1)
			done := make(chan struct{}, 2)
			go func() { io.Copy(out, in); done <- struct{}{} }()
			go func() { io.Copy(in, out); done <- struct{}{} }()
			<-done
		}()
	}
}

func (p *roundRobin) track(c net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.open[c] = true
	} else {
		delete(p.open, c)
	}
}

// pick returns the next backend in turn, skipping unready ones when
// readiness is known (all unready: plain round robin).
func (p *roundRobin) pick() int {
	n := uint64(len(p.backends))
	start := p.next.Add(1)
	if p.readiness == nil {
		return int(start % n)
	}
	for k := uint64(0); k < n; k++ {
		if i := int((start + k) % n); p.readiness(i) {
			return i
		}
	}
	return int(start % n)
}
