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

// Where an admission's MAC came from, the values of the source label.
const (
	SourceStock  = "stock"
	SourceDirect = "direct"
)

var (
	// AllocationSource counts the MACs handed out from the pool by where
	// they came from: this replica's stock (no API call) or a block write
	// at admission (explicit MACs are not counted here).
	AllocationSource = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kmp_allocation_source_total",
		Help: "MACs handed out from the pool by source: stock (held ahead by this replica, no API call at admission) or direct (a MAC block write at admission: the stock was empty, off, or the heartbeat not fresh).",
	}, []string{"source"})
	// StockRefills counts block writes that added entries to the stock.
	StockRefills = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kmp_stock_refills_total",
		Help: "MAC block writes that added entries to this replica's stock (off the admission path).",
	})
	// StockReowns counts stock entries passed to the objects that carry
	// their MACs.
	StockReowns = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kmp_stock_reowns_total",
		Help: "Entries of this replica's stock passed to the object seen carrying the MAC (batched per block, off the admission path).",
	})
	// StockReleased counts stock entries given back: surplus as the pool
	// fills, outside a new range, excluded, or at shutdown.
	StockReleased = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "kmp_stock_released_total",
		Help: "Entries of this replica's stock given back unused: surplus as the pool fills, outside the range or excluded since, or at shutdown.",
	})
)

var (
	// PeerUp is 1 while a peer cluster's API server answers for its
	// ledger, 0 while it does not (its last known entries stay held).
	PeerUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kmp_peer_up",
		Help: "1 while the peer cluster's API server answers this replica's reads of its MAC blocks, 0 while it does not (its last known entries stay held here, admissions go on).",
	}, []string{"peer"})
	// PeerEntries is how many entries of a peer's ledger this replica
	// holds as held here.
	PeerEntries = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kmp_peer_entries",
		Help: "Entries of the peer cluster's ledger as this replica last saw them: MACs never handed out here.",
	}, []string{"peer"})
	// PeerConfigInvalid is 1 for a peer Secret that was refused.
	PeerConfigInvalid = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kmp_peer_config_invalid",
		Help: "1 while a Secret labelled kubemacpool.io/peer is refused (see its events and kubemacpool's log for why); absent otherwise.",
	}, []string{"secret"})
	// PeerCollisions counts MACs that objects of this cluster carry while
	// a peer cluster's ledger holds them for another object.
	PeerCollisions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kmp_peer_mac_collisions",
		Help: "MACs carried by objects of this cluster that a peer cluster's ledger holds for another object (reported as MACCollision events on the objects here).",
	}, []string{"peer"})
)

// PoolStats is what the pool gauges read at scrape time.
type PoolStats interface {
	// Size is the number of allocatable MACs, Held how many of them are
	// held, and Pending how many reservations wait to be bound.
	PoolNumbers() (size, held, pending float64)
	// StockNumbers is this replica's stock: MACs ready to hand out, and
	// handed out but not seen carried yet.
	StockNumbers() (free, handed float64)
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

func stockNumbers() (free, handed float64) {
	p := currentPool.Load()
	if p == nil {
		return 0, 0
	}
	return (*p).StockNumbers()
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
		LedgerWrites, LedgerBatch, AllocationSource, StockRefills, StockReowns, StockReleased,
		PeerUp, PeerEntries, PeerConfigInvalid, PeerCollisions,
		gauge("kmp_stock_macs", "MACs in this replica's stock, ready to hand out without an API call.",
			func() float64 { f, _ := stockNumbers(); return f }),
		gauge("kmp_stock_handed_waiting", "MACs this replica handed out from its stock whose object has not been seen carrying them yet.",
			func() float64 { _, h := stockNumbers(); return h }),
		gauge("kmp_pool_size", "Allocatable MACs in the range in force (multicast, EXCLUDED_MACS, KubeVirt's in-pod bridge MAC and, unless allowed, universally administered MACs excluded).",
			func() float64 { s, _, _ := poolNumbers(); return s }),
		gauge("kmp_pool_held", "Allocatable MACs of the range in force that are held: reserved, carried by a pod, VM or VMI, or held by a peer cluster.",
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
