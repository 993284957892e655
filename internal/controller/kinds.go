package controller

import (
	"sort"
	"sync"

	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// Kinds is the set of kinds that carry MACs, with each one's namespace
// policy. It grows at run time: KubeVirt's kinds join when its CRDs appear.
type Kinds struct {
	mu     sync.RWMutex
	kinds  map[string]Kind
	scopes map[string]scope.Scope
}

// NewKinds returns an empty set.
func NewKinds() *Kinds {
	return &Kinds{kinds: map[string]Kind{}, scopes: map[string]scope.Scope{}}
}

// Add registers k with its namespace policy.
func (ks *Kinds) Add(k Kind, s scope.Scope) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.kinds[k.Kind()] = k
	ks.scopes[k.Kind()] = s
}

// Get returns the kind named name.
func (ks *Kinds) Get(name string) (Kind, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.kinds[name]
	return k, ok
}

// Scope returns the namespace policy of the kind named name.
func (ks *Kinds) Scope(name string) scope.Scope {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.scopes[name]
}

// All returns every kind, in a stable order.
func (ks *Kinds) All() []Kind {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	out := make([]Kind, 0, len(ks.kinds))
	for _, k := range ks.kinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind() < out[j].Kind() })
	return out
}
