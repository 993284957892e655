// Command local runs kubemacpool for real on this machine without a
// cluster: a kube-apiserver and etcd built from source, the CRDs of
// kubemacpool, Multus and KubeVirt, the webhook configuration pointing at a
// kubemacpool process started from bin/kubemacpool, and (with -samples)
// the seed's example applied with kubectl. It runs until interrupted and
// removes what it made. SIGHUP restarts kubemacpool from a rebuilt binary
// (make cluster-sync).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/localnode"
	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

func main() {
	stateDir := flag.String("state-dir", ".cluster", "directory for the kubeconfig, logs and pid file")
	samples := flag.Bool("samples", false, "apply the example NetworkAttachmentDefinition, pod and VM, and print the MACs they got")
	flag.Parse()
	// envtest logs through controller-runtime; this runner says what it
	// does itself.
	ctrl.SetLogger(logr.Discard())
	if err := run(*stateDir, *samples); err != nil {
		fmt.Fprintln(os.Stderr, "local:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf(">> "+format+"\n", args...) }

func run(stateDir string, samples bool) error {
	root := testenv.RepoRoot()
	if !filepath.IsAbs(stateDir) {
		stateDir = filepath.Join(root, stateDir)
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	pidFile := filepath.Join(stateDir, "pid")
	// A second run would take over the first one's state directory (and
	// remove it on exit) while the first still runs from it.
	if raw, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("kubemacpool already runs here from %s (pid %d): stop it first (make cluster-down, or Ctrl-C make run)", stateDir, pid)
		}
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)

	// A real node (containerd, kubelet, Multus) where the machine allows
	// one and make node built it; else the control plane alone, as before.
	var env *testenv.Env
	var node *localnode.Node
	kubeconfig := filepath.Join(stateDir, "kubeconfig")
	if why := nodeUnavailable(root); why != nil {
		say("no local node (%v): starting the control plane only; pods are stored, not run", why)
		var err error
		if env, err = testenv.Start(testenv.Options{ExtraCRDDirs: []string{"test/fixtures/crds"}}); err != nil {
			return err
		}
		defer func() {
			say("stopping the control plane")
			_ = env.Stop()
		}()
		data, err := env.Kubeconfig()
		if err != nil {
			return err
		}
		if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
			return err
		}
	} else {
		say("starting a one-node cluster: control plane, containerd, kubelet, Multus (state in %s)", filepath.Join(stateDir, "node"))
		var err error
		node, err = localnode.Start(localnode.Options{
			Dir:          filepath.Join(stateDir, "node"),
			ExtraCRDDirs: []string{"test/fixtures/crds"},
			Log:          say,
		})
		if err != nil {
			return err
		}
		defer func() {
			say("stopping the node and removing its pods, network namespaces, links, mounts and cgroups")
			if err := node.Stop(); err != nil {
				say("cleaning up: %v", err)
			}
		}()
		env = node.Env
		if err := os.Symlink(node.Kubeconfig, kubeconfig); err != nil {
			return err
		}
	}
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubemacpool-system"}}); err != nil {
		return err
	}
	kubectl := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String(), nil
	}
	if _, err := kubectl("apply", "-f", filepath.Join(root, "config/manager/range-configmap.yaml")); err != nil {
		return err
	}

	probePort, err := testenv.FreePort()
	if err != nil {
		return err
	}
	o := manager.Defaults()
	o.WebhookHost, o.WebhookPort, o.CertDir = env.WebhookHost, env.WebhookPort, env.CertDir
	o.CertMode = manager.CertModeFiles // envtest's certificate, which the API server trusts
	o.ShutdownDelay = 0
	o.MetricsAddr = "0"
	o.ProbeAddr = fmt.Sprintf("127.0.0.1:%d", probePort)
	o.KubeVirtPoll = 2 * time.Second
	kmp := &testenv.Process{
		Binary:   filepath.Join(root, "bin", "kubemacpool"),
		LogPath:  filepath.Join(stateDir, "kubemacpool.log"),
		ReadyURL: "http://" + o.ProbeAddr + "/readyz",
		Args:     append(o.Args(), "--kubeconfig="+kubeconfig),
	}
	if err := startKubemacpool(kmp); err != nil {
		return err
	}
	defer kmp.Stop()

	if samples {
		if err := applySamples(root, node, kubectl); err != nil {
			return err
		}
	}
	fmt.Println()
	say("kubemacpool is running; its log is %s", kmp.LogPath)
	say("use the cluster with:   export KUBECONFIG=%s", kubeconfig)
	say("or:                     ./cluster/kubectl.sh get macblocks")
	say("press Ctrl-C to stop; everything is removed on exit")

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	for sig := range signals {
		if sig != syscall.SIGHUP {
			return nil
		}
		say("restarting kubemacpool from %s", kmp.Binary)
		kmp.Stop()
		if err := startKubemacpool(kmp); err != nil {
			return err
		}
	}
	return nil
}

