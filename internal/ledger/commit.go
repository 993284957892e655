package ledger

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// Change edits a block. It is handed a private copy of the freshest known
// version, again on every retry after another writer won, so it must decide
// from what it is given and record its outcome afresh each time. It returns
// whether it changed the block, or an error that fails this change alone;
// a change that fails must leave the block as it found it.
type Change func(b *v1alpha1.MACBlock) (changed bool, err error)

// writeAttempts bounds how often one batch is retried when other replicas
// keep winning the block; they rarely share one, as each allocates at its
// own random cursor.
const writeAttempts = 8

// writeTimeout bounds one write. Callers stop waiting when their own
// context ends; the write itself finishes so that what it did is known.
const writeTimeout = 10 * time.Second

type change struct {
	ctx   context.Context
	apply Change
	prune bool
	err   error
	done  chan struct{}
}

// Update applies c to the block that holds m, creating the block if need
// be, in the same write as the changes other callers on this replica queue
// for that block meanwhile (group commit): while one write of a block is in
// flight, the changes that arrive wait and go out together in the next.
// When it returns nil, the change is stored.
func (l *Ledger) Update(ctx context.Context, m mac.MAC, c Change) error {
	return l.submit(ctx, m, c, false)
}

// UpdateAndPrune is Update, and deletes the block if no entry is left in
// it: the repair's way of keeping the ledger to blocks that hold something.
func (l *Ledger) UpdateAndPrune(ctx context.Context, m mac.MAC, c Change) error {
	return l.submit(ctx, m, c, true)
}

func (l *Ledger) submit(ctx context.Context, m mac.MAC, apply Change, prune bool) error {
	ch := &change{ctx: ctx, apply: apply, prune: prune, done: make(chan struct{})}
	l.mu.Lock()
	l.init()
	st := l.stateLocked(BlockStart(m))
	st.queue = append(st.queue, ch)
	if !st.writing {
		st.writing = true
		go l.flush(st)
	}
	l.mu.Unlock()
	select {
	case <-ch.done:
		return ch.err
	case <-ctx.Done():
		// The write may still land: an entry it adds is unused, and the
		// repair removes it after the grace period.
		return fmt.Errorf("waiting for MAC block %s: %w", BlockName(m), ctx.Err())
	}
}

// flush writes the queued changes of one block, batch after batch, until
// none are left.
func (l *Ledger) flush(st *blockState) {
	for {
		l.mu.Lock()
		batch := st.queue
		st.queue = nil
		if len(batch) == 0 {
			st.writing = false
			l.mu.Unlock()
			return
		}
		base := st.latest
		l.mu.Unlock()
		l.write(st, base, batch)
		for _, ch := range batch {
			close(ch.done)
		}
	}
}

// write applies a batch to base and stores the result, retrying against
// the fresh block when another writer got there first.
func (l *Ledger) write(st *blockState, base *storedBlock, batch []*change) {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	writer, live := l.clientsFor(batch)
	name := st.start.ObjectName()
	for attempt := 1; ; attempt++ {
		b := NewBlock(st.start)
		if base != nil {
			b = base.block()
		}
		changed, prune := false, false
		for _, ch := range batch {
			ch.err = ch.ctx.Err()
			if ch.err != nil {
				continue // the caller is gone: its change is not made
			}
			did, err := ch.apply(b)
			ch.err = err
			changed = changed || (did && err == nil)
			prune = prune || ch.prune
		}
		b.Spec.Held = int32(len(b.Spec.Entries))
		for i := range b.Spec.Entries {
			// The MAC each entry names for people reading the block
			// follows its offset, whoever made the entry.
			b.Spec.Entries[i].MAC = (st.start + mac.MAC(b.Spec.Entries[i].Offset)).String()
		}
		var err error
		switch {
		case !changed:
			if prune && base != nil && len(b.Spec.Entries) == 0 {
				l.deleteEmpty(ctx, writer, b)
			}
			return
		case base == nil:
			err = writer.Create(ctx, b)
		default:
			err = writer.Update(ctx, b)
		}
		if err == nil {
			metrics.LedgerWrites.WithLabelValues(metrics.WriteStored).Inc()
			metrics.LedgerBatch.Observe(float64(len(batch)))
			l.mu.Lock()
			l.observeOwnLocked(store(b))
			l.mu.Unlock()
			if prune && len(b.Spec.Entries) == 0 {
				l.deleteEmpty(ctx, writer, b)
			}
			return
		}
		lostRace := apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)
		if lostRace {
			metrics.LedgerWrites.WithLabelValues(metrics.WriteConflict).Inc()
		} else {
			metrics.LedgerWrites.WithLabelValues(metrics.WriteFailed).Inc()
		}
		if !lostRace || attempt == writeAttempts {
			if lostRace {
				err = ErrContended
			}
			fail(batch, fmt.Errorf("writing MAC block %s: %w", name, err))
			return
		}
		if base, err = l.fresh(ctx, live, st); err != nil {
			fail(batch, fmt.Errorf("reading MAC block %s after a conflicting write: %w", name, err))
			return
		}
	}
}

// fresh reads the block from the API server (nil if it does not exist)
// and records it.
func (l *Ledger) fresh(ctx context.Context, live client.Reader, st *blockState) (*storedBlock, error) {
	l.mu.Lock()
	known := st.latest
	l.mu.Unlock()
	b := &v1alpha1.MACBlock{}
	err := live.Get(ctx, client.ObjectKey{Name: st.start.ObjectName()}, b)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case apierrors.IsNotFound(err):
		// Gone, unless the watch brought a new one meanwhile.
		if st.latest != nil && st.latest == known {
			st.latest = nil
			l.diffLocked(st.start, known, nil)
		}
		return st.latest, nil
	case err != nil:
		return nil, err
	}
	if s := store(b); s != nil {
		l.observeOwnLocked(s)
	}
	return st.latest, nil // the read, or a newer version the watch brought
}

// deleteEmpty deletes block b if it is still the version just judged empty.
func (l *Ledger) deleteEmpty(ctx context.Context, writer client.Writer, b *v1alpha1.MACBlock) {
	err := writer.Delete(ctx, b, client.Preconditions{UID: &b.UID, ResourceVersion: &b.ResourceVersion})
	switch {
	case err == nil:
		l.mu.Lock()
		l.observeLocked(store(b), true)
		l.mu.Unlock()
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// Written or deleted meanwhile: the next pass looks again.
	default:
		l.Log.Error(err, "deleting an empty MAC block; it stays", "block", b.Name)
	}
}

// clientsFor picks the clients of a batch: the repair's when every change
// in it is the repair's, else the admissions'.
func (l *Ledger) clientsFor(batch []*change) (client.Writer, client.Reader) {
	if l.RepairWriter == nil || l.RepairLive == nil {
		return l.Writer, l.Live
	}
	for _, ch := range batch {
		if !ch.prune {
			return l.Writer, l.Live
		}
	}
	return l.RepairWriter, l.RepairLive
}

func fail(batch []*change, err error) {
	for _, ch := range batch {
		if ch.err == nil {
			ch.err = err
		}
	}
}
