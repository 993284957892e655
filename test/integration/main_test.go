// Package integration runs kubemacpool against a real kube-apiserver and
// etcd: the API server calls our webhook over TLS, and tests observe what a
// user would see through a client.
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// testHeartbeat is how long a replica's stock heartbeat lasts in tests.
const testHeartbeat = 4 * time.Second

// running is a kubemacpool replica started as its own process.
type running struct {
	proc *testenv.Process
	opts manager.Options
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
	// Every replica a test starts names its own stock; the heartbeat is
	// short, so a killed replica's stock is released within the tests'
	// waits (its duration, then the grace).
	o.ReplicaName = fmt.Sprintf("replica-%d", port)
	o.StockHeartbeat = testHeartbeat
	o.MinReservationGrace = time.Second // short timers, on a control plane that stores at once
	o.RepairInterval = time.Minute
	o.LeaseDuration = 3 * time.Second
	o.RenewDeadline = 2 * time.Second
	o.RetryPeriod = 500 * time.Millisecond
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
	for attempt := 1; ; attempt++ {
		r := launchManagerOn(t, e, o)
		_, err := r.proc.WaitReady(context.Background(), 60*time.Second)
		if err == nil {
			return r
		}
		// A port FreePort found free may be taken as the source port of
		// some connection before the replica binds it: pick another.
		if attempt < 3 && logSays(r.proc.LogPath, "bind: address already in use") {
			port, perr := testenv.FreePort()
			if perr != nil {
				t.Fatal(perr)
			}
			o.ProbeAddr = fmt.Sprintf("127.0.0.1:%d", port)
			t.Logf("kubemacpool could not bind a port (attempt %d); retrying with probes on %s", attempt, o.ProbeAddr)
			continue
		}
		t.Fatalf("kubemacpool not ready: %v", err)
	}
}

// logSays reports whether the log at path contains s.
func logSays(path, s string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(data), s)
}

// launchManagerOn runs kubemacpool with o until the test ends (or Stop),
// without waiting for it to be ready.
func launchManagerOn(t testing.TB, e *testenv.Env, o manager.Options) *running {
	t.Helper()
	r := &running{proc: kubemacpoolProcess(t, kubeconfigFor(t, e), o), opts: o}
	if err := r.proc.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// kubemacpoolProcess is kubemacpool with options o, talking to the API
// server through kubeconfig, as its own process: the one way the tests
// start it, so they run the binary that ships, with its flags. It is
// stopped when the test ends, and its log's last lines are printed if the
// test failed: a replica's own account is what explains a failure.
func kubemacpoolProcess(t testing.TB, kubeconfig string, o manager.Options) *testenv.Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "kubemacpool.log")
	p := &testenv.Process{
		Binary:   kubemacpoolBinary(t),
		Args:     append(o.Args(), "--kubeconfig="+kubeconfig),
		LogPath:  logPath,
		ReadyURL: "http://" + o.ProbeAddr + "/readyz",
	}
	t.Cleanup(func() {
		// Stopped as a rollout stops it (SIGTERM), so its Lease is released
		// and the next test's replica leads at once.
		p.Stop()
		if race := raceReport(logPath); race != "" {
			t.Errorf("kubemacpool (built with -race) reported a data race; %s has it all:\n%s", logPath, race)
		}
		if t.Failed() || os.Getenv("KMP_LOG") != "" {
			printLogTail(t, logPath)
		}
	})
	return p
}

// raceMarker starts every report of Go's race detector.
const raceMarker = "WARNING: DATA RACE"

// raceReport returns the first data race report in the log at path (its
// first 80 lines), or "" if there is none.
func raceReport(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	i := strings.Index(string(data), raceMarker)
	if i < 0 {
		return ""
	}
	lines := strings.SplitN(string(data[i:]), "\n", 81)
	return strings.Join(lines[:min(len(lines), 80)], "\n")
}

// printLogTail logs the last lines of a replica's log.
func printLogTail(t testing.TB, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		// controller-runtime logs every failed probe without its reason;
		// kubemacpool's own "not ready" line says why.
		if !strings.Contains(line, "healthz check failed") {
			lines = append(lines, line)
		}
	}
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("last lines of %s:\n%s", path, strings.Join(lines, "\n"))
}

var kubeconfigs sync.Map // *testenv.Env -> path

// kubeconfigFor writes e's admin kubeconfig to a file, once per control plane.
func kubeconfigFor(t testing.TB, e *testenv.Env) string {
	t.Helper()
	if path, ok := kubeconfigs.Load(e); ok {
		return path.(string)
	}
	data, err := e.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp("", "kubeconfig-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	kubeconfigs.Store(e, f.Name())
	return f.Name()
}

// Stop stops the replica (SIGTERM, drain) and waits for it to exit.
func (r *running) Stop() { r.proc.Stop() }
