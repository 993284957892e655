// Command bench measures kubemacpool under load on a local control plane
// (kube-apiserver and etcd built from source, as in the integration tests)
// with kubemacpool running from bin/kubemacpool as its own process, and
// prints one table:
//
//   - the admission latency kubemacpool adds to pod and VM creates: the same
//     sequential creates in a served namespace and in one the webhook
//     configuration's namespaceSelector skips, so the difference is ours;
//   - throughput and p99 of creates from 16 goroutines, with and without
//     kubemacpool in the path;
//   - the API writes each create costs besides its own, from the API
//     server's request counters, with and without kubemacpool;
//   - the floor under the added latency: a direct MACBlock update;
//   - start-up at scale: pods and VMs created while kubemacpool was away,
//     each carrying a MAC, then the time until ready, the time until every
//     MAC has a ledger entry, and the resident memory after that; then a
//     restart with all of it in the ledger: ready, and the first pod
//     create through the webhook that succeeds;
//   - with -peer-entries N, the pod series again with one peer cluster (a
//     second control plane whose ledger holds N entries): its cost.
//
// These machines are noisy, so every load figure is printed next to the
// same figure without the webhook, taken in the same run, and their ratio;
// targets are printed beside them, never enforced.
//
// `make bench` builds kubemacpool and runs this after the Go benchmarks of
// the pool. Counts are flags, so a quick run is possible:
//
//	go run ./hack/bench -seq 50 -concurrent 200 -pods 500 -vms 500
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

const managerNamespace = "kubemacpool-system"

type options struct {
	seq               int    // sequential creates per series
	concurrent        int    // concurrent creates per series
	workers           int    // goroutines of the concurrent series and of the start-up fill
	warmup            int    // creates per namespace before measuring
	pods, vms         int    // objects carrying a MAC at start-up
	podMACs           int    // MACs each start-up pod carries
	log               string // kubemacpool's log file; "" for one in the run's temp dir
	heap              string // where to write a heap profile after repair; "" for none
	cpu               string // where to write a CPU profile of the served concurrent pod series; "" for none
	apiCPU            string // where to write the API server's CPU profiles of the concurrent pod series (.served, .ignored); "" for none
	startupCPU        string // where to write a CPU profile of kubemacpool's first start; "" for none
	restartCPU        string // where to write a CPU profile of its restart with every MAC in the ledger; "" for none
	startupAPICPU     string // where to write kube-apiserver's CPU profile over kubemacpool's first start; "" for none
	seriesAtScale     bool   // run the admission series again after the start-up measure, its objects present
	restarts          int    // restarts timed to the first good create
	startupCPUSeconds int
	kmpArgs           flagList // more flags for kubemacpool
	peerEntries       int      // entries in a peer cluster's ledger for the peer series; 0: no peer series
}

// flagList is a repeatable string flag.
type flagList []string

