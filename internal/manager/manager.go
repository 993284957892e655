// Package manager wires kubemacpool together: the webhook server, the pool
// and the controllers, on a controller-runtime manager. cmd/kubemacpool and
// the integration tests both build the manager here, so tests run exactly
// what ships.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/certs"
	"github.com/kubemacpool/kubemacpool/internal/controller/applied"
	"github.com/kubemacpool/kubemacpool/internal/controller/collision"
	"github.com/kubemacpool/kubemacpool/internal/controller/legacy"
	"github.com/kubemacpool/kubemacpool/internal/controller/repair"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/jsonwatch"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
	"github.com/kubemacpool/kubemacpool/internal/peers"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
	"github.com/kubemacpool/kubemacpool/internal/tlsconfig"
	kmpwebhook "github.com/kubemacpool/kubemacpool/internal/webhook"
)

// Options are the manager's settings; cmd/kubemacpool maps flags onto them.
type Options struct {
	// Namespace kubemacpool runs in: holds the range ConfigMap and the
	// leader-election Lease, and is never mutated.
	Namespace string

	WebhookHost string
	WebhookPort int
	CertDir     string

	MetricsAddr string // "0" disables
	// MetricsSecure serves metrics over HTTPS to scrapers authenticated by
	// a token and authorised by RBAC (get on /metrics).
	MetricsSecure bool
	ProbeAddr     string // "0" disables
	// PprofAddr serves Go's /debug/pprof profiles there; empty or "0"
	// disables (the default: profiles are for whoever debugs a replica).
	PprofAddr string

	LeaderElection   bool
	LeaderElectionID string
	LeaseDuration    time.Duration
	RenewDeadline    time.Duration
	RetryPeriod      time.Duration

	// ReservationGrace is how long a MAC may stay reserved for an object
	// that is never seen persisted before the reservation is deleted.
	ReservationGrace time.Duration
	// MinReservationGrace is the shortest ReservationGrace accepted: an
	// entry must outlive the time from the webhook's answer until the API
	// server stores the object.
	MinReservationGrace time.Duration
	// RepairInterval is how often every MAC and every carrier is looked at
	// again (adoption, release, collisions) and the pool index rebuilt.
	RepairInterval time.Duration

	PodNamespaces scope.Mode
	VMNamespaces  scope.Mode
	// KubeVirtPoll is how often kubemacpool looks for the KubeVirt CRDs
	// until they are installed.
	KubeVirtPoll time.Duration

	// CertMode is "self" (kubemacpool keeps its own CA and serving
	// certificate in CertSecret and publishes the CA in the webhook
	// configuration) or "files" (serve tls.crt/tls.key from CertDir, kept by
	// someone else, e.g. cert-manager).
	CertMode      string
	CertSecret    string
	WebhookConfig string
	// CertHosts are the names the self-managed serving certificate is
	// valid for; empty: the webhook Service's in Namespace (ServingHosts).
	CertHosts       []string
	CALifetime      time.Duration
	ServingLifetime time.Duration
	CAOverlap       time.Duration
	CertCheck       time.Duration

	// ShutdownDelay is how long a replica keeps serving after SIGTERM while
	// reporting not ready, so the Service stops sending it requests before
	// it stops listening.
	ShutdownDelay time.Duration

	// TLSMinVersion ("1.2" or "1.3") and TLSCipherSuites (IANA names, for
	// TLS 1.2; empty: Go's defaults) apply to the webhook and metrics
	// servers.
	TLSMinVersion   string
	TLSCipherSuites []string

	// MaxInterfaces is the most networks one pod, or managed interfaces
	// one VM or VMI, may ask MACs for: one request must not be able to take
	// thousands of MACs and writes.
	MaxInterfaces int
	// MaxPendingPerNamespace bounds a namespace's reservations waiting
	// for their objects (0: no bound).
	MaxPendingPerNamespace int

	// ControllersQPS and ControllersBurst are the rate limit of the client
	// the leader's controllers (repair, finalizer cleanup) write and read
	// live with; the webhook's client has its own (--kube-api-qps), so
	// neither starves the other.
	ControllersQPS   float64
	ControllersBurst int

	// ReplicaName names this replica (its pod) as the holder of its stock.
	ReplicaName string
	// StockMax is the most MACs a replica keeps in stock for admissions to
	// hand out without an API call; 0: none, every admission writes.
	StockMax int
	// StockHeartbeat is how long a replica's stock heartbeat lasts without
	// renewal: the leader releases a dead replica's stock this long after
	// it last saw the heartbeat, plus the reservation grace.
	StockHeartbeat time.Duration

	// ClusterName is this cluster's name among its peer clusters (the
	// clusters sharing its L2 networks, listed as Secrets labelled
	// kubemacpool.io/peer); empty: peers are refused.
	ClusterName string
	// PeerProbe is how often each peer's API server is read (up or down),
	// and the peers' ledgers compared with what objects here carry.
	PeerProbe time.Duration
}

