// Package peers makes clusters that share an L2 network see each other's
// MACs. An admin lists the peer clusters as Secrets labelled
// kubemacpool.io/peer in kubemacpool's namespace, each with a kubeconfig
// that may read the peer's MAC blocks. Every replica watches each peer's
// ledger and treats what it holds as held here (the holders' rule, cases
// 10-11), and picks new MACs only in the blocks the split gives this
// cluster: two clusters picking at once never meet, whether or not they see
// each other's writes in time.
package peers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// probeTimeout bounds one read of a peer's API server.
const probeTimeout = 5 * time.Second

// Set is the peers of this cluster, as one replica sees them. It runs on
// every replica: every replica serves admissions.
type Set struct {
	// Cache holds the Secrets of Namespace.
	Cache     cache.Cache
	Namespace string
	// Self is this cluster's name, the one its peers' Secrets give it.
	Self     string
	Scheme   *runtime.Scheme
	Recorder events.EventRecorder
	Log      logr.Logger
	// Probe is how often each peer's API server is read to tell whether
	// it is up.
	Probe time.Duration
	// OnChange is told that a peer's ledger gained or lost an entry for m,
	// with that ledger's lock held: it must only queue the change.
	OnChange func(m mac.MAC)
	// OnSplit is told the split of the blocks whenever the set of peer
	// names changes (and once at start).
	OnSplit func(Split)

	mu      sync.Mutex
	listed  bool
	peers   map[string]*peer // running, by cluster name
	retired []*peer          // replaced by a new kubeconfig, held until their successor has synced
	refused map[string]string
	// names are the clusters of the split in force (nil before the
	// first): OnSplit is told only when they change.
	names []string
	wake  chan struct{}
	// watching is peers then retired, current ones first by name, as of
	// the last change: admissions read it without taking mu.
	watching atomic.Pointer[[]*peer]
	// settledOnce latches Settled: see there.
	settledOnce atomic.Bool
}

// peer is one peer cluster being watched.
type peer struct {
	Config
	ledger *ledger.Ledger
	client client.Client
	cancel context.CancelFunc
	done   chan struct{}

	settled atomic.Bool // its ledger synced once, or a read failed
	mu      sync.Mutex
	probed  bool // a probe has ended
	up      bool // the last probe succeeded
}

// NeedLeaderElection is false: every replica needs the peers' ledgers.
func (s *Set) NeedLeaderElection() bool { return false }

func (s *Set) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
		s.peers = map[string]*peer{}
		s.refused = map[string]string{}
	}
}

func (s *Set) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start follows the peer Secrets until ctx ends.
func (s *Set) Start(ctx context.Context) error {
	s.init()
	informer, err := s.Cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("watching peer Secrets: %w", err)
	}
	reg, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	})
	if err != nil {
		return fmt.Errorf("watching peer Secrets: %w", err)
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil
	}
	s.reconcile(ctx)
	tick := time.NewTicker(s.Probe)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.stopAll()
			return nil
		case <-s.wake:
			s.reconcile(ctx)
		case <-tick.C:
			s.retire()
		}
	}
}

// reconcile starts, restarts and stops peers to match the Secrets, and
// gives the pool the split of their names.
func (s *Set) reconcile(ctx context.Context) {
	configs, errs, err := ReadSecrets(ctx, s.Cache, s.Namespace, s.Self, true)
	if err != nil {
		s.Log.Error(err, "reading peer Secrets")
		return
	}
	s.report(errs)
	var names []string
	want := map[string]Config{}
	for _, c := range configs {
		if c.Name == "" || s.Self == "" || c.Name == s.Self {
			continue
		}
		// Every peer named counts in the split (NewSplit drops repeats),
		// whether or not its Secret is usable: it picks in its own blocks
		// all the same.
		names = append(names, c.Name)
		if _, dup := want[c.Name]; !dup && errs[c.Secret] == nil {
			want[c.Name] = c
		}
	}
	var stop []*peer
	s.mu.Lock()
	for name, p := range s.peers {
		c, ok := want[name]
		switch {
		case !ok:
			stop = append(stop, p)
			delete(s.peers, name)
		case c.kubeconfig != p.kubeconfig || c.Secret != p.Secret:
			// A rotated kubeconfig: the old watch keeps what it knew held
			// until the new one has read the ledger (retire).
			s.retired = append(s.retired, p)
			s.peers[name] = s.startLocked(ctx, c)
		}
	}
	for name, c := range want {
		if s.peers[name] == nil {
			s.peers[name] = s.startLocked(ctx, c)
		}
	}
	s.publishLocked()
	split := NewSplit(s.Self, names)
	changed := s.names == nil || !slices.Equal(s.names, split.Names())
	s.names = split.Names()
	s.mu.Unlock()
	for _, p := range stop {
		s.stop(p)
	}
	if changed {
		s.Log.Info("blocks split between clusters", "clusters", split.Names(), "self", s.Self)
		if s.OnSplit != nil {
			s.OnSplit(split)
		}
	}
	// Only now may the replica serve: the pool has its share.
	s.mu.Lock()
	s.listed = true
	s.mu.Unlock()
}

