// Command kubemacpool runs the MAC pool: the admission webhook that gives
// secondary interfaces unique MACs, the ledger of MAC blocks every replica
// keeps, and the repair the leader runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kubemacpool/kubemacpool/internal/cli"
	"github.com/kubemacpool/kubemacpool/internal/manager"
)

func main() {
	if args, ok := cliArgs(os.Args); ok {
		os.Exit(runCLI(args))
	}
	o := manager.Defaults()
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		o.Namespace = ns
	}
	complete := o.BindFlags(flag.CommandLine)
	var qps float64
	var burst int
	flag.Float64Var(&qps, "kube-api-qps", 200, "requests per second to the API server (an admission costs about one MAC block write)")
	flag.IntVar(&burst, "kube-api-burst", 400, "burst of requests to the API server")
	var compression bool
	flag.BoolVar(&compression, "kube-api-compression", false, "ask the API server for gzip-compressed responses: saves bandwidth on a slow link to it, and costs its CPU and ours on every list and watch (every replica lists every pod, VM, VMI and MAC block at start)")

	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

	if err := complete(); err != nil {
		fail(err)
	}

	setMemoryLimit(log)

	cfg, err := ctrl.GetConfig()
	if err != nil {
		fail(fmt.Errorf("no Kubernetes configuration found (in-cluster, --kubeconfig or $KUBECONFIG): %w", err))
	}
	cfg.QPS, cfg.Burst = float32(qps), burst
	// The replicas reach the API server over the cluster's network:
	// compressing the lists of the whole cluster they read at start took
	// the API server's CPU when it was needed most (issue 24).
	cfg.DisableCompression = !compression
	ctx := ctrl.SetupSignalHandler()
	kmp, err := manager.New(ctx, cfg, o)
	if err != nil {
		fail(err)
	}
	log.Info("starting kubemacpool", "namespace", o.Namespace, "podNamespaces", o.PodNamespaces, "vmNamespaces", o.VMNamespaces, "certMode", o.CertMode)
	if err := kmp.Run(ctx); err != nil {
		fail(err)
	}
}

// gcPercent is kubemacpool's GOGC unless the environment sets one. Its heap
// is mostly its caches and indexes, which live as long as the process: at
// Go's default of 100 the runtime lets the heap grow to twice them before
// collecting. Half that headroom costs a collection about twice as often
// (docs/benchmarks.md measures both).
const gcPercent = 50

// setMemoryLimit sets GOGC to gcPercent unless the environment sets it, and
// the Go runtime's soft memory limit to 90% of the container's
// (MEMORY_LIMIT, in bytes, from the Deployment) unless GOMEMLIMIT says
// otherwise: a replica near its limit then collects harder rather than
// being killed.
func setMemoryLimit(log logr.Logger) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(os.Getenv("MEMORY_LIMIT")), 10, 64)
	if err != nil || limit <= 0 {
		return // no limit given (or not a number): the runtime's default
	}
	debug.SetMemoryLimit(limit / 10 * 9)
	log.Info("Go memory limit set from the container's", "limitBytes", limit, "goMemLimitBytes", limit/10*9)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubemacpool:", err)
	os.Exit(1)
}

// cliArgs recognises the operator commands: `kubemacpool status|who|collisions|not-applied`,
// or any arguments when installed as the kubectl plugin kubectl-macpool.
func cliArgs(argv []string) ([]string, bool) {
	if filepath.Base(argv[0]) == "kubectl-macpool" {
		return argv[1:], true
	}
	if len(argv) > 1 {
		switch argv[1] {
		case "status", "who", "collisions", "not-applied":
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