// ServiceName is the Service the API server calls the webhook through.
const ServiceName = "kubemacpool-service"

// ServiceHosts are the DNS names of the webhook Service in namespace, which
// the self-managed serving certificate is valid for.
func ServiceHosts(namespace string) []string {
	svc := ServiceName + "." + namespace + ".svc"
	return []string{svc, svc + ".cluster.local"}
}

// ServingHosts are the names the self-managed serving certificate is valid
// for: CertHosts, or the webhook Service's in kubemacpool's namespace, so an
// install in another namespace (a Helm release's) needs no --cert-hosts.
func (o Options) ServingHosts() []string {
	if len(o.CertHosts) > 0 {
		return o.CertHosts
	}
	return ServiceHosts(o.Namespace)
}

// Defaults are the production defaults.
func Defaults() Options {
	return Options{
		Namespace:              "kubemacpool-system",
		WebhookPort:            9443,
		CertDir:                "/tmp/k8s-webhook-server/serving-certs",
		MetricsAddr:            ":8443",
		MetricsSecure:          true,
		ProbeAddr:              ":8081",
		LeaderElection:         true,
		LeaderElectionID:       "kubemacpool-controllers",
		LeaseDuration:          15 * time.Second,
		RenewDeadline:          10 * time.Second,
		RetryPeriod:            2 * time.Second,
		ReservationGrace:       3 * time.Minute,
		MinReservationGrace:    time.Minute,
		RepairInterval:         10 * time.Minute,
		PodNamespaces:          scope.OptOut,
		VMNamespaces:           scope.OptOut,
		KubeVirtPoll:           30 * time.Second,
		CertMode:               CertModeSelf,
		CertSecret:             "kubemacpool-webhook-certs",
		WebhookConfig:          "kubemacpool-mutator",
		CALifetime:             5 * 365 * 24 * time.Hour,
		ServingLifetime:        365 * 24 * time.Hour,
		CAOverlap:              10 * time.Minute,
		CertCheck:              time.Hour,
		ShutdownDelay:          5 * time.Second,
		TLSMinVersion:          "1.2",
		MaxInterfaces:          32,
		MaxPendingPerNamespace: 256,
		// The first start on a cluster whose objects carry MACs writes a
		// block per 64 of them: at 50 requests/s, 100,000 MACs took 30 s
		// of waiting on this limiter while the API server had a core to
		// spare (issue 24). The API server's priority and fairness
		// queues the leader's requests when it is busy.
		ControllersQPS:   100,
		ControllersBurst: 200,
		ReplicaName:      defaultReplicaName(),
		StockMax:         512,
		StockHeartbeat:   30 * time.Second,
		PeerProbe:        5 * time.Second,
	}
}

// Certificate modes.
const (
	CertModeSelf  = "self"
	CertModeFiles = "files"
)