// report records the refused Secrets: a metric while refused, and an
// event and a log line when a refusal appears or changes.
func (s *Set) report(errs map[string]error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for secret, why := range s.refused {
		if errs[secret] == nil {
			metrics.PeerConfigInvalid.DeleteLabelValues(secret)
			delete(s.refused, secret)
			s.Log.Info("peer Secret accepted now", "secret", secret)
		} else if errs[secret].Error() == why {
			delete(errs, secret) // reported already
		}
	}
	for secret, err := range errs {
		s.refused[secret] = err.Error()
		metrics.PeerConfigInvalid.WithLabelValues(secret).Set(1)
		s.Log.Error(err, "peer Secret refused", "secret", secret)
		s.event(secret, corev1.EventTypeWarning, "InvalidPeer", "kubemacpool refuses peer Secret %s/%s: %v", s.Namespace, secret, err)
	}
}

func (s *Set) event(secret, kind, reason, format string, args ...any) {
	if s.Recorder == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: s.Namespace, Name: secret}
	s.Recorder.Eventf(ref, nil, kind, reason, "WatchPeer", format, args...)
}

// startLocked begins watching a peer's ledger and probing its API server.
func (s *Set) startLocked(ctx context.Context, c Config) *peer {
	p := &peer{Config: c, done: make(chan struct{})}
	log := s.Log.WithValues("peer", c.Name)
	p.ledger = &ledger.Ledger{Log: log, OnChange: func(m mac.MAC, _ bool) { s.OnChange(m) }}
	pctx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	var err error
	p.ledger.Cache, err = cache.New(c.Rest, cache.Options{Scheme: s.Scheme, Mapper: blockMapper(), DefaultTransform: ledger.Compact})
	if err == nil {
		p.client, err = c.Client(s.Scheme)
	}
	if err != nil {
		// Only a malformed configuration fails here; the peer stays down.
		log.Error(err, "cannot watch the peer's MAC blocks")
		p.settled.Store(true)
		metrics.PeerUp.WithLabelValues(c.Name).Set(0)
		close(p.done)
		return p
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := p.ledger.Cache.Start(pctx); err != nil {
			log.Error(err, "watching the peer's MAC blocks")
		}
	}()
	go func() {
		defer wg.Done()
		if err := p.ledger.Start(pctx); err != nil {
			log.Error(err, "indexing the peer's MAC blocks")
		}
	}()
	go func() {
		defer wg.Done()
		s.probe(pctx, p)
	}()
	go func() {
		wg.Wait()
		close(p.done)
	}()
	return p
}

