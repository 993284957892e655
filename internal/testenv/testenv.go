// Package testenv starts a real kube-apiserver and etcd for a test package
// (controller-runtime's envtest, with binaries built from source by
// hack/control-plane.sh), installs our CRDs and webhook configuration, and
// hands out clients. The API server calls the webhook over TLS at a local
// address, exactly as a cluster calls the Service.
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kubemacpool/kubemacpool/internal/manager"
)

// Env is one running control plane.
type Env struct {
	Config *rest.Config
	Client client.Client
	// WebhookHost and WebhookPort are where the API server sends admission
	// reviews; CertDir holds the serving certificate it trusts.
	WebhookHost string
	WebhookPort int
	CertDir     string
	// Root is the repository root, for fixtures.
	Root string

	env       *envtest.Environment
	restarted []*os.Process
}

// Options add to what every Env installs.
type Options struct {
	// ExtraCRDDirs are installed along with config/crd/bases; relative
	// paths are taken from the repository root.
	ExtraCRDDirs []string
	// WithoutWebhooks leaves the webhook configuration out, for tests that
	// install kubemacpool's manifests themselves.
	WithoutWebhooks bool
	// WithoutOwnCRDs leaves the MACBlock CRD out, for tests that install it
	// the way an admin does (helm will not adopt a CRD it did not create).
	WithoutOwnCRDs bool
	// EtcdDataDir, when set, keeps etcd's data there, so etcd can be
	// restarted (RestartEtcd) without losing the cluster's state.
	EtcdDataDir string
	// APIServer, when set, adjusts the API server before it starts (the
	// local node serves it on an address its pods reach).
	APIServer func(*envtest.APIServer)
}

// RepoRoot finds the repository root from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir returns the directory holding kube-apiserver and etcd, building
// them first when missing, so no test is skipped for lack of them.
func BinDir() (string, error) {
	root := RepoRoot()
	dir := filepath.Join(root, "bin", "k8s")
	if exists(filepath.Join(dir, "kube-apiserver")) && exists(filepath.Join(dir, "etcd")) {
		return dir, nil
	}
	cmd := exec.Command("bash", filepath.Join(root, "hack", "control-plane.sh"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the control plane with hack/control-plane.sh: %w", err)
	}
	return dir, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Start runs a control plane with our CRDs and webhook configuration.
func Start(o Options) (*Env, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	root := RepoRoot()
	var crdDirs []string
	if !o.WithoutOwnCRDs {
		crdDirs = append(crdDirs, filepath.Join(root, "config", "crd", "bases"))
	}
	for _, d := range o.ExtraCRDDirs {
		if !filepath.IsAbs(d) {
			d = filepath.Join(root, d)
		}
		crdDirs = append(crdDirs, d)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDDirectoryPaths:     crdDirs,
		ErrorIfCRDPathMissing: true,
		Scheme:                manager.Scheme(),
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(root, "config", "webhook")},
			LocalServingHost: "127.0.0.1",
		},
	}
	if o.WithoutWebhooks {
		env.WebhookInstallOptions.Paths = nil
	}
	if o.EtcdDataDir != "" {
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: o.EtcdDataDir}
	}
	if o.APIServer != nil {
		o.APIServer(env.ControlPlane.GetAPIServer())
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	// client-go's default of 5 requests a second would make every load
	// test measure the client's throttle instead of kubemacpool.
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	w := env.WebhookInstallOptions
	return &Env{
		Config:      cfg,
		Client:      c,
		WebhookHost: w.LocalServingHost,
		WebhookPort: w.LocalServingPort,
		CertDir:     w.LocalServingCertDir,
		Root:        root,
		env:         env,
	}, nil
}

// WebhookAddr is host:port where the API server calls the webhook.
func (e *Env) WebhookAddr() string {
	return net.JoinHostPort(e.WebhookHost, strconv.Itoa(e.WebhookPort))
}