// Validate refuses settings that cannot work, saying which.
func (o Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace must be set"))
	}
	if o.ReservationGrace <= 0 || o.ReservationGrace < o.MinReservationGrace {
		errs = append(errs, fmt.Errorf("--reservation-grace must be at least %s (--min-reservation-grace), got %s: an entry removed before the API server stores its object frees a MAC that object is about to carry",
			o.MinReservationGrace, o.ReservationGrace))
	}
	if o.RepairInterval <= 0 {
		errs = append(errs, fmt.Errorf("repair interval must be positive, got %s", o.RepairInterval))
	}
	for _, m := range []scope.Mode{o.PodNamespaces, o.VMNamespaces} {
		if _, err := scope.ParseMode(string(m)); err != nil {
			errs = append(errs, err)
		}
	}
	switch o.CertMode {
	case CertModeSelf:
		if o.CertSecret == "" || o.WebhookConfig == "" {
			errs = append(errs, errors.New("cert mode self needs a Secret name and a webhook configuration name"))
		}
	case CertModeFiles:
	default:
		errs = append(errs, fmt.Errorf("cert mode %q is not valid: use %q or %q", o.CertMode, CertModeSelf, CertModeFiles))
	}
	if _, err := tlsconfig.Parse(o.TLSMinVersion, o.TLSCipherSuites); err != nil {
		errs = append(errs, err)
	}
	if o.ControllersQPS <= 0 || o.ControllersBurst < 1 {
		errs = append(errs, fmt.Errorf("--controllers-api-qps and --controllers-api-burst must be positive, got %v and %d", o.ControllersQPS, o.ControllersBurst))
	}
	if o.MaxPendingPerNamespace < 0 {
		errs = append(errs, fmt.Errorf("--max-pending-per-namespace must not be negative, got %d", o.MaxPendingPerNamespace))
	}
	if o.MaxInterfaces < 1 || o.MaxInterfaces > carriers.MaxCarried {
		errs = append(errs, fmt.Errorf("--max-interfaces must be from 1 to %d (the most MACs one object is taken to carry), got %d", carriers.MaxCarried, o.MaxInterfaces))
	}
	if o.StockMax < 0 {
		errs = append(errs, fmt.Errorf("--stock-max must not be negative, got %d", o.StockMax))
	}
	if o.StockMax > 0 && (o.StockHeartbeat < 2*time.Second || o.ReplicaName == "") {
		errs = append(errs, fmt.Errorf("a stock needs --replica-name (got %q) and a --stock-heartbeat of at least 2s (got %s)", o.ReplicaName, o.StockHeartbeat))
	}
	if o.KubeVirtPoll <= 0 {
		errs = append(errs, fmt.Errorf("KubeVirt poll interval must be positive, got %s", o.KubeVirtPoll))
	}
	if o.ClusterName != "" {
		if msgs := validation.IsDNS1123Label(o.ClusterName); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--cluster-name %q is not a DNS label: %s", o.ClusterName, strings.Join(msgs, "; ")))
		}
	}
	if o.PeerProbe <= 0 {
		errs = append(errs, fmt.Errorf("--peer-probe-interval must be positive, got %s", o.PeerProbe))
	}
	return errors.Join(errs...)
}

// jsonKinds are the kinds whose watches every replica reads in one pass:
// the custom resources it caches, which the API server serves only as
// JSON.
var jsonKinds = []jsonwatch.Kind{
	{Object: &v1alpha1.MACBlock{}, Resource: "macblocks"},
	{Object: &kubevirtv1.VirtualMachine{}, Resource: "virtualmachines"},
	{Object: &kubevirtv1.VirtualMachineInstance{}, Resource: "virtualmachineinstances"},
}

// Scheme knows every type kubemacpool reads or writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	must(clientgoscheme.AddToScheme(s))
	must(v1alpha1.AddToScheme(s))
	must(kubevirtv1.AddToScheme(s))
	return s
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// Instance is one kubemacpool replica, ready to Run.
type Instance struct {
	Manager  manager.Manager
	opts     Options
	draining atomic.Bool
}