// sampleImage is the example pod's image. No registry is reachable here,
// so on the local node the pause image stands in for it under its name.
const sampleImage = "quay.io/schseba/kubemacpool-test:latest"

func applySamples(root string, node *localnode.Node, kubectl func(...string) (string, error)) error {
	if node != nil {
		if err := node.ImportImage(node.PauseArchive(), sampleImage); err != nil {
			return err
		}
	}
	for _, f := range []string{"network-attachment-definition.yaml", "pod.yaml", "virtualmachine.yaml"} {
		if _, err := kubectl("apply", "-f", filepath.Join(root, "config/samples", f)); err != nil {
			return err
		}
	}
	networks, err := kubectl("get", "pod", "samplepod", "-o", `jsonpath={.metadata.annotations.k8s\.v1\.cni\.cncf\.io/networks}`)
	if err != nil {
		return err
	}
	vmMACs, err := kubectl("get", "vm", "samplevm", "-o", `jsonpath={range .spec.template.spec.domain.devices.interfaces[*]}{.name}={.macAddress} {end}`)
	if err != nil {
		return err
	}
	fmt.Println()
	say("samplepod got its MAC:  k8s.v1.cni.cncf.io/networks: %s", networks)
	say("samplevm got its MACs:  %s", strings.TrimSpace(vmMACs))
	// Each MAC has its ledger entry, written at admission, in a MAC block.
	held, err := kubectl("get", "macblocks")
	if err != nil {
		return err
	}
	fmt.Print(held)
	if node != nil {
		return showRunningPod(node, kubectl)
	}
	return nil
}

// showRunningPod waits for samplepod to run on the node and prints what
// Multus reports for net1 and the MAC its interface has.
func showRunningPod(node *localnode.Node, kubectl func(...string) (string, error)) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pod := &corev1.Pod{}
	for {
		if err := node.Env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "samplepod"}, pod); err != nil {
			return err
		}
		if pod.Status.Phase == corev1.PodRunning && pod.Annotations[networkStatus] != "" {
			break
		}
		select {
		case <-ctx.Done():
			described, _ := kubectl("describe", "pod", "samplepod")
			return fmt.Errorf("samplepod is not Running after 2m:\n%s", described)
		case <-time.After(time.Second):
		}
	}
	onInterface, err := node.InterfaceMAC(pod, "net1")
	if err != nil {
		return err
	}
	fmt.Println()
	phase, _ := kubectl("get", "pod", "samplepod", "-o", "wide")
	fmt.Print(phase)
	say("Multus's network-status for samplepod:\n%s", pod.Annotations[networkStatus])
	say("net1 inside samplepod has MAC %s", onInterface)
	return nil
}

const networkStatus = "k8s.v1.cni.cncf.io/network-status"

// nodeUnavailable says why make run starts no node: the machine does not
// allow one (not Linux, not root, no containerd), or make node did not
// build it.
func nodeUnavailable(root string) error {
	if err := localnode.Unsupported(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "node", "kubelet")); err != nil {
		return fmt.Errorf("bin/node is not built (make node)")
	}
	return nil
}

// startKubemacpool starts the process and waits until it is ready.
func startKubemacpool(kmp *testenv.Process) error {
	if err := kmp.Start(); err != nil {
		return fmt.Errorf("%w (run make build first)", err)
	}
	if _, err := kmp.WaitReady(context.Background(), time.Minute); err != nil {
		return err
	}
	say("kubemacpool is ready")
	return nil
}
