package pool

import (
	"fmt"
	"runtime"
	"testing"

	"k8s.io/utils/clock"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// filledPool returns a pool over r with held MACs marked: a fraction of the
// range, or an absolute count, spread from a random start as a real cursor
// would leave them.
func filledPool(tb testing.TB, r mac.Range, held uint64) *Pool {
	tb.Helper()
	alloc, err := mac.NewAllocatable(r, false)
	if err != nil {
		tb.Fatal(err)
	}
	p := New(nil, clock.RealClock{})
	p.SetRange(alloc)
	for i := uint64(0); i < held; i++ {
		// Spread the held MACs over the range with a stride so runs of held
		// and free addresses alternate, the harder case for a cursor.
		p.SetReserved(alloc.At((i*7919)%alloc.Size()), true)
	}
	if got := p.Stats().Held; got != held {
		tb.Fatalf("marked %d held, pool counts %d", held, got)
	}
	return p
}

// BenchmarkCandidate measures choosing a free candidate and marking it held
// in memory (what an admission does before its create), at several fills.
// Each pick is unmarked again so the fill stays what the name says.
func BenchmarkCandidate(b *testing.B) {
	small := mac.Range{Start: 0x0a0000000000, End: 0x0a000000ffff} // 65,536 addresses
	cases := []struct {
		name string
		r    mac.Range
		held uint64
	}{
		{"65536/fill=0%", small, 0},
		{"65536/fill=90%", small, 65536 * 90 / 100},
		{"65536/fill=99.9%", small, 65536 * 999 / 1000},
		{"default/held=1000000", mac.DefaultRange, 1_000_000},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			p := filledPool(b, c.r, c.held)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m, err := p.candidate()
				if err != nil {
					b.Fatal(err)
				}
				p.setMark(m, picked, false)
			}
		})
	}
}

// BenchmarkIndexMemory reports the pool's memory per held MAC (index plus
// the set of held MACs), for a dense and a scattered layout.
func BenchmarkIndexMemory(b *testing.B) {
	for _, held := range []uint64{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("default/held=%d", held), func(b *testing.B) {
			var perHeld float64
			for b.Loop() {
				before := heapInUse()
				p := filledPool(b, mac.DefaultRange, held)
				after := heapInUse()
				perHeld = float64(after-before) / float64(held)
				runtime.KeepAlive(p)
			}
			b.ReportMetric(perHeld, "B/held")
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