// Kubeconfig returns a kubeconfig for a cluster administrator, for kubectl
// and for running kubemacpool as its own process.
func (e *Env) Kubeconfig() ([]byte, error) {
	user, err := e.env.AddUser(envtest.User{Name: "kubemacpool-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return user.KubeConfig()
}

// UserKubeconfig returns a kubeconfig for a user that may do only what RBAC
// grants it (a peer cluster's read-only reader, say).
func (e *Env) UserKubeconfig(name string) ([]byte, error) {
	user, err := e.env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		return nil, err
	}
	return user.KubeConfig()
}

// RestartEtcd stops etcd and starts it again on the same data and address,
// as after an etcd crash or upgrade. Start the Env with EtcdDataDir.
func (e *Env) RestartEtcd(down time.Duration) error {
	etcd := e.env.ControlPlane.Etcd
	if err := etcd.Stop(); err != nil {
		return fmt.Errorf("stopping etcd: %w", err)
	}
	time.Sleep(down)
	return etcd.Start()
}

// KillAPIServer kills kube-apiserver (SIGKILL) and returns a function that
// starts it again with the same command line, certificates and port, as a
// crashed API server restarted by its supervisor.
func (e *Env) KillAPIServer() (restart func() error, err error) {
	pid, cmdline, err := findProcess("kube-apiserver", e.Config.Host)
	if err != nil {
		return nil, err
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	if err := proc.Kill(); err != nil {
		return nil, err
	}
	_, _ = proc.Wait()
	return func() error {
		cmd := exec.Command(cmdline[0], cmdline[1:]...)
		if err := cmd.Start(); err != nil {
			return err
		}
		e.restarted = append(e.restarted, cmd.Process)
		go func() { _ = cmd.Wait() }()
		return nil
	}, nil
}

// findProcess finds a running process of binary whose command line names
// the port of host (so a test's own API server is found, not another's).
func findProcess(binary, host string) (int, []string, error) {
	u, err := url.Parse(host)
	if err != nil {
		return 0, nil, err
	}
	port := u.Port()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", entry.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) != binary {
			continue
		}
		for _, a := range args {
			if a == "--secure-port="+port {
				return pid, args, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("no %s process serving port %s", binary, port)
}

// Stop shuts the control plane down.
func (e *Env) Stop() error {
	for _, p := range e.restarted {
		_ = p.Kill()
	}
	if len(e.restarted) > 0 {
		// envtest's handle on the API server is the process we killed.
		_ = e.env.Stop()
		return nil
	}
	return e.env.Stop()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// chosen below the kernel's ephemeral range. The processes the tests start
// listen on these ports again after each restart, and a port from that
// range, free between two runs of a replica, may meanwhile be the local
// port of one of the thousands of connections a test makes (a replica
// killed under load then failed to restart: bind: address already in use).
// A port is handed out once per process: two calls made before either
// port is bound (a replica's probe and webhook ports) never get the same.
func FreePort() (int, error) {
	first := ephemeralFirst()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		port := lowestFreePort + rand.IntN(first-lowestFreePort)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use: try another
		}
		l.Close()
		handedOut.ports[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no free port found from %d to %d", lowestFreePort, first-1)
}

// handedOut is the ports FreePort has returned in this process.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// lowestFreePort is the lowest port FreePort returns: above the ports
// services are commonly configured on.
const lowestFreePort = 20000

// ephemeralFirst is the first port of the kernel's ephemeral range, from
// which it picks the local ports of outgoing connections. Linux's default
// stands in when the range cannot be read, and when it starts too low to
// leave FreePort room below it (FreePort's ports may then be in the range,
// as kernel-chosen ones always were).
func ephemeralFirst() int {
	const linuxDefault = 32768
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	fields := strings.Fields(string(data))
	if len(fields) != 2 {
		return linuxDefault
	}
	first, err := strconv.Atoi(fields[0])
	if err != nil || first <= lowestFreePort+1000 {
		return linuxDefault
	}
	return first
}