func (l *flagList) String() string     { return strings.Join(*l, " ") }
func (l *flagList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	// The bench's own informer (the ledger watch) logs through
	// controller-runtime; its messages are not the bench's output.
	ctrllog.SetLogger(logr.Discard())
	var o options
	flag.IntVar(&o.seq, "seq", 500, "sequential creates per series (pods and VMs, each in a served and an ignored namespace)")
	flag.IntVar(&o.concurrent, "concurrent", 2000, "concurrent creates per series (pods and VMs, each in a served and an ignored namespace)")
	flag.IntVar(&o.workers, "workers", 16, "goroutines creating objects in the concurrent series and the start-up fill")
	flag.IntVar(&o.warmup, "warmup", 50, "unmeasured creates per namespace before measuring")
	flag.IntVar(&o.pods, "pods", 10000, "pods carrying a MAC, created without kubemacpool, for the start-up measure")
	flag.IntVar(&o.podMACs, "pod-macs", 1, "MACs each start-up pod carries (one Multus network each)")
	flag.IntVar(&o.vms, "vms", 10000, "VMs carrying a MAC, created without kubemacpool, for the start-up measure")
	flag.StringVar(&o.heap, "heap", "", "write a heap profile of kubemacpool to this file when its memory is measured after repair (go tool pprof FILE), and its text form, with the runtime's MemStats, to FILE.txt")
	flag.StringVar(&o.cpu, "cpu", "", "write a CPU profile of kubemacpool, taken over 5 s of the concurrent pod creates it serves, to this file (go tool pprof FILE)")
	flag.StringVar(&o.apiCPU, "api-cpu", "", "write kube-apiserver's CPU profiles, each over 5 s of the concurrent pod creates, to FILE.served and FILE.ignored: where the API server's time goes with and without the webhook")
	flag.StringVar(&o.startupCPU, "startup-cpu", "", "write a CPU profile of kubemacpool's first start (the start-up measure), over -startup-cpu-seconds from the process start, to this file")
	flag.StringVar(&o.restartCPU, "restart-cpu", "", "write a CPU profile of kubemacpool's restart with every MAC in the ledger (the restart measure's ready), over -startup-cpu-seconds from the process start, to this file")
	flag.IntVar(&o.restarts, "restarts", 1, "how many times to restart kubemacpool with every MAC held and time its first good create (the median and each run are printed)")
	flag.BoolVar(&o.seriesAtScale, "series-at-scale", false, "after the start-up measure, run the admission series again with its -pods and -vms objects still present")
	flag.StringVar(&o.startupAPICPU, "startup-api-cpu", "", "write kube-apiserver's CPU profile over kubemacpool's first start (-startup-cpu-seconds from its process start) to this file: serving the replica's lists, then the adoption's writes")
	flag.IntVar(&o.startupCPUSeconds, "startup-cpu-seconds", 10, "how long the -startup-cpu, -startup-api-cpu and -restart-cpu profiles last")
	flag.IntVar(&o.peerEntries, "peer-entries", 0, "also run the pod series with one peer cluster (a second control plane) whose ledger holds this many entries, beside the same run's figures without it; 0: no peer series")
	flag.Var(&o.kmpArgs, "kmp-arg", "a flag for kubemacpool, after the bench's own (repeatable), e.g. -kmp-arg=--stock-max=0 to measure without the stock")
	flag.StringVar(&o.log, "log", "", "write kubemacpool's log to this file and keep it (default: a temp file, kept only on failure)")
	flag.Parse()
	if o.seq < 1 || o.concurrent < 1 || o.restarts < 1 || o.podMACs < 1 || o.workers < 1 || o.warmup < 0 || o.pods < 0 || o.vms < 0 || o.pods+o.vms < 1 {
		fmt.Fprintln(os.Stderr, "bench: -seq, -concurrent, -workers, -restarts and -pod-macs must be positive, -pods + -vms at least 1")
		os.Exit(2)
	}

	// Ctrl-C cancels the load; run's deferred calls still stop kubemacpool
	// and the control plane.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	t, err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	t.print()
}

// say reports progress on stderr; the table alone goes to stdout.
func say(format string, args ...any) { fmt.Fprintf(os.Stderr, ">> "+format+"\n", args...) }

// bench is one run: the control plane, kubemacpool, and the table so far.
type bench struct {
	ctx context.Context
	c   client.Client
	cfg *rest.Config // the admin's
	// view follows the ledger, pods and VMs with watches: what settle and
	// the adoption count read, without listing a cluster of 100,000
	// objects from the API server every poll (which took its CPU from
	// what was being measured).
	view       cache.Cache
	api        rest.Interface // the admin's raw client, for the API server's /metrics
	o          options
	kmp        *testenv.Process
	namespaces []string // created by the load series, emptied before start-up
	// plainCreate is the sequential pod create without the webhook, the
	// reference for the direct MACBlock update.
	plainCreate summary
	table       table
	pprofAddr   string // kubemacpool's /debug/pprof, with -heap, -cpu or -startup-cpu
	metricsAddr string // kubemacpool's plain-HTTP metrics, with -peer-entries
	// variant names the series being run in table rows (variantNS in
	// namespaces): "" for the plain ones, ", one peer (N entries)" for
	// the peer series.
	variant, variantNS string
}

