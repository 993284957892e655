// Package integration runs kubemacpool against a real kube-apiserver and
// etcd: the API server calls our webhook over TLS, and tests observe what a
// user would see through a client.
package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// env is the control plane shared by every test in this package.
var env *testenv.Env

func TestMain(m *testing.M) {
	ctrl.SetLogger(testLogger())
	var err error
	env, err = testenv.Start(testenv.Options{ExtraCRDDirs: []string{"test/fixtures/crds"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := ensureNamespace(managerNamespace); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
	}
	os.Exit(code)
}

// testLogger prints errors always and everything with -v and KMP_LOG=1.
func testLogger() logr.Logger {
	verbose := os.Getenv("KMP_LOG") != ""
	return funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: map[bool]int{true: 1, false: -1}[verbose]})
}

// testGrace is the reservation grace period in tests: short, so expiry is
// observable, yet far above how long binding takes.
const testGrace = 4 * time.Second

// running is a kubemacpool manager started in this process.
type running struct {
	cancel context.CancelFunc
	done   chan error
	opts   manager.Options
}

// testOptions are production defaults with local addresses and short timers.
func testOptions(t testing.TB) manager.Options { return optionsFor(t, env) }

// optionsFor is testOptions for a given control plane.
func optionsFor(t testing.TB, e *testenv.Env) manager.Options {
	o := manager.Defaults()
	o.WebhookHost = e.WebhookHost
	o.WebhookPort = e.WebhookPort
	o.CertDir = e.CertDir
	o.MetricsAddr = "0"
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o.ProbeAddr = fmt.Sprintf("127.0.0.1:%d", port)
	o.ReservationGrace = testGrace
	o.RepairInterval = time.Minute
	o.LeaseDuration = 3 * time.Second
	o.RenewDeadline = 2 * time.Second
	o.RetryPeriod = 500 * time.Millisecond
	o.MultipleInProcess = true
	o.KubeVirtPoll = 500 * time.Millisecond
	// The API server trusts envtest's certificate for this webhook; the
	// certificate tests run kubemacpool's own CA against a separate one.
	o.CertMode = manager.CertModeFiles
	o.ShutdownDelay = 0
	return o
}

// startManager runs kubemacpool with o until the test ends (or Stop), and
// waits until its readiness probe passes.
func startManager(t testing.TB, o manager.Options) *running {
	t.Helper()
	return startManagerOn(t, env, o)
}

// startManagerOn is startManager against a given control plane.
func startManagerOn(t testing.TB, e *testenv.Env, o manager.Options) *running {
	t.Helper()
	r := launchManagerOn(t, e, o)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + o.ProbeAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r
			}
		}
		select {
		case err := <-r.done:
			t.Fatalf("manager exited before it was ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("manager not ready after 60s (last probe error: %v)", err)
		}
	}
}

// launchManagerOn runs kubemacpool with o until the test ends (or Stop),
// without waiting for it to be ready.
func launchManagerOn(t testing.TB, e *testenv.Env, o manager.Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	kmp, err := manager.New(ctx, e.Config, o)
	if err != nil {
		cancel()
		t.Fatalf("creating manager: %v", err)
	}
	r := &running{cancel: cancel, done: make(chan error, 1), opts: o}
	go func() { r.done <- kmp.Run(ctx) }()
	t.Cleanup(r.Stop)
	return r
}

// Stop stops the manager and waits for it to exit.
func (r *running) Stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}
