// Package ledger keeps what kubemacpool has reserved: MACBlock objects, each
// covering 64 consecutive MACs and listing the entries held in them. Every
// replica reads the whole ledger from its cache (the index) and writes it
// through group commit: the changes of concurrent admissions that fall in one
// block go out in one update, carrying the block's resourceVersion, so two
// replicas can never add the same entry.
package ledger

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// BlockSize is how many consecutive MACs one MACBlock covers. Every write
// rewrites the whole block, so its size is paid by every admission (the API
// server decoding and validating it, etcd, each replica's watch): a full
// block of 64 entries is about 12 KB. Adopting N clustered MACs costs about
// N/64 writes (20,000 upstream-allocated MACs: some 300).
const BlockSize = 64

// BlockStart is the first MAC of the block that holds m.
func BlockStart(m mac.MAC) mac.MAC { return m &^ (BlockSize - 1) }

// BlockName is the name of the MACBlock that holds m.
func BlockName(m mac.MAC) string { return BlockStart(m).ObjectName() }

// Offset is m's place in its block.
func Offset(m mac.MAC) int32 { return int32(m - BlockStart(m)) }

// NewBlock returns an empty block holding m, not yet stored.
func NewBlock(m mac.MAC) *v1alpha1.MACBlock {
	start := BlockStart(m)
	b := &v1alpha1.MACBlock{}
	b.Name = start.ObjectName()
	b.Spec.First = start.String()
	b.Spec.Last = (start + BlockSize - 1).String()
	return b
}

// StartOf returns the first MAC of block b, from its name.
func StartOf(b *v1alpha1.MACBlock) (mac.MAC, bool) {
	m, err := mac.ParseObjectName(b.Name)
	if err != nil || m != BlockStart(m) {
		return 0, false
	}
	return m, true
}

// Find returns the entry at offset in b, or nil.
func Find(b *v1alpha1.MACBlock, offset int32) *v1alpha1.MACBlockEntry {
	for i := range b.Spec.Entries {
		if b.Spec.Entries[i].Offset == offset {
			return &b.Spec.Entries[i]
		}
	}
	return nil
}

// Put adds or replaces the entry at e.Offset, keeping entries in order.
func Put(b *v1alpha1.MACBlock, e v1alpha1.MACBlockEntry) {
	if old := Find(b, e.Offset); old != nil {
		*old = e
		return
	}
	b.Spec.Entries = append(b.Spec.Entries, e)
	sort.SliceStable(b.Spec.Entries, func(i, j int) bool { return b.Spec.Entries[i].Offset < b.Spec.Entries[j].Offset })
	b.Spec.Held = int32(len(b.Spec.Entries))
}

// normalised returns b with at most one entry per offset, each within the
// block (the first wins, as Find sees it). kubemacpool never writes
// anything else, but a block edited by hand may hold it, and a write that
// carried it on would be refused by the API server (too many entries) or
// mark MACs of a neighbouring block. b itself is returned when it is
// already normal, which it nearly always is.
func normalised(b *v1alpha1.MACBlock) *v1alpha1.MACBlock {
	seen := map[int32]bool{}
	clean := true
	for _, e := range b.Spec.Entries {
		if e.Offset < 0 || e.Offset >= BlockSize || seen[e.Offset] {
			clean = false
			break
		}
		seen[e.Offset] = true
	}
	if clean {
		return b
	}
	out := b.DeepCopy()
	out.Spec.Entries = nil
	seen = map[int32]bool{}
	for _, e := range b.Spec.Entries {
		if e.Offset >= 0 && e.Offset < BlockSize && !seen[e.Offset] {
			seen[e.Offset] = true
			out.Spec.Entries = append(out.Spec.Entries, e)
		}
	}
	out.Spec.Held = int32(len(out.Spec.Entries))
	return out
}

// Remove deletes the entry at offset; it reports whether there was one.
func Remove(b *v1alpha1.MACBlock, offset int32) bool {
	for i := range b.Spec.Entries {
		if b.Spec.Entries[i].Offset == offset {
			b.Spec.Entries = append(b.Spec.Entries[:i], b.Spec.Entries[i+1:]...)
			b.Spec.Held = int32(len(b.Spec.Entries))
			return true
		}
	}
	return false
}

// SameEntry reports whether a and b are the same reservation: a change
// judged on one version of a block is applied only if the entry is still
// the one judged.
func SameEntry(a, b *v1alpha1.MACBlockEntry) bool {
	return a != nil && b != nil && a.Offset == b.Offset && a.Owner == b.Owner && a.Reserved.Equal(&b.Reserved)
}

// ReadEntry reads m's entry from the API server, past any cache: for the
// decisions that must not trust an index that may lag (nil: no entry).
func ReadEntry(ctx context.Context, r client.Reader, m mac.MAC) (*v1alpha1.MACBlockEntry, error) {
	b := &v1alpha1.MACBlock{}
	switch err := r.Get(ctx, client.ObjectKey{Name: BlockName(m)}, b); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading MAC block %s: %w", BlockName(m), err)
	}
	if e := Find(normalised(b), Offset(m)); e != nil {
		copied := *e
		return &copied, nil
	}
	return nil, nil
}
