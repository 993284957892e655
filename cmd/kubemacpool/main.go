// Command kubemacpool runs the MAC pool: the admission webhook that gives
// secondary interfaces unique MACs, and the controllers that keep the
// MACAddress objects in step with the cluster.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubemacpool/kubemacpool/internal/cli"
	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

func main() {
	if args, ok := cliArgs(os.Args); ok {
		os.Exit(runCLI(args))
	}
	o := manager.Defaults()
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		o.Namespace = ns
	}
	podMode, vmMode := string(o.PodNamespaces), string(o.VMNamespaces)
	certHosts := strings.Join(o.CertHosts, ",")
	var qps float64
	var burst int

	flag.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace kubemacpool runs in: holds the range ConfigMap and the leader Lease, and is never mutated (default: $POD_NAMESPACE or kubemacpool-system)")
	flag.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "address the webhook server listens on (empty: all)")
	flag.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "port the webhook server listens on")
	flag.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory holding the webhook serving certificate (tls.crt, tls.key)")
	flag.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of the metrics endpoint; 0 disables it")
	flag.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure, "serve metrics over HTTPS to token-authenticated, RBAC-authorised scrapers; false serves plain HTTP")
	flag.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz; 0 disables them")
	flag.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "run the controllers only on the replica holding the Lease (every replica serves the webhook)")
	flag.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "how long a lost leader's Lease blocks the other replicas (controllers only; the webhook never waits)")
	flag.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "how long the leader retries renewing its Lease before giving up leadership")
	flag.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "how often replicas try to take or renew the Lease")
	flag.DurationVar(&o.ReservationGrace, "reservation-grace", o.ReservationGrace, "how long a MAC stays reserved for an object that is never seen created before it is released")
	flag.DurationVar(&o.RepairInterval, "repair-interval", o.RepairInterval, "how often every MAC and every object carrying one is checked again")
	flag.StringVar(&podMode, "pod-namespaces", podMode, "which namespaces get pod MACs: opt-out (all but those labelled "+scope.PodsLabel+"=ignore) or opt-in (only those labelled "+scope.PodsLabel+"=allocate)")
	flag.StringVar(&vmMode, "vm-namespaces", vmMode, "which namespaces get VirtualMachine MACs: opt-out (all but those labelled "+scope.VirtualMachinesLabel+"=ignore) or opt-in (only those labelled "+scope.VirtualMachinesLabel+"=allocate)")
	flag.DurationVar(&o.KubeVirtPoll, "kubevirt-poll-interval", o.KubeVirtPoll, "how often to look for the KubeVirt CRDs while they are not installed")
	flag.StringVar(&o.CertMode, "cert-mode", o.CertMode, "self: keep a CA and serving certificate in --cert-secret and publish the CA in --webhook-configuration; files: serve tls.crt/tls.key from --cert-dir (e.g. from cert-manager)")
	flag.StringVar(&o.CertSecret, "cert-secret", o.CertSecret, "Secret (in --namespace) holding the webhook CA and serving certificate, with --cert-mode=self")
	flag.StringVar(&o.WebhookConfig, "webhook-configuration", o.WebhookConfig, "MutatingWebhookConfiguration whose caBundle kubemacpool keeps, with --cert-mode=self")
	flag.StringVar(&certHosts, "cert-hosts", certHosts, "comma-separated DNS names or IPs the serving certificate is valid for, with --cert-mode=self")
	flag.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "after SIGTERM, keep serving while not ready for this long, so the Service stops routing here first")
	flag.Float64Var(&qps, "kube-api-qps", 200, "requests per second to the API server; every MAC handed out is one create")
	flag.IntVar(&burst, "kube-api-burst", 400, "burst of requests to the API server")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	var err error
	if o.PodNamespaces, err = scope.ParseMode(podMode); err != nil {
		fail(fmt.Errorf("--pod-namespaces: %w", err))
	}
	if o.VMNamespaces, err = scope.ParseMode(vmMode); err != nil {
		fail(fmt.Errorf("--vm-namespaces: %w", err))
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		fail(fmt.Errorf("no Kubernetes configuration found (in-cluster, --kubeconfig or $KUBECONFIG): %w", err))
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	ctx := ctrl.SetupSignalHandler()
	o.CertHosts = strings.Split(certHosts, ",")
	kmp, err := manager.New(ctx, cfg, o)
	if err != nil {
		fail(err)
	}
	log.Info("starting kubemacpool", "namespace", o.Namespace, "podNamespaces", o.PodNamespaces, "vmNamespaces", o.VMNamespaces, "certMode", o.CertMode)
	if err := kmp.Run(ctx); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubemacpool:", err)
	os.Exit(1)
}

// cliArgs recognises the operator commands: `kubemacpool status|who|collisions`,
// or any arguments when installed as the kubectl plugin kubectl-macpool.
func cliArgs(argv []string) ([]string, bool) {
	if filepath.Base(argv[0]) == "kubectl-macpool" {
		return argv[1:], true
	}
	if len(argv) > 1 {
		switch argv[1] {
		case "status", "who", "collisions":
			return argv[1:], true
		}
	}
	return nil, false
}

func runCLI(args []string) int {
	fs := flag.NewFlagSet("kubemacpool", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	namespace := fs.String("namespace", "kubemacpool-system", "namespace kubemacpool runs in (holds the range ConfigMap)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kubemacpool [flags] %s\n", cli.Commands)
		fs.PrintDefaults()
	}
	// Flags may come before or after the command.
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var cfg *rest.Config
	var err error
	if *kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	} else {
		cfg, err = ctrl.GetConfig()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubemacpool: no Kubernetes configuration:", err)
		return 1
	}
	c, err := client.New(cfg, client.Options{Scheme: manager.Scheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubemacpool:", err)
		return 1
	}
	if err := cli.Run(context.Background(), c, *namespace, positional, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kubemacpool:", err)
		return 1
	}
	return 0
}