// probe reads the peer's API server every Probe until ctx ends, and
// reports up and down.
func (s *Set) probe(ctx context.Context, p *peer) {
	for {
		rctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := p.client.List(rctx, &v1alpha1.MACBlockList{}, client.Limit(1))
		cancel()
		if ctx.Err() != nil {
			return
		}
		s.observe(p, err)
		// Poll more often until the ledger has synced: readiness waits.
		every := s.Probe
		if !p.settled.Load() {
			every = min(every, 200*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// observe records one probe's outcome.
func (s *Set) observe(p *peer, err error) {
	up := err == nil
	if err != nil || p.ledger.Synced() {
		p.settled.Store(true)
	}
	entries := p.ledger.Len()
	metrics.PeerUp.WithLabelValues(p.Name).Set(map[bool]float64{true: 1, false: 0}[up])
	metrics.PeerEntries.WithLabelValues(p.Name).Set(float64(entries))
	p.mu.Lock()
	first, was := !p.probed, p.up
	p.probed, p.up = true, up
	p.mu.Unlock()
	switch {
	case !up && (first || was):
		s.Log.Error(err, "peer cluster unreachable: its last known entries stay held", "peer", p.Name, "entries", entries)
		s.event(p.Secret, corev1.EventTypeWarning, "PeerUnreachable",
			"cannot read the MAC blocks of peer cluster %s: %v; the %d entries last seen there stay held here, and admissions go on", p.Name, err, entries)
	case up && !first && !was:
		s.Log.Info("peer cluster reachable again", "peer", p.Name)
		s.event(p.Secret, corev1.EventTypeNormal, "PeerReachable", "the MAC blocks of peer cluster %s are read again", p.Name)
	case up && first:
		s.Log.Info("peer cluster reachable", "peer", p.Name)
	}
}

// retire stops the watches that a rotated kubeconfig replaced, once their
// successor has read the peer's ledger.
func (s *Set) retire() {
	s.mu.Lock()
	var stop []*peer
	kept := s.retired[:0]
	for _, old := range s.retired {
		if now := s.peers[old.Name]; now == nil || now.ledger.Synced() {
			stop = append(stop, old)
		} else {
			kept = append(kept, old)
		}
	}
	s.retired = kept
	s.publishLocked()
	s.mu.Unlock()
	for _, p := range stop {
		s.stop(p)
	}
}

// stop ends a peer's watch, out of the set already, and tells OnChange
// about every MAC its ledger held: they are held here no more (unless
// another peer holds them).
func (s *Set) stop(p *peer) {
	p.cancel()
	<-p.done
	if s.current(p.Name) == nil {
		metrics.PeerUp.DeleteLabelValues(p.Name)
		metrics.PeerEntries.DeleteLabelValues(p.Name)
	}
	var macs []mac.MAC
	p.ledger.Each(func(e ledger.Entry) { macs = append(macs, e.MAC) })
	for _, m := range macs {
		s.OnChange(m)
	}
	s.Log.Info("stopped watching peer cluster", "peer", p.Name, "entries", len(macs))
}

func (s *Set) current(name string) *peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[name]
}

func (s *Set) stopAll() {
	s.mu.Lock()
	all := append([]*peer{}, s.retired...)
	for _, p := range s.peers {
		all = append(all, p)
	}
	s.peers, s.retired = map[string]*peer{}, nil
	s.publishLocked()
	s.mu.Unlock()
	for _, p := range all {
		p.cancel()
		<-p.done
	}
}

// watched is every peer watch whose entries count, current ones first.
func (s *Set) watched() []*peer {
	if w := s.watching.Load(); w != nil {
		return *w
	}
	return nil
}

// publishLocked makes the peers and retired watches of now what watched
// returns. Callers hold s.mu.
func (s *Set) publishLocked() {
	out := make([]*peer, 0, len(s.peers)+len(s.retired))
	for _, p := range s.peers {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	out = append(out, s.retired...)
	s.watching.Store(&out)
}

// Of is what the peers' ledgers hold for m, one entry per peer cluster.
func (s *Set) Of(m mac.MAC) []holders.PeerEntry {
	if s == nil {
		return nil
	}
	var out []holders.PeerEntry
	seen := map[string]bool{}
	for _, p := range s.watched() {
		if seen[p.Name] {
			continue
		}
		if e, ok := p.ledger.Lookup(m); ok {
			seen[p.Name] = true
			out = append(out, holders.PeerEntry{Cluster: p.Name, Entry: e.MACBlockEntry})
		}
	}
	return out
}

// Holds reports whether any peer's ledger holds m.
func (s *Set) Holds(m mac.MAC) bool { return len(s.Of(m)) > 0 }

// Entries is every entry of every peer's ledger, by cluster.
func (s *Set) Entries() map[string][]ledger.Entry {
	out := map[string][]ledger.Entry{}
	for _, p := range s.watched() {
		if _, done := out[p.Name]; done {
			continue
		}
		var es []ledger.Entry
		p.ledger.Each(func(e ledger.Entry) { es = append(es, e) })
		out[p.Name] = es
	}
	return out
}

// Settled returns why this replica may not serve yet, or nil: the peer
// Secrets have been read, and every peer's ledger has been read once or
// its API server has failed to answer (a peer that is down must not stop
// admissions: what it holds in this cluster's blocks is what could be
// missed, see the README).
//
// Once settled, a replica stays so: a peer added later, or a rotated
// kubeconfig, is read while the replica serves (the split keeps this
// cluster's new picks out of a new peer's blocks at once), rather than
// stopping every admission until it is.
func (s *Set) Settled() error {
	if s.settledOnce.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.listed {
		return errors.New("peer Secrets not read yet")
	}
	var waiting []string
	for name, p := range s.peers {
		if !p.settled.Load() {
			waiting = append(waiting, name)
		}
	}
	if len(waiting) > 0 {
		sort.Strings(waiting)
		return fmt.Errorf("the MAC blocks of peer clusters %s not read yet", strings.Join(waiting, ", "))
	}
	s.settledOnce.Store(true)
	return nil
}
