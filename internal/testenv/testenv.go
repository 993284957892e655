// Package testenv starts a real kube-apiserver and etcd for a test package
// (controller-runtime's envtest, with binaries built from source by
// hack/control-plane.sh), installs our CRDs and webhook configuration, and
// hands out clients. The API server calls the webhook over TLS at a local
// address, exactly as a cluster calls the Service.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"

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

	env *envtest.Environment
}

// Options add to what every Env installs.
type Options struct {
	// ExtraCRDDirs are installed along with config/crd/bases; relative
	// paths are taken from the repository root.
	ExtraCRDDirs []string
	// WithoutWebhooks leaves the webhook configuration out, for tests that
	// install kubemacpool's manifests themselves.
	WithoutWebhooks bool
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
	crdDirs := []string{filepath.Join(root, "config", "crd", "bases")}
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

// Stop shuts the control plane down.
func (e *Env) Stop() error { return e.env.Stop() }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