// New builds a replica with everything registered; Run runs it.
func New(ctx context.Context, cfg *rest.Config, o Options) (*Instance, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	inst := &Instance{opts: o}
	var certProvider *certs.Provider
	tlsSettings, err := tlsconfig.Parse(o.TLSMinVersion, o.TLSCipherSuites)
	if err != nil {
		return nil, err
	}
	tlsOpts := []func(*tls.Config){tlsSettings.Apply}
	if o.CertMode == CertModeSelf {
		certProvider = &certs.Provider{Namespace: o.Namespace, Name: o.CertSecret, WebhookConfig: o.WebhookConfig}
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = certProvider.GetCertificate })
	}
	// Every replica lists every MAC block, VM and VMI before it serves, and
	// the API server serves them only as JSON: the cache reads their
	// watches in one pass (package jsonwatch).
	scheme := Scheme()
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the watches' HTTP client: %w", err)
	}
	onePass, err := jsonwatch.NewInformers(cfg, httpClient, scheme, jsonKinds...)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{
			NewInformer: func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
				if carriers.BecomesCached(obj) {
					indexers = maps.Clone(indexers)
					delete(indexers, toolscache.NamespaceIndex)
				}
				return onePass.NewInformer(lw, obj, resync, indexers)
			},
			// Keep only what kubemacpool reads of pods, VMs and VMIs.
			DefaultTransform: carriers.Slim,
			ByObject: map[client.Object]cache.ByObject{
				&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{o.Namespace: {}}},
				&corev1.Secret{}:    {Namespaces: map[string]cache.Config{o.Namespace: {}}},
				// Every MAC block, its repeated strings shared (ledger.Compact).
				&v1alpha1.MACBlock{}: {Transform: ledger.Compact},
				&admissionregistrationv1.MutatingWebhookConfiguration{}: {
					Field: fields.OneTermEqualSelector("metadata.name", o.WebhookConfig),
				},
				// Only the replicas' stock heartbeats, not every Lease of
				// the cluster (nodes renew theirs every few seconds).
				&coordinationv1.Lease{}: {
					Namespaces: map[string]cache.Config{o.Namespace: {}},
					Label:      heartbeatSelector(),
				},
			},
		},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    o.WebhookHost,
			Port:    o.WebhookPort,
			CertDir: o.CertDir,
			TLSOpts: tlsOpts,
		}),
		Metrics:                       metricsOptions(o, tlsSettings),
		HealthProbeBindAddress:        o.ProbeAddr,
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.Namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.LeaseDuration,
		RenewDeadline:                 &o.RenewDeadline,
		RetryPeriod:                   &o.RetryPeriod,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}

	// The webhook reads namespace labels from the cache: start that informer
	// with the manager rather than on the first admission, which would wait
	// for it to sync.
	if _, err := mgr.GetCache().GetInformer(ctx, &corev1.Namespace{}); err != nil {
		return nil, fmt.Errorf("watching namespaces: %w", err)
	}

	inst.Manager = mgr
	log := mgr.GetLogger()
	if certProvider != nil {
		certProvider.Reader = mgr.GetCache()
		if err := mgr.Add(&certs.Authority{
			Settings: certs.Settings{
				Namespace: o.Namespace, SecretName: o.CertSecret, WebhookConfig: o.WebhookConfig, Hosts: o.ServingHosts(),
				CALifetime: o.CALifetime, ServingLifetime: o.ServingLifetime, Overlap: o.CAOverlap, Check: o.CertCheck,
			},
			Client: mgr.GetClient(), Live: mgr.GetAPIReader(), Cache: mgr.GetCache(), Log: log.WithName("certs"),
		}); err != nil {
			return nil, err
		}
	}
	// The controllers' own client: its rate limiter is theirs alone.
	controllersCfg := rest.CopyConfig(cfg)
	controllersCfg.QPS, controllersCfg.Burst = float32(o.ControllersQPS), o.ControllersBurst
	controllers, err := client.New(controllersCfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("creating the controllers' client: %w", err)
	}
	recorder := mgr.GetEventRecorder("kubemacpool")
	// One clock for the pool's reservations and the repair's grace.
	clk := clock.RealClock{}
	book := &ledger.Ledger{Cache: mgr.GetCache(), Writer: mgr.GetClient(), Live: mgr.GetAPIReader(),
		RepairWriter: controllers, RepairLive: controllers, RecentWindow: o.ReservationGrace, Log: log.WithName("ledger")}
	macPool := pool.New(book, clk)
	repairer := &repair.Reconciler{
		Ledger: book, Live: controllers, Recorder: recorder, Clock: clk,
		Grace: o.ReservationGrace, Interval: o.RepairInterval, Workers: 8, MaxHeld: o.MaxInterfaces,
	}
	// One change stream: the ledger's index and the carrier index publish
	// every change of a MAC to it, and it tells the pool (whose candidate
	// index skips what is held) and the repair (which judges the MAC's
	// block), in order and after the index has the change, from a
	// goroutine of its own: no index calls another under its lock.
	changes := holders.NewStream()
	// The peer clusters' ledgers: what they hold is held here, and new
	// MACs come only from this cluster's share of the blocks.
	peerSet := &peers.Set{
		Cache: mgr.GetCache(), Namespace: o.Namespace, Self: o.ClusterName, Scheme: mgr.GetScheme(),
		Recorder: recorder, Log: log.WithName("peers"), Probe: o.PeerProbe,
		OnChange: func(m mac.MAC) { changes.Publish(holders.Change{MAC: m, Kind: holders.Peer}) },
		OnSplit:  func(s peers.Split) { macPool.SetShare(s) },
	}
	macPool.WatchPeers(peerSet)
	changes.Subscribe(func(c holders.Change) {
		switch c.Kind {
		case holders.Reserved:
			macPool.SetReserved(c.MAC, c.On)
		case holders.Carried:
			macPool.SetCarried(c.MAC, c.On)
		case holders.Peer:
			// Asked now, after the peer's index has the change: several
			// peers may hold one MAC.
			macPool.SetPeerHeld(c.MAC, peerSet.Holds(c.MAC))
			return
		}
		repairer.Notify(c.MAC)
	})
	book.OnChange = func(m mac.MAC, held bool) {
		changes.Publish(holders.Change{MAC: m, Kind: holders.Reserved, On: held})
	}
	// Every MAC an object carries is held, whoever chose it: the pool
	// skips it and refuses it to anyone else, and the repair adopts it or
	// releases an entry nothing carries any more.
	carried := carriers.NewIndex(func(m mac.MAC, isCarried bool) {
		changes.Publish(holders.Change{MAC: m, Kind: holders.Carried, On: isCarried})
	})
	// A VMI's MAC is its VM's while the ledger holds it for the VM (asked
	// with the carrier index unlocked).
	carried.CheckHeldWith(func(m mac.MAC, vm carriers.Ref) bool {
		e, ok := book.Lookup(m)
		return ok && holders.OwnerIs(e.Owner, vm)
	})
	macPool.WatchCarried(carried)
	macPool.LimitPending(o.MaxPendingPerNamespace, o.ReservationGrace)
	// Each replica keeps a stock of entries held for itself, handed out at
	// admission without an API call, while its heartbeat is fresh; the
	// leader's repair tells a dead replica's stock by its heartbeat.
	heartbeats := &heartbeat.Tracker{Cache: mgr.GetCache(), Clock: clk, Duration: o.StockHeartbeat}
	repairer.Heartbeats = heartbeats
	collector := &heartbeat.Collector{Tracker: heartbeats, Client: controllers, After: o.ReservationGrace, Every: time.Minute,
		Log: log.WithName("heartbeat"), Holds: func(replica string, inc types.UID) bool {
			// The ledger's owner index, not a walk of every entry.
			for _, e := range book.OwnedBy(heartbeat.Kind, o.Namespace, replica) {
				if e.Owner.UID == inc {
					return true
				}
			}
			return false
		}}
	var stockRunnables []manager.Runnable
	if o.StockMax > 0 {
		// The heartbeat has a client of its own: a repair pass or a burst
		// of admissions using up another client's rate limit must not
		// delay a renewal into staleness.
		beatCfg := rest.CopyConfig(cfg)
		beatCfg.QPS, beatCfg.Burst = 5, 10
		beatClient, err := client.New(beatCfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
		if err != nil {
			return nil, fmt.Errorf("creating the heartbeat's client: %w", err)
		}
		beat := &heartbeat.Beat{Client: beatClient, Namespace: o.Namespace, Replica: o.ReplicaName,
			Duration: o.StockHeartbeat, Clock: clk, Log: log.WithName("heartbeat")}
		macPool.UseStock(beat, o.StockMax, log.WithName("stock"))
		stockRunnables = append(stockRunnables, beat, &pool.StockKeeper{Pool: macPool, Grace: o.ReservationGrace})
	}
	carrierFeed := &carriers.Feed{
		Cache: mgr.GetCache(), Mapper: mgr.GetRESTMapper(), Index: carried,
		KubeVirtPoll: o.KubeVirtPoll, Log: log.WithName("carriers"),
	}
	repairer.Carried, repairer.Indexed = carried, carrierFeed
	podScope := scope.New(scope.PodsLabel, o.PodNamespaces, o.Namespace)
	vmScope := scope.New(scope.VirtualMachinesLabel, o.VMNamespaces, o.Namespace)

	rangeLoader := &pool.RangeLoader{
		Cache: mgr.GetCache(), Writer: mgr.GetClient(), Pool: macPool, Namespace: o.Namespace,
		Recorder: recorder, Log: log.WithName("range"),
		OnError: metrics.RangeConfigErrors.Inc,
		OnValidity: func(valid bool) {
			metrics.RangeConfigInvalid.Set(map[bool]float64{true: 0, false: 1}[valid])
		},
		OnMissing: func(missing bool) {
			metrics.RangeConfigMissing.Set(map[bool]float64{true: 1, false: 0}[missing])
		},
	}
	var caughtUpOnce sync.Once
	var caughtUp func() bool // made once both indexes are synced
	macPool.ServeWhen(func() error {
		switch {
		case !book.Synced():
			return errors.New("ledger not synced yet")
		case !carrierFeed.Synced():
			return carrierFeed.NotSyncedReason()
		}
		if err := peerSet.Settled(); err != nil {
			return err
		}
		caughtUpOnce.Do(func() { caughtUp = changes.CaughtUp() })
		if !caughtUp() {
			return errors.New("the pool has not heard of every MAC the indexes hold yet")
		}
		return nil
	})
	metrics.Register(poolNumbers{pool: macPool, ledger: book, carried: carried})
	for _, r := range append([]manager.Runnable{changes, book, rangeLoader, carrierFeed, heartbeats, collector, peerSet,
		&peers.Collisions{Peers: peerSet, Carried: carried, Recorder: recorder, Log: log.WithName("peer-collisions"), Every: o.PeerProbe}},
		stockRunnables...) {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}
	if err := repairer.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the repair: %w", err)
	}
	if err := mgr.Add(&collision.Detector{
		Cache: mgr.GetCache(), Recorder: recorder, Log: log.WithName("collisions"),
		Mapper: mgr.GetRESTMapper(), KubeVirtPoll: o.KubeVirtPoll,
	}); err != nil {
		return nil, err
	}

	if err := mgr.Add(&applied.Checker{
		Cache: mgr.GetCache(), Recorder: recorder, Log: log.WithName("applied"),
		Gave: func(pod metav1.Object, m mac.MAC) bool {
			e, ok := book.Lookup(m)
			return ok && applied.GivenTo(e.Owner, pod)
		},
		OnCount: func(n int) { metrics.NotApplied.Set(float64(n)) },
	}); err != nil {
		return nil, err
	}
	if err := mgr.Add(&legacy.FinalizerRemover{
		Manager: mgr, Live: controllers, Writer: controllers, Mapper: mgr.GetRESTMapper(), Poll: o.KubeVirtPoll, Log: log.WithName("legacy"),
	}); err != nil {
		return nil, err
	}

	mgr.GetWebhookServer().Register(kmpwebhook.PodPath, &webhook.Admission{Handler: kmpwebhook.Timed(&kmpwebhook.PodMutator{
		Pool:          macPool,
		Namespaces:    mgr.GetCache(),
		Scope:         podScope,
		MaxInterfaces: o.MaxInterfaces,
		Ledger:        book,
		StatefulSets:  mgr.GetCache(),
		Live:          mgr.GetAPIReader(),
		Log:           log.WithName("pods"),
	})})
	mgr.GetWebhookServer().Register(kmpwebhook.VirtualMachinePath, &webhook.Admission{Handler: kmpwebhook.Timed(&kmpwebhook.VMMutator{
		Pool:          macPool,
		Namespaces:    mgr.GetCache(),
		Scope:         vmScope,
		MaxInterfaces: o.MaxInterfaces,
		Live:          mgr.GetAPIReader(),
		Log:           log.WithName("virtualmachines"),
		Recorder:      recorder,
	})})

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready means able to allocate: the range is loaded, the index has seen
	// every ledger block and every MAC that pods, VMs and VMIs carry (a
	// replica that served before would hand out MACs in use), and the
	// webhook server is listening.
	webhookStarted := mgr.GetWebhookServer().StartedChecker()
	notReady := func(req *http.Request) error {
		switch {
		case inst.draining.Load():
			return errors.New("shutting down")
		case !macPool.Ready():
			return rangeLoader.NotLoadedReason()
		}
		if err := macPool.Synced(); err != nil {
			return err
		}
		if certProvider != nil {
			if err := certProvider.Ready(); err != nil {
				return err
			}
		}
		return webhookStarted(req)
	}
	if err := mgr.AddReadyzCheck("allocator", logChanges(log.WithName("readiness"), notReady)); err != nil {
		return nil, err
	}
	return inst, nil
}

