package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

var (
	buildOnce   sync.Once
	builtBinary string
	buildErr    error
)

// kubemacpoolBinary builds cmd/kubemacpool once per test run, with the race
// detector: every replica the tests start reports data races in its log,
// and kubemacpoolProcess fails the test that started it on any report.
func kubemacpoolBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kubemacpool-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBinary = filepath.Join(dir, "kubemacpool")
		out, err := exec.Command("go", "build", "-race", "-o", builtBinary, filepath.Join(env.Root, "cmd", "kubemacpool")).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBinary
}

// replica is kubemacpool running as its own process, as in a Deployment,
// with a supervisor that restarts it as the kubelet would.
type replica struct {
	t         testing.TB
	proc      *testenv.Process
	webhook   string
	probeAddr string
	logPath   string

	mu         sync.Mutex
	quit       chan struct{}
	supervised chan struct{}
	launches   int // process starts, the first included
}

func newReplica(t testing.TB, kubeconfig string) *replica { return newReplicaOn(t, env, kubeconfig) }

// newReplicaOn is newReplica against a given control plane, through
// kubeconfig (which may lead through a faulty proxy).
func newReplicaOn(t testing.TB, e *testenv.Env, kubeconfig string) *replica {
	o := optionsFor(t, e)
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	o.WebhookPort = port
	o.ShutdownDelay = 2 * time.Second
	o.KubeVirtPoll = time.Second
	r := &replica{
		t:         t,
		proc:      kubemacpoolProcess(t, kubeconfig, o),
		webhook:   net.JoinHostPort(e.WebhookHost, strconv.Itoa(port)),
		probeAddr: o.ProbeAddr,
	}
	r.logPath = r.proc.LogPath
	t.Cleanup(r.stopSupervising) // before the process is killed (cleanups run last first)
	return r
}

// supervise restarts the replica whenever it exits, as the kubelet restarts
// a crashed container, until the test ends.
func (r *replica) supervise() {
	r.quit = make(chan struct{})
	r.supervised = make(chan struct{})
	go func() {
		defer close(r.supervised)
		for {
			select {
			case <-r.quit:
				return
			case <-r.proc.Exited():
			}
			select {
			case <-r.quit:
				return
			case <-time.After(500 * time.Millisecond): // restart back-off
			}
			r.launch()
		}
	}()
}

func (r *replica) stopSupervising() {
	if r.quit != nil {
		close(r.quit)
		<-r.supervised
		r.quit = nil
	}
}

// start launches the replica and waits until it is ready.
func (r *replica) start() {
	r.t.Helper()
	r.launch()
	NewWithT(r.t).Eventually(r.ready).WithTimeout(60*time.Second).WithPolling(100*time.Millisecond).Should(BeTrue(), "replica not ready; log in %s", r.logPath)
}

// launch starts the process, appending to its log.
func (r *replica) launch() {
	if err := r.proc.Start(); err != nil {
		r.t.Error(err)
		return
	}
	r.mu.Lock()
	r.launches++
	r.mu.Unlock()
}

func (r *replica) ready() bool { return r.proc.Ready() }

func (r *replica) signal(sig syscall.Signal) { r.proc.Signal(sig) }

func (r *replica) wait() { r.proc.Wait() }

// twoReplicasBehindProxy starts two replicas as their own processes, ready,
// behind a proxy at the webhook's address that, like a Service, sends new
// connections only to ready replicas.
func twoReplicasBehindProxy(t testing.TB) (a, b *replica) {
	t.Helper()
	path := kubeconfigFor(t, env)
	a, b = newReplica(t, path), newReplica(t, path)
	a.start()
	b.start()
	startRoundRobin(t, env.WebhookAddr(), func(i int) bool { return []*replica{a, b}[i].ready() }, a.webhook, b.webhook)
	return a, b
}

// load creates pods from a few goroutines until stopped, counting
// failures; with churn it also deletes every other pod it made, so
// releases happen under the same conditions as allocations.
type load struct {
	stop     chan struct{}
	done     sync.WaitGroup
	created  atomic.Int64
	failed   atomic.Int64
	mu       sync.Mutex
	failures []error
}

func startLoad(c client.Client, ns, prefix string, workers int, churn bool) *load {
	l := &load{stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				p := pod(ns, fmt.Sprintf("%s-%d-%d", prefix, w, i), `[{"name":"a"},{"name":"b"}]`)
				if err := c.Create(ctx, p); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					l.failures = append(l.failures, err)
					l.mu.Unlock()
					time.Sleep(50 * time.Millisecond) // a fault may last: do not spin
					continue
				}
				l.created.Add(1)
				if churn && i%2 == 1 {
					old := pod(ns, fmt.Sprintf("%s-%d-%d", prefix, w, i-1), "")
					_ = c.Delete(ctx, old, client.GracePeriodSeconds(0))
				}
			}
		}()
	}
	return l
}

func (l *load) finish() {
	close(l.stop)
	l.done.Wait()
}

// Two replicas as separate processes behind a proxy that, like a Service,
// only sends new connections to ready replicas. SIGTERM of one during a
// create loop fails no create; SIGKILL of one may fail the creates in
// flight, but once things settle no MAC is held twice and no reservation is
// left without an owner.
func TestReplicasSurviveTermAndKill(t *testing.T) {
	g := NewWithT(t)
	setRange(t, map[string]string{"START_POOL_RANGE": "02:90:00:00:00:00", "END_POOL_RANGE": "02:90:00:00:ff:ff"})
	a, b := twoReplicasBehindProxy(t)
	ns := newNamespace(t, nil)

	// Graceful: SIGTERM a during load.
	l := startLoad(env.Client, ns, "term", 4, false)
	time.Sleep(time.Second)
	a.signal(syscall.SIGTERM)
	a.wait()
	time.Sleep(time.Second)
	l.finish()
	g.Expect(l.failures).To(BeEmpty(), "no create may fail while a replica shuts down gracefully")
	g.Expect(l.created.Load()).To(BeNumerically(">", 10))
	t.Logf("SIGTERM: %d creates, %d failed", l.created.Load(), l.failed.Load())

	// Crash: SIGKILL b during load, with a back.
	a.start()
	l = startLoad(env.Client, ns, "kill", 4, true)
	time.Sleep(time.Second)
	b.signal(syscall.SIGKILL)
	b.wait()
	time.Sleep(time.Second)
	b.start()
	time.Sleep(time.Second)
	l.finish()
	t.Logf("SIGKILL: %d creates, %d failed", l.created.Load(), l.failed.Load())
	g.Expect(l.created.Load()).To(BeNumerically(">", 10))

	expectInvariants(t)
	// Reservations of refused creates expire; nothing stays Reserved.
	g.Eventually(func(g Gomega) { expectAllBoundOn(g, env.Client) }).WithTimeout(testGrace + 30*time.Second).WithPolling(500 * time.Millisecond).Should(Succeed())
}