func run(ctx context.Context, o options) (t *table, err error) {
	root := testenv.RepoRoot()
	binary := filepath.Join(root, "bin", "kubemacpool")
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("%s is missing: run `make build` first (`make bench` does)", binary)
	}
	workDir, err := os.MkdirTemp("", "kubemacpool-bench-")
	if err != nil {
		return nil, err
	}
	logPath := o.log
	if logPath == "" {
		logPath = filepath.Join(workDir, "kubemacpool.log")
	}
	defer func() {
		if err != nil {
			say("kept kubemacpool's log for a look: %s", logPath)
			return
		}
		os.RemoveAll(workDir)
	}()

	say("starting kube-apiserver and etcd")
	env, err := testenv.Start(testenv.Options{ExtraCRDDirs: []string{"test/fixtures/crds"}})
	if err != nil {
		return nil, err
	}
	defer func() {
		say("stopping the control plane")
		_ = env.Stop()
	}()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}}); err != nil {
		return nil, err
	}
	pprofAddr := ""
	if o.heap != "" || o.cpu != "" || o.startupCPU != "" || o.restartCPU != "" {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		pprofAddr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	metricsAddr, extra := "", o.kmpArgs
	if o.peerEntries > 0 {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		metricsAddr = fmt.Sprintf("127.0.0.1:%d", port)
		extra = append(append(flagList{}, extra...), "--cluster-name="+benchCluster, "--metrics-bind-address="+metricsAddr, "--metrics-secure=false")
	}
	kmp, err := newKubemacpool(env, binary, workDir, logPath, pprofAddr, extra)
	if err != nil {
		return nil, err
	}
	defer kmp.Stop()

	// The raw client reads the API server's profiles, which take as long as
	// they are asked to: not the discovery client's 32 s timeout.
	apiCfg := rest.CopyConfig(env.Config)
	apiCfg.Timeout = 10 * time.Minute
	dc, err := discovery.NewDiscoveryClientForConfig(apiCfg)
	if err != nil {
		return nil, err
	}
	b := &bench{ctx: ctx, c: env.Client, cfg: env.Config, api: dc.RESTClient(), o: o, kmp: kmp, pprofAddr: pprofAddr, metricsAddr: metricsAddr}
	if b.view, err = b.startView(); err != nil {
		return nil, err
	}
	b.table.title = fmt.Sprintf("kubemacpool benchmarks (GOMAXPROCS=%d, %s)", runtime.GOMAXPROCS(0), cpuModel())
	if err := b.start(); err != nil {
		return nil, err
	}
	for _, w := range []workload{pods, vms} {
		if err := b.admission(w); err != nil {
			return nil, err
		}
	}
	if o.peerEntries > 0 {
		if err := b.withPeer(); err != nil {
			return nil, err
		}
	}
	if err := b.settle(); err != nil {
		return nil, err
	}
	if err := b.memory("resident memory after the create series", ""); err != nil {
		return nil, err
	}
	if err := b.startup(); err != nil {
		return nil, err
	}
	return &b.table, nil
}

// newKubemacpool prepares kubemacpool as hack/local runs it: serving the
// webhook at the address and with the certificate the API server was
// configured with, talking to the API server as an administrator.
func newKubemacpool(env *testenv.Env, binary, workDir, logPath, pprofAddr string, extra []string) (*testenv.Process, error) {
	kubeconfig := filepath.Join(workDir, "kubeconfig")
	data, err := env.Kubeconfig()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return nil, err
	}
	probePort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	o := manager.Defaults()
	o.Namespace = managerNamespace
	o.WebhookHost, o.WebhookPort, o.CertDir = env.WebhookHost, env.WebhookPort, env.CertDir
	o.CertMode = manager.CertModeFiles // envtest's certificate, which the API server trusts
	o.ShutdownDelay = 0
	o.MetricsAddr = "0"
	o.ProbeAddr = fmt.Sprintf("127.0.0.1:%d", probePort)
	o.PprofAddr = pprofAddr
	return &testenv.Process{
		Binary:   binary,
		LogPath:  logPath,
		ReadyURL: "http://" + o.ProbeAddr + "/readyz",
		Args:     append(append(o.Args(), "--kubeconfig="+kubeconfig), extra...),
	}, nil
}

