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
}

// startRoundRobin listens on addr and forwards to backends until the test ends.
func startRoundRobin(t testing.TB, addr string, backends ...string) *roundRobin {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy listening on %s: %v", addr, err)
	}
	p := &roundRobin{listener: l, backends: backends, served: make([]atomic.Int64, len(backends)), open: map[net.Conn]bool{}}
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
		i := int(p.next.Add(1) % uint64(len(p.backends)))
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
