package manager

import (
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/kubemacpool/kubemacpool/internal/peers"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// BindFlags registers a flag for every option on fs, each defaulting to
// o's value. Call the returned func after fs.Parse: it checks and applies
// what is not a plain value (namespace modes, the host list).
func (o *Options) BindFlags(fs *flag.FlagSet) (complete func() error) {
	podMode, vmMode := string(o.PodNamespaces), string(o.VMNamespaces)
	certHosts := strings.Join(o.CertHosts, ",")
	cipherSuites := strings.Join(o.TLSCipherSuites, ",")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace kubemacpool runs in: holds the range ConfigMap and the leader Lease, and is never mutated (default: $POD_NAMESPACE or kubemacpool-system)")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "address the webhook server listens on (empty: all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "port the webhook server listens on")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory holding the webhook serving certificate (tls.crt, tls.key)")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of the metrics endpoint; 0 disables it")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure, "serve metrics over HTTPS to token-authenticated, RBAC-authorised scrapers; false serves plain HTTP")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz; 0 disables them")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", o.PprofAddr, "address serving Go's /debug/pprof profiles (CPU, heap) for debugging a replica; empty or 0 disables")
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "run the repair and collision reports only on the replica holding the Lease (every replica serves the webhook)")
	fs.StringVar(&o.LeaderElectionID, "leader-elect-id", o.LeaderElectionID, "name of the leader-election Lease")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "how long a lost leader's Lease blocks the other replicas (the repair only; the webhook never waits)")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "how long the leader retries renewing its Lease before giving up leadership")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "how often replicas try to take or renew the Lease")
	fs.DurationVar(&o.ReservationGrace, "reservation-grace", o.ReservationGrace, "how long a MAC stays reserved for an object that is never seen carrying it before the entry is removed; at least --min-reservation-grace")
	fs.DurationVar(&o.MinReservationGrace, "min-reservation-grace", o.MinReservationGrace, "the shortest --reservation-grace accepted: an entry must outlive the time from kubemacpool's answer until the API server stores the object (other webhooks, up to 30s each, and the API server's request timeout, 1m by default); an entry removed before that frees a MAC the object is about to carry. Lower it only for tests")
	fs.DurationVar(&o.RepairInterval, "repair-interval", o.RepairInterval, "how often every MAC block and every carried MAC is judged again")
	fs.StringVar(&podMode, "pod-namespaces", podMode, "which namespaces get pod MACs: opt-out (all but those labelled "+scope.PodsLabel+"=ignore) or opt-in (only those labelled "+scope.PodsLabel+"=allocate)")
	fs.StringVar(&vmMode, "vm-namespaces", vmMode, "which namespaces get VirtualMachine MACs: opt-out (all but those labelled "+scope.VirtualMachinesLabel+"=ignore) or opt-in (only those labelled "+scope.VirtualMachinesLabel+"=allocate)")
	fs.DurationVar(&o.KubeVirtPoll, "kubevirt-poll-interval", o.KubeVirtPoll, "how often to look for the KubeVirt CRDs while they are not installed")
	fs.StringVar(&o.CertMode, "cert-mode", o.CertMode, "self: keep a CA and serving certificate in --cert-secret and publish the CA in --webhook-configuration; files: serve tls.crt/tls.key from --cert-dir (e.g. from cert-manager)")
	fs.StringVar(&o.CertSecret, "cert-secret", o.CertSecret, "Secret (in --namespace) holding the webhook CA and serving certificate, with --cert-mode=self")
	fs.StringVar(&o.WebhookConfig, "webhook-configuration", o.WebhookConfig, "MutatingWebhookConfiguration whose caBundle kubemacpool keeps, with --cert-mode=self")
	fs.StringVar(&certHosts, "cert-hosts", certHosts, "comma-separated DNS names or IPs the serving certificate is valid for, with --cert-mode=self (default: those of the Service "+ServiceName+" in --namespace)")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "after SIGTERM, keep serving while not ready for this long, so the Service stops routing here first")
	fs.StringVar(&o.TLSMinVersion, "tls-min-version", o.TLSMinVersion, "lowest TLS version the webhook and metrics servers accept: 1.2 or 1.3")
	fs.StringVar(&cipherSuites, "tls-cipher-suites", cipherSuites, "comma-separated TLS 1.2 cipher suites (IANA names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) for the webhook and metrics servers; empty: Go's secure defaults (TLS 1.3 suites are fixed)")
	fs.IntVar(&o.MaxPendingPerNamespace, "max-pending-per-namespace", o.MaxPendingPerNamespace, "most MAC reservations of one namespace that may wait for their objects (made within --reservation-grace, not seen carried yet); a request beyond it is refused. 0: no bound")
	fs.Float64Var(&o.ControllersQPS, "controllers-api-qps", o.ControllersQPS, "requests per second to the API server of the leader's controllers (repair, cleanup), apart from the webhook's --kube-api-qps")
	fs.IntVar(&o.ControllersBurst, "controllers-api-burst", o.ControllersBurst, "burst of the controllers' requests to the API server")
	fs.IntVar(&o.MaxInterfaces, "max-interfaces", o.MaxInterfaces, "most networks one pod, or managed interfaces one VM or VMI, may get MACs for; a request asking for more is refused before anything is reserved (at most 256, the most MACs one object is taken to carry)")
	fs.StringVar(&o.ReplicaName, "replica-name", o.ReplicaName, "this replica's name, which holds its stock of MACs in the ledger (default: $POD_NAME, else the host name)")
	fs.IntVar(&o.StockMax, "stock-max", o.StockMax, "most MACs a replica holds in stock, to hand out at admission without an API call (sized from the admission rate, at most 1/32 of the free addresses, none when fewer than 1024 are free); 0: every admission writes its MAC block")
	fs.DurationVar(&o.StockHeartbeat, "stock-heartbeat", o.StockHeartbeat, "how long a replica's stock heartbeat (a Lease per process start) lasts without renewal; renewed 4 times per period, and the stock is handed out only while renewed within half of it. A dead replica's stock is released this long after its last renewal plus --reservation-grace")
	fs.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "this cluster's name, as its peer clusters' Secrets (label "+peers.Label+") name it: clusters sharing L2 networks split the MAC blocks by their names. Needed only with peers; a DNS label")
	fs.DurationVar(&o.PeerProbe, "peer-probe-interval", o.PeerProbe, "how often each peer cluster's API server is read to tell whether it is up (kmp_peer_up), and the peers' ledgers compared with what this cluster's objects carry (cross-cluster collisions)")
	return func() error {
		var err error
		if o.PodNamespaces, err = scope.ParseMode(podMode); err != nil {
			return fmt.Errorf("--pod-namespaces: %w", err)
		}
		if o.VMNamespaces, err = scope.ParseMode(vmMode); err != nil {
			return fmt.Errorf("--vm-namespaces: %w", err)
		}
		o.CertHosts = nil
		if certHosts != "" {
			o.CertHosts = strings.Split(certHosts, ",")
		}
		o.TLSCipherSuites = nil
		if cipherSuites != "" {
			o.TLSCipherSuites = strings.Split(cipherSuites, ",")
		}
		return nil
	}
}

// Args is the command line that gives o, in the flags of BindFlags: the
// way tests and the local runner start kubemacpool as a process with the
// same options they would build in memory.
func (o Options) Args() []string {
	fs := flag.NewFlagSet("kubemacpool", flag.ContinueOnError)
	o.BindFlags(fs)
	var args []string
	fs.VisitAll(func(f *flag.Flag) { args = append(args, "--"+f.Name+"="+f.DefValue) })
	sort.Strings(args)
	return args
}