// start starts kubemacpool and waits until it is ready.
func (b *bench) start() error {
	say("starting kubemacpool")
	if err := b.kmp.Start(); err != nil {
		return err
	}
	_, err := b.kmp.WaitReady(b.ctx, 2*time.Minute)
	return err
}

// namespace creates a namespace for the load and remembers it.
func (b *bench) namespace(name string, labels map[string]string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := b.c.Create(b.ctx, ns); err != nil {
		return "", err
	}
	b.namespaces = append(b.namespaces, name)
	return name, nil
}

// admission measures creates of w with kubemacpool's webhook in the path
// (served namespace) and without it (ignored namespace): sequentially for
// latency, then from b.o.workers goroutines for throughput.
func (b *bench) admission(w workload) error {
	served, err := b.namespace("bench-"+strings.ToLower(w.name)+b.variantNS, nil)
	if err != nil {
		return err
	}
	ignored, err := b.namespace("bench-"+strings.ToLower(w.name)+b.variantNS+"-ignored", map[string]string{w.ignore: "ignore"})
	if err != nil {
		return err
	}
	// The first burst of creates after start stalls once (about 2 s) in
	// the API server, for the first of a kind; that is not kubemacpool's.
	say("%s: %d warm-up creates in each namespace", w.name, b.o.warmup)
	for _, ns := range []string{served, ignored} {
		if _, err := sequential(b.ctx, b.c, b.o.warmup, w.series(ns, "warmup")); err != nil {
			return err
		}
	}

	say("%s: %d sequential creates in each namespace", w.name, b.o.seq)
	seqServed, err := b.sequential(w, b.o.seq, w.series(served, "seq"))
	if err != nil {
		return err
	}
	seqIgnored, err := b.sequential(w, b.o.seq, w.series(ignored, "seq"))
	if err != nil {
		return err
	}
	say("%s: %d creates from %d goroutines in each namespace", w.name, b.o.concurrent, b.o.workers)
	profiled := b.profiles(w, "served", b.cpuProfile)
	conServed, err := b.concurrent(w, b.o.concurrent, w.series(served, "concurrent"))
	if err != nil {
		return err
	}
	if err := profiled(); err != nil {
		return err
	}
	profiled = b.profiles(w, "ignored", nil)
	conIgnored, err := b.concurrent(w, b.o.concurrent, w.series(ignored, "concurrent"))
	if err != nil {
		return err
	}
	if err := profiled(); err != nil {
		return err
	}
	if w.name == pods.name {
		b.plainCreate = seqIgnored.summary
	}

	s, i := seqServed, seqIgnored
	b.row(fmt.Sprintf("%s create, sequential, %s: p50 / p99", w.name, w.shape),
		fmt.Sprintf("%s / %s vs %s / %s without the webhook = %s / %s", ms(s.p50), ms(s.p99), ms(i.p50), ms(i.p99), percent(s.p50, i.p50), percent(s.p99, i.p99)), "")
	b.row(fmt.Sprintf("added admission latency (%ss), sequential: p50 / p99", w.name),
		fmt.Sprintf("%s / %s (served minus no-webhook namespace)", ms(s.p50-i.p50), ms(s.p99-i.p99)), w.targets.added)
	b.row(fmt.Sprintf("API writes per %s besides its own, sequential", w.name),
		fmt.Sprintf("%s vs %s without the webhook", s.writes, i.writes), w.targets.seqWrites)
	cs, ci := conServed, conIgnored
	b.row(fmt.Sprintf("%s create, %d concurrent, %s: throughput", w.name, b.o.workers, w.shape),
		fmt.Sprintf("%s vs %s without the webhook = %s", rate(cs.throughput), rate(ci.throughput), percent(cs.throughput, ci.throughput)), w.targets.throughput)
	b.row(fmt.Sprintf("%s create, %d concurrent: p99", w.name, b.o.workers),
		fmt.Sprintf("%s vs %s without the webhook = %s", ms(cs.p99), ms(ci.p99), percent(cs.p99, ci.p99)), "")
	b.row(fmt.Sprintf("API writes per %s besides its own, %d concurrent", w.name, b.o.workers),
		fmt.Sprintf("%s vs %s without the webhook", cs.writes, ci.writes), w.targets.conWrites)
	return nil
}