// logChanges wraps a readiness check so that each change of its answer is
// logged with the reason: the probe endpoint itself only says "failed", and
// an operator looking at a replica that stays unready needs the why.
func logChanges(log logr.Logger, check healthz.Checker) healthz.Checker {
	var mu sync.Mutex
	last := "not checked yet"
	return func(req *http.Request) error {
		err := check(req)
		now := "ready"
		if err != nil {
			now = err.Error()
		}
		mu.Lock()
		defer mu.Unlock()
		if now != last {
			if err != nil {
				log.Info("not ready", "reason", now)
			} else {
				log.Info("ready")
			}
			last = now
		}
		return err
	}
}

// Run serves until ctx ends, then drains: the replica reports not ready but
// keeps serving for ShutdownDelay, so endpoints stop routing to it first,
// then stops, finishing admissions in flight.
func (i *Instance) Run(ctx context.Context) error {
	mgrCtx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		select {
		case <-ctx.Done():
		case <-mgrCtx.Done():
			return
		}
		i.draining.Store(true)
		i.Manager.GetLogger().Info("shutting down: not ready, still serving", "delay", i.opts.ShutdownDelay.String())
		time.Sleep(i.opts.ShutdownDelay)
		stop()
	}()
	return i.Manager.Start(mgrCtx)
}

