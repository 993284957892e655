// Package manager wires kubemacpool together: the webhook server, the pool
// and the controllers, on a controller-runtime manager. cmd/kubemacpool and
// the integration tests both build the manager here, so tests run exactly
// what ships.
package manager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/controller"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
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
	ProbeAddr   string // "0" disables

	LeaderElection   bool
	LeaderElectionID string
	LeaseDuration    time.Duration
	RenewDeadline    time.Duration
	RetryPeriod      time.Duration

	// ReservationGrace is how long a MAC may stay reserved for an object
	// that is never seen persisted before the reservation is deleted.
	ReservationGrace time.Duration
	// RepairInterval is how often every MAC and every carrier is looked at
	// again (adoption, release, collisions) and the pool index rebuilt.
	RepairInterval time.Duration

	PodNamespaces scope.Mode
	VMNamespaces  scope.Mode
	// KubeVirtPoll is how often kubemacpool looks for the KubeVirt CRDs
	// until they are installed.
	KubeVirtPoll time.Duration

	// MultipleInProcess lets several managers run in one process (tests that
	// run two replicas side by side); controller names are then not unique.
	MultipleInProcess bool
}

// Defaults are the production defaults.
func Defaults() Options {
	return Options{
		Namespace:        "kubemacpool-system",
		WebhookPort:      9443,
		CertDir:          "/tmp/k8s-webhook-server/serving-certs",
		MetricsAddr:      ":8443",
		ProbeAddr:        ":8081",
		LeaderElection:   true,
		LeaderElectionID: "kubemacpool-controllers",
		LeaseDuration:    15 * time.Second,
		RenewDeadline:    10 * time.Second,
		RetryPeriod:      2 * time.Second,
		ReservationGrace: 3 * time.Minute,
		RepairInterval:   10 * time.Minute,
		PodNamespaces:    scope.OptOut,
		VMNamespaces:     scope.OptOut,
		KubeVirtPoll:     30 * time.Second,
	}
}

// Validate refuses settings that cannot work, saying which.
func (o Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("namespace must be set"))
	}
	if o.ReservationGrace <= 0 {
		errs = append(errs, fmt.Errorf("reservation grace period must be positive, got %s", o.ReservationGrace))
	}
	if o.RepairInterval <= 0 {
		errs = append(errs, fmt.Errorf("repair interval must be positive, got %s", o.RepairInterval))
	}
	for _, m := range []scope.Mode{o.PodNamespaces, o.VMNamespaces} {
		if _, err := scope.ParseMode(string(m)); err != nil {
			errs = append(errs, err)
		}
	}
	if o.KubeVirtPoll <= 0 {
		errs = append(errs, fmt.Errorf("KubeVirt poll interval must be positive, got %s", o.KubeVirtPoll))
	}
	return errors.Join(errs...)
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

// New builds a manager with everything registered; Start runs it.
func New(ctx context.Context, cfg *rest.Config, o Options) (manager.Manager, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	repair := o.RepairInterval
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme: Scheme(),
		Cache: cache.Options{
			// The periodic resync re-reconciles every MAC: that is the repair loop.
			SyncPeriod: &repair,
			ByObject: map[client.Object]cache.ByObject{
				&corev1.ConfigMap{}: {Namespaces: map[string]cache.Config{o.Namespace: {}}},
				&corev1.Pod{}:       {Transform: slimPod},
			},
		},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    o.WebhookHost,
			Port:    o.WebhookPort,
			CertDir: o.CertDir,
		}),
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.ProbeAddr,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.Namespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.LeaseDuration,
		RenewDeadline:                 &o.RenewDeadline,
		RetryPeriod:                   &o.RetryPeriod,
		Controller:                    ctrlconfig.Controller{SkipNameValidation: &o.MultipleInProcess},
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

	log := mgr.GetLogger()
	recorder := mgr.GetEventRecorder("kubemacpool")
	macPool := pool.New(mgr.GetClient(), mgr.GetAPIReader())
	podScope := scope.New(scope.PodsLabel, o.PodNamespaces, o.Namespace)
	vmScope := scope.New(scope.VirtualMachinesLabel, o.VMNamespaces, o.Namespace)

	poolSync := &controller.PoolSync{Cache: mgr.GetCache(), Pool: macPool, Resync: o.RepairInterval, Log: log.WithName("pool")}
	rangeLoader := &controller.RangeLoader{
		Cache: mgr.GetCache(), Pool: macPool, Namespace: o.Namespace,
		Recorder: recorder, Log: log.WithName("range"),
	}
	for _, r := range []manager.Runnable{poolSync, rangeLoader} {
		if err := mgr.Add(r); err != nil {
			return nil, err
		}
	}

	kinds := controller.NewKinds()
	kinds.Add(controller.PodKind{}, podScope)
	reconciler := &controller.MACReconciler{Lifecycle: &controller.Lifecycle{
		Client:   mgr.GetClient(),
		Live:     mgr.GetAPIReader(),
		Recorder: recorder,
		Kinds:    kinds,
		Grace:    o.ReservationGrace,
	}}
	if err := reconciler.SetupWithManager(ctx, mgr); err != nil {
		return nil, fmt.Errorf("setting up the MAC controller: %w", err)
	}
	if err := mgr.Add(&controller.KubeVirtWatcher{
		Reconciler: reconciler,
		Mapper:     mgr.GetRESTMapper(),
		Scope:      vmScope,
		Interval:   o.KubeVirtPoll,
		Log:        log.WithName("kubevirt"),
	}); err != nil {
		return nil, err
	}

	mgr.GetWebhookServer().Register(kmpwebhook.PodPath, &webhook.Admission{Handler: &kmpwebhook.PodMutator{
		Pool:       macPool,
		Namespaces: mgr.GetCache(),
		Scope:      podScope,
		Log:        log.WithName("pods"),
	}})
	mgr.GetWebhookServer().Register(kmpwebhook.VirtualMachinePath, &webhook.Admission{Handler: &kmpwebhook.VMMutator{
		Pool:       macPool,
		Namespaces: mgr.GetCache(),
		Scope:      vmScope,
		Log:        log.WithName("virtualmachines"),
	}})

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready means able to allocate: the range is loaded, the index has seen
	// every MACAddress, and the webhook server is listening.
	webhookStarted := mgr.GetWebhookServer().StartedChecker()
	if err := mgr.AddReadyzCheck("allocator", func(req *http.Request) error {
		switch {
		case !macPool.Ready():
			return errors.New("MAC range not loaded yet")
		case !poolSync.Synced():
			return errors.New("MACAddress index not synced yet")
		}
		return webhookStarted(req)
	}); err != nil {
		return nil, err
	}
	return mgr, nil
}

// slimPod keeps only what kubemacpool reads of a pod, so the cache stays
// small on clusters with many pods: identity, labels, and the Multus
// annotations.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{}
	slim.Name = pod.Name
	slim.Namespace = pod.Namespace
	slim.GenerateName = pod.GenerateName
	slim.UID = pod.UID
	slim.ResourceVersion = pod.ResourceVersion
	slim.CreationTimestamp = pod.CreationTimestamp
	slim.DeletionTimestamp = pod.DeletionTimestamp
	slim.Labels = pod.Labels
	if v, ok := pod.Annotations[multus.NetworksAnnotation]; ok {
		slim.Annotations = map[string]string{multus.NetworksAnnotation: v}
	}
	return slim, nil
}
