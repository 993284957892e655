// Package metrics defines kubemacpool's Prometheus metrics, registered on
// controller-runtime's registry so they are served on the manager's
// (authenticated) metrics endpoint next to the controller metrics.
package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Allocation outcomes, the values of the outcome label.
const (
	OutcomeAllocated      = "allocated"
	OutcomeUserChosen     = "user-chosen"
	OutcomeRefusedHeld    = "refused-held"
	OutcomeRefusedInvalid = "refused-invalid"
	OutcomeExhausted      = "exhausted"
)

var (
	// Allocations counts MACs handed out or refused, by outcome.
	Allocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmp_allocations_total",
		Help: "MAC allocations by outcome: allocated (from the pool), user-chosen (a MAC the user wrote, reserved), refused-held, refused-invalid, exhausted.",
	}, []string{"outcome"})

	// AdmissionDuration is the time the webhook takes per admission.
	AdmissionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kmp_admission_duration_seconds",
		Help:    "Time kubemacpool's webhook takes to answer an admission review, by resource (pods, virtualmachines, virtualmachineinstances).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"resource"})

	// Adoptions counts MACs carried without a MACAddress and adopted.
	Adoptions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kmp_adoptions_total",
		Help: "MACs found carried by an object without a ledger entry and adopted for it (or an entry passed to another carrier).",
	})

	// Releases counts MACAddresses deleted because their owner is gone or
	// no longer carries the MAC.
	Releases = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kmp_releases_total",
		Help: "MACs released because their owner was deleted or no longer carries them.",
	})

	// ExpiredReservations counts reservations deleted unbound.
	ExpiredReservations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kmp_reservations_expired_total",
		Help: "Ledger entries removed because no object carrying the MAC appeared within the grace period.",
	})

	// RangeConfigErrors counts refused range configurations.
	RangeConfigErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kmp_range_config_errors_total",
		Help: "Range configurations refused as invalid (the range in force stayed).",
	})

	// RangeConfigInvalid is 1 while the range ConfigMap holds a
	// configuration that was refused: the counter moves once per refused
	// configuration, this says it is still there.
	RangeConfigInvalid = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kmp_range_config_invalid",
		Help: "1 while the range ConfigMap holds a refused (invalid) configuration, else 0.",
	})

	// RangeConfigMissing is 1 while the range ConfigMap is gone and the
	// range in force is kept.
	RangeConfigMissing = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kmp_range_config_missing",
		Help: "1 while the range ConfigMap is missing and the range in force is kept (deleting it never widens the range), else 0.",
	})

	// Collisions is the number of running objects sharing a MAC, per MAC,
	// present only while above one.
	Collisions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kmp_mac_collisions",
		Help: "Running pods and VMIs reporting the same MAC, per MAC; present only while more than one does.",
	}, []string{"mac"})

	// NetworkStatusIgnored counts the network-status entries of running
	// pods that the collision detector does not read: beyond one per
	// network of the pod's annotation, or beyond 32 per pod.
	NetworkStatusIgnored = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kmp_network_status_ignored_entries",
		Help: "Multus network-status entries of running pods left unread by the collision detector: beyond one per network of the pod's networks annotation, or beyond 32 per pod.",
	})

	// CarriedIgnored counts the MACs pods, VMs and VMIs list beyond the
	// most one object is taken to carry (carriers.MaxCarried, 256).
	CarriedIgnored = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kmp_carried_macs_ignored",
		Help: "MACs that pods, VMs and VMIs list beyond the first 256 of each object, not counted as carried: such a MAC could be handed out again. Find the objects in kubemacpool's log (\"object lists more MACs than are counted as carried\").",
	})

	// NotApplied is the number of pods whose network-status reports, for a
	// network kubemacpool gave a MAC, another MAC or none.
	NotApplied = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kmp_pods_mac_not_applied",
		Help: "Pods whose Multus network-status reports, for a network kubemacpool gave a MAC, another MAC or none (the NetworkAttachmentDefinition lacks the tuning plugin, say).",
	})
)

// Ledger write results, the values of the result label.
const (
	WriteStored   = "stored"
	WriteConflict = "conflict"
	WriteFailed   = "failed"
)

var (
	// LedgerWrites counts MAC block writes by result; a conflict is a
	// write another replica won, retried on the fresh block.
	LedgerWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmp_ledger_writes_total",
		Help: "MAC block writes by result: stored, conflict (another writer won; retried on the fresh block), failed.",
	}, []string{"result"})
	// LedgerBatch is how many changes (admissions, repair passes) each
	// stored block write carried: group commit at work.
	LedgerBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kmp_ledger_batch_size",
		Help:    "Changes carried by each stored MAC block write (admissions waiting for the same block share one write).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
	})
)

// PoolStats is what the pool gauges read at scrape time.
type PoolStats interface {
	// Size is the number of allocatable MACs, Held how many of them are
	// held, and Pending how many reservations wait to be bound.
	PoolNumbers() (size, held, pending float64)
}

// currentPool is what the pool gauges read. It is swapped rather than
// re-registered so a replica restarted in the same process (tests) reports
// its own pool.
var currentPool atomic.Pointer[PoolStats]

func poolNumbers() (size, held, pending float64) {
	p := currentPool.Load()
	if p == nil {
		return 0, 0, 0
	}
	return (*p).PoolNumbers()
}

// Register adds every metric to controller-runtime's registry, with the
// pool gauges reading pool.
func Register(pool PoolStats) {
	currentPool.Store(&pool)
	gauge := func(name, help string, pick func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, pick)
	}
	collectors := []prometheus.Collector{
		Allocations, AdmissionDuration, Adoptions, Releases, ExpiredReservations, RangeConfigErrors, RangeConfigInvalid, RangeConfigMissing, Collisions, NetworkStatusIgnored, CarriedIgnored, NotApplied,
		LedgerWrites, LedgerBatch,
		gauge("kmp_pool_size", "Allocatable MACs in the range in force (multicast, EXCLUDED_MACS, KubeVirt's in-pod bridge MAC and, unless allowed, universally administered MACs excluded).",
			func() float64 { s, _, _ := poolNumbers(); return s }),
		gauge("kmp_pool_held", "Allocatable MACs of the range in force that are held: reserved, or carried by a pod, VM or VMI.",
			func() float64 { _, h, _ := poolNumbers(); return h }),
		gauge("kmp_reservations_pending", "MACs reserved at admission whose object has not been seen carrying them yet.",
			func() float64 { _, _, p := poolNumbers(); return p }),
	}
	for _, c := range collectors {
		// A second manager in one process (tests) registers again: keep the first.
		if err := ctrlmetrics.Registry.Register(c); err != nil {
			if _, ok := err.(prometheus.AlreadyRegisteredError); !ok {
				panic(err)
			}
		}
	}
}