// result is one measured series: what its creates saw, and what they cost
// the API server in writes besides their own.
type result struct {
	summary
	writes writes
}

func (b *bench) sequential(w workload, n int, next build) (result, error) {
	return b.measure(w, n, func() ([]time.Duration, time.Duration, error) {
		latencies, err := sequential(b.ctx, b.c, n, next)
		return latencies, 0, err
	})
}

func (b *bench) concurrent(w workload, n int, next build) (result, error) {
	return b.measure(w, n, func() ([]time.Duration, time.Duration, error) {
		return concurrent(b.ctx, b.c, n, b.o.workers, next)
	})
}

// measure runs a series of n creates of w between two settles, and reads
// the API server's write counters just after each. The first settle keeps
// the series from paying for the one before (the ignored namespace would
// look slower than it is); the second lets writes the series causes after
// its last create land in its own count rather than the next one's.
func (b *bench) measure(w workload, n int, series func() ([]time.Duration, time.Duration, error)) (result, error) {
	if err := b.settle(); err != nil {
		return result{}, err
	}
	before, err := readWrites(b.ctx, b.api)
	if err != nil {
		return result{}, err
	}
	latencies, wall, err := series()
	if err != nil {
		return result{}, err
	}
	if err := b.settle(); err != nil {
		return result{}, err
	}
	after, err := readWrites(b.ctx, b.api)
	if err != nil {
		return result{}, err
	}
	return result{summary: summarize(latencies, wall), writes: writesBetween(before, after, w.resource, n)}, nil
}

const (
	settleTimeout = 5 * time.Minute
	// settleQuiet is how long the ledger must not change: well above the
	// time one block write takes, so a batch still going out is seen.
	settleQuiet = time.Second
	// settlePoll is not shorter: each poll lists every pod, VM and block,
	// work for the API server that would slow what it waits for.
	settlePoll = 500 * time.Millisecond
)

// settle waits until kubemacpool is idle. Nothing is written when an entry
// becomes bound, so there is no phase to wait for; idle is judged from the
// ledger and the objects instead, two conditions that must both hold:
//
//   - balance: every entry's MAC is carried by an object matching its
//     owner and every carried MAC has such an entry. A reservation whose
//     object is not stored (in flight, or left by a failed create until
//     the repair drops it) fails it; so does a carried MAC never recorded.
//   - quiet: no block created, written or deleted for settleQuiet. Balance
//     alone could hold in the instant between two writes of a batch.
//
// It cannot pass early in the sense that matters here: a series started
// after it finds no ledger write of the previous one still to come. What
// it cannot see is kubemacpool's own memory (its watch catching up), which
// costs CPU but no API call.
func (b *bench) settle() error {
	deadline := time.Now().Add(settleTimeout)
	var last string
	var quietSince time.Time
	for {
		blocks, err := b.listBlocks(b.ctx)
		if err != nil {
			return err
		}
		carried, err := b.carried(b.ctx)
		if err != nil {
			return err
		}
		unbound, missing := balance(blocks, carried)
		now := time.Now()
		if fp := fingerprint(blocks); fp != last || quietSince.IsZero() {
			last, quietSince = fp, now
		}
		if unbound == 0 && missing == 0 && now.Sub(quietSince) >= settleQuiet {
			return nil
		}
		if err := b.kmp.Alive(); err != nil {
			return err
		}
		if now.After(deadline) {
			return fmt.Errorf("kubemacpool not idle after %s: %d ledger entries not carried by their owner, %d carried MACs without an entry", settleTimeout, unbound, missing)
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(settlePoll):
		}
	}
}