// poolNumbers feeds the pool gauges.
type poolNumbers struct {
	pool    *pool.Pool
	ledger  *ledger.Ledger
	carried *carriers.Index
}

// StockNumbers is this replica's stock.
func (p poolNumbers) StockNumbers() (free, handed float64) {
	f, h := p.pool.StockNumbers()
	return float64(f), float64(h)
}

// defaultReplicaName is $POD_NAME (the downward API sets it in the
// Deployment), else the host name: what names this replica's stock.
func defaultReplicaName() string {
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	name, _ := os.Hostname()
	return name
}

func heartbeatSelector() labels.Selector {
	req, err := labels.NewRequirement(heartbeat.Label, selection.Exists, nil)
	if err != nil {
		panic(err)
	}
	return labels.NewSelector().Add(*req)
}

// PoolNumbers counts as pending the entries whose owner is not seen
// carrying the MAC (yet): reservations of objects not stored, or not
// indexed yet.
func (p poolNumbers) PoolNumbers() (size, held, pending float64) {
	s := p.pool.Stats()
	var entries []ledger.Entry
	p.ledger.Each(func(e ledger.Entry) { entries = append(entries, e) })
	n := 0
	for _, e := range entries {
		if !heartbeat.IsStock(e.Owner) && !holders.Bound(e.Owner, p.carried.Of(e.MAC)) {
			n++
		}
	}
	return float64(s.Size), float64(s.Held), float64(n)
}

func metricsOptions(o Options, t tlsconfig.Settings) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr, TLSOpts: []func(*tls.Config){t.Apply}}
	if o.MetricsSecure {
		m.SecureServing = true
		m.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return m
}
