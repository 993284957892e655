// Package e2e runs kubemacpool the way a cluster does, on a real node of
// this machine (internal/localnode: containerd, kubelet, Multus's thin
// plugin, the CNI bridge, tuning and ptp plugins): the image `make image`
// builds, installed from config/default as two pods. The tests run pods
// and read what Multus reports and what the pods' interfaces carry.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/localnode"
	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

const (
	kmpNamespace  = "kubemacpool-system"
	kmpDeployment = "kubemacpool-mac-controller-manager"
	// kmpImage is the tag the install overlay (test/e2e/install) asks for.
	kmpImage = "kubemacpool:e2e"
)

var (
	node *localnode.Node
	c    client.Client
)

func TestMain(m *testing.M) {
	// A machine that cannot have a node at all is said so; one that should
	// (Linux, root) and fails to bring it up fails with the component's
	// own error.
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		fmt.Println("e2e: this machine cannot run a local node (it needs Linux and root); no e2e test ran")
		os.Exit(0)
	}
	// controller-runtime's own log (envtest's) is not what these tests read.
	ctrl.SetLogger(logr.Discard())
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	root := testenv.RepoRoot()
	image, err := buildImage(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "kmp-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	start := time.Now()
	node, err = localnode.Start(localnode.Options{
		Dir:             dir,
		ExtraCRDDirs:    []string{"test/fixtures/crds"},
		WithoutWebhooks: true, // config/default brings kubemacpool's own
		Log:             func(f string, args ...any) { fmt.Printf("e2e: "+f+"\n", args...) },
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the node did not come up:", err)
		return 1
	}
	defer func() {
		// What make run's Ctrl-C promises: nothing of the node is left.
		stopping := time.Now()
		defer func() {
			fmt.Printf("e2e: node stopped and removed in %s\n", time.Since(stopping).Round(100*time.Millisecond))
		}()
		if err := node.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: cleaning up the node:", err)
			code = 1
		}
		if left := node.Leftovers(); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: the stopped node left behind:\n  %s\n", strings.Join(left, "\n  "))
			code = 1
		}
	}()
	fmt.Printf("e2e: node up in %s\n", time.Since(start).Round(time.Second))
	// The test client also knows NetworkAttachmentDefinitions.
	scheme := manager.Scheme()
	if err := nadv1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if c, err = client.New(node.Env.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := install(root, image); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: installing kubemacpool:", err)
		dumpKubemacpoolLogs()
		return 1
	}
	fmt.Printf("e2e: kubemacpool serving from its pods %s after start\n", time.Since(start).Round(time.Second))
	code = m.Run()
	if code != 0 {
		dumpKubemacpoolLogs()
	}
	return code
}

// buildImage runs `make image` for this machine's architecture and returns
// the docker archive it wrote.
func buildImage(root string) (string, error) {
	cmd := exec.Command("make", "-C", root, "--no-print-directory", "image", "IMAGE_PLATFORMS="+runtime.GOARCH)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make image: %v\n%s", err, out)
	}
	return filepath.Join(root, "bin", "kubemacpool-image.tar"), nil
}

// install imports the image into the node and applies config/default
// through the overlay, then waits until both replicas are ready and the
// webhook answers.
func install(root, image string) error {
	if err := node.ImportImage(image, kmpImage); err != nil {
		return err
	}
	if out, err := kubectl("apply", "--server-side", "-k", filepath.Join(root, "test", "e2e", "install")); err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := waitFor(ctx, "kubemacpool's two replicas ready", func() (bool, error) {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: kmpNamespace, Name: kmpDeployment}, d); err != nil {
			return false, err
		}
		return d.Status.ReadyReplicas == 2, nil
	}); err != nil {
		return err
	}
	// The API server calls the webhook once the Service has endpoints and
	// kubemacpool has put its CA in the webhook configuration: a pod of an
	// unknown network is then admitted with a MAC.
	ns, err := createNamespace(ctx, "e2e-probe", nil)
	if err != nil {
		return err
	}
	return waitFor(ctx, "the webhook to give a probe pod a MAC", func() (bool, error) {
		p := testPod(ns, "probe", `[{"name":"none"}]`)
		if err := c.Create(ctx, p); err != nil {
			return false, nil
		}
		defer func() { _ = c.Delete(ctx, p) }()
		return strings.Contains(p.Annotations[networksAnnotation], `"mac"`), nil
	})
}

func kubectl(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", node.Kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// dumpKubemacpoolLogs prints the end of each kubemacpool container's log,
// read from the node's pod log directory.
func dumpKubemacpoolLogs() {
	logs, _ := filepath.Glob(filepath.Join(node.Dir, "pod-logs", kmpNamespace+"_*", "*", "*.log"))
	for _, path := range logs {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(os.Stderr, "--- %s\n%s\n", path, strings.Join(lines, "\n"))
	}
}

// waitFor polls check every half second until it is true or ctx ends; the
// error then says what was awaited and the last error seen.
func waitFor(ctx context.Context, what string, check func() (bool, error)) error {
	var last error
	for {
		ok, err := check()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// createNamespace creates a namespace with a unique name from prefix and
// waits for its default service account, which pods need (the
// controller-manager makes it).
func createNamespace(ctx context.Context, prefix string, labels map[string]string) (string, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := c.Create(ctx, ns); err != nil {
		return "", err
	}
	err := waitFor(ctx, "the default service account of "+ns.Name, func() (bool, error) {
		err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "default"}, &corev1.ServiceAccount{})
		return err == nil, client.IgnoreNotFound(err)
	})
	return ns.Name, err
}