// memory adds kubemacpool's resident memory to the table.
func (b *bench) memory(label, target string) error {
	rss, err := b.kmp.ResidentMemory()
	if err != nil {
		return err
	}
	peak, err := b.kmp.PeakResidentMemory()
	if err != nil {
		return err
	}
	anon, err := b.kmp.AnonymousMemory()
	if err != nil {
		return err
	}
	b.table.add(label, fmt.Sprintf("%d MiB (peak %d MiB; %d MiB anonymous, %d MiB of files: the binary)", rss>>20, peak>>20, anon>>20, (rss-anon)>>20), target)
	if b.o.heap != "" && target != "" {
		return b.heapProfile()
	}
	return nil
}

// profiles starts the CPU profiles asked for over the next concurrent pod
// series (of kubemacpool, if kmp is set and -cpu asks; of the API server
// with -api-cpu), and returns a wait for them.
func (b *bench) profiles(w workload, series string, kmp func(time.Duration) error) (wait func() error) {
	if w.name != pods.name {
		return func() error { return nil }
	}
	var jobs []chan error
	start := func(f func() error) {
		ch := make(chan error, 1)
		go func() { ch <- f() }()
		jobs = append(jobs, ch)
	}
	if kmp != nil && b.o.cpu != "" {
		start(func() error { return kmp(5 * time.Second) })
	}
	if b.o.apiCPU != "" {
		start(func() error { return b.apiServerProfile(b.o.apiCPU+"."+series, 5*time.Second) })
	}
	return func() error {
		var errs []error
		for _, ch := range jobs {
			errs = append(errs, <-ch)
		}
		return errors.Join(errs...)
	}
}

// apiServerProfile saves kube-apiserver's CPU profile over d to file.
func (b *bench) apiServerProfile(file string, d time.Duration) error {
	raw, err := b.api.Get().AbsPath("/debug/pprof/profile").Param("seconds", fmt.Sprint(int(d.Seconds()))).Timeout(d + 30*time.Second).DoRaw(b.ctx)
	if err != nil {
		return fmt.Errorf("reading kube-apiserver's CPU profile: %w", err)
	}
	return os.WriteFile(file, raw, 0o644)
}

// cpuProfile saves a CPU profile of kubemacpool over d to the -cpu file.
func (b *bench) cpuProfile(d time.Duration) error {
	return b.saveProfile(fmt.Sprintf("profile?seconds=%d", int(d.Seconds())), b.o.cpu)
}

// heapProfile saves kubemacpool's heap profile to the -heap file.
func (b *bench) heapProfile() error {
	if err := b.saveProfile("heap", b.o.heap); err != nil {
		return err
	}
	// The text form ends with the runtime's MemStats: the heap's idle and
	// released pages, stacks and the runtime's own, beside the profile.
	return b.saveProfile("heap?debug=1", b.o.heap+".txt")
}

// saveProfile saves kubemacpool's /debug/pprof/<which> to file.
func (b *bench) saveProfile(which, file string) error {
	resp, err := http.Get("http://" + b.pprofAddr + "/debug/pprof/" + which)
	if err != nil {
		return fmt.Errorf("reading kubemacpool's profile %s: %w", which, err)
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

// table is the result: a title and measure/value/target rows.
type table struct {
	title string
	rows  [][3]string
}

func (t *table) add(label, value, target string) {
	t.rows = append(t.rows, [3]string{label, value, target})
}

// row adds a row of the series being run, named with its variant.
func (b *bench) row(label, value, target string) { b.table.add(label+b.variant, value, target) }

func (t *table) print() {
	fmt.Println(t.title)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "measure\tvalue\ttarget")
	for _, r := range t.rows {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r[0], r[1], r[2])
	}
	w.Flush()
	fmt.Println("Targets are the design's aims at the default counts; the program reports them and never fails for a miss.")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func rate(perSecond float64) string { return fmt.Sprintf("%.0f creates/s", perSecond) }

// percent is a against its baseline b, as "16%".
func percent[T time.Duration | float64](a, b T) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(a)/float64(b))
}

// cpuModel is the first "model name" of /proc/cpuinfo, for the title.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if key, value, ok := strings.Cut(scanner.Text(), ":"); ok && strings.TrimSpace(key) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}
