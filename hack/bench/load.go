package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// build returns the i-th object of a series; every call a new object, as
// Create writes the stored object back into it.
type build func(i int) client.Object

// sequential creates n objects one after the other and returns the latency
// of each create, as a user or controller creating one object sees it.
func sequential(ctx context.Context, c client.Client, n int, next build) ([]time.Duration, error) {
	latencies := make([]time.Duration, 0, n)
	for i := range n {
		d, err := timedCreate(ctx, c, next(i))
		if err != nil {
			return nil, err
		}
		latencies = append(latencies, d)
	}
	return latencies, nil
}

// concurrent creates n objects from workers goroutines taking the next
// index as they go, and returns the latency of each create and the wall
// time of all of them. The first error stops every worker.
func concurrent(ctx context.Context, c client.Client, n, workers int, next build) ([]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	latencies := make([]time.Duration, n)
	var taken atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(taken.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				d, err := timedCreate(ctx, c, next(i))
				if err != nil {
					cancel(err)
					return
				}
				latencies[i] = d
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return nil, 0, err
	}
	return latencies, wall, nil
}

func timedCreate(ctx context.Context, c client.Client, obj client.Object) (time.Duration, error) {
	start := time.Now()
	if err := c.Create(ctx, obj); err != nil {
		return 0, fmt.Errorf("creating %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return time.Since(start), nil
}

// summary is what the table shows of a series of creates.
type summary struct {
	p50, p99   time.Duration
	throughput float64 // creates a second; only for concurrent series
}

func summarize(latencies []time.Duration, wall time.Duration) summary {
	sorted := slices.Clone(latencies)
	slices.Sort(sorted)
	s := summary{p50: percentile(sorted, 50), p99: percentile(sorted, 99)}
	if wall > 0 {
		s.throughput = float64(len(latencies)) / wall.Seconds()
	}
	return s
}

// percentile is the nearest-rank percentile of sorted latencies: a latency
// that was really observed, never an interpolation between two.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}
