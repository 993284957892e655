package integration

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// freezer is a TCP proxy in front of the API server that can stop passing
// bytes on every connection: a replica behind it sees no watch event and
// gets no answer, as one whose watch lags does, while it still serves the
// webhook (the API server calls it directly).
type freezer struct {
	listener net.Listener
	target   string
	mu       sync.Mutex
	thawed   *sync.Cond
	frozen   bool
}

func startFreezer(t testing.TB, target string) *freezer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{listener: l, target: target}
	f.thawed = sync.NewCond(&f.mu)
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			go f.pipe(in, out)
			go f.pipe(out, in)
		}
	}()
	t.Cleanup(func() { f.freeze(false); l.Close() })
	return f
}

// pipe copies src to dst, holding what it read while frozen.
func (f *freezer) pipe(src, dst net.Conn) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32*1024)
	for {
		n, err := src.Read(buf)
		f.mu.Lock()
		for f.frozen {
			f.thawed.Wait()
		}
		f.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: both ends close
		}
	}
}

func (f *freezer) freeze(on bool) {
	f.mu.Lock()
	f.frozen = on
	f.mu.Unlock()
	f.thawed.Broadcast()
}

// adminKubeconfig is the shared control plane's kubeconfig, and the
// address of its API server.
func adminKubeconfig(t testing.TB) (*clientcmdapi.Config, *url.URL) {
	t.Helper()
	data, err := env.Kubeconfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, u
	}
	t.Fatal("no cluster in the kubeconfig")
	return nil, nil
}

// kubeconfigVia writes a kubeconfig for the shared control plane whose
// server address is addr (a proxy in front of it).
func kubeconfigVia(t testing.TB, addr string) string {
	t.Helper()
	cfg, server := adminKubeconfig(t)
	server.Host = addr
	for _, c := range cfg.Clusters {
		c.Server = server.String()
	}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Hole 5: a replica whose view of the ledger lags never answers a pod's
// edit with a MAC that was released and taken by another pod since. The
// pod dropped a network, its MAC was released and given to another pod;
// the lagging replica still believes the pod holds it. Plugging the network
// back through that replica gets another MAC, or a refusal: never the MAC
// the other pod carries.
func TestLaggingReplicaNeverHandsOutATakenMAC(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	_, server := adminKubeconfig(t)
	frozen := startFreezer(t, server.Host)
	lagging := newReplica(t, kubeconfigVia(t, frozen.listener.Addr().String()))
	current := newReplica(t, kubeconfigFor(t, env))
	current.start() // first: it leads, so the frozen one never has a Lease to lose
	lagging.start()
	var route atomic.Int32 // 0: current, 1: lagging
	rr := startRoundRobin(t, env.WebhookAddr(), func(i int) bool { return int(route.Load()) == i }, current.webhook, lagging.webhook)
	routeTo := func(i int32) {
		route.Store(i)
		rr.mu.Lock() // the API server keeps webhook connections open: cut them
		for c := range rr.open {
			c.Close()
		}
		rr.mu.Unlock()
	}
	ns := newNamespace(t, nil)
	t.Cleanup(func() { deleteCarriers(t, ns) })

	p := createPod(t, pod(ns, "p", `[{"name":"net-a","interface":"eth1"},{"name":"net-b","interface":"eth2"}]`))
	elems := networksOf(t, p)
	taken := mustMAC(elems[1].MAC())
	edit := func(value string) (*corev1.Pod, error) {
		cur := &corev1.Pod{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
			return nil, err
		}
		cur.Annotations[multus.NetworksAnnotation] = value
		return cur, env.Client.Update(ctx, cur)
	}
	first, err := multus.Format(elems[:1])
	g.Expect(err).NotTo(HaveOccurred())
	_, err = edit(first) // net-b unplugged: the pod keeps holding its MAC
	g.Expect(err).NotTo(HaveOccurred())
	// Both MACs came from a replica's stock and pass to p within a
	// couple of seconds, the unplugged one too: it was seen carried.
	g.Eventually(func(g Gomega) { g.Expect(reservationsFor(g, ns, "p")).To(HaveLen(2)) }).WithTimeout(10 * time.Second).Should(Succeed())
	time.Sleep(2 * time.Second) // both replicas have seen it all

	frozen.freeze(true)
	removeEntry(g, taken) // released (as if by the repair) and taken by q
	var q *corev1.Pod
	g.Eventually(func() error {
		q = pod(ns, "q", `[{"name":"net-b","interface":"eth2","mac":"`+taken.String()+`"}]`)
		return env.Client.Create(ctx, q)
	}).WithTimeout(15 * time.Second).Should(Succeed())

	routeTo(1)
	back := strings.TrimSuffix(first, "]") + `,{"name":"net-b","interface":"eth2"}]`
	edited, err := edit(back)
	if err != nil {
		t.Logf("the lagging replica refused the edit: %v", err)
	} else {
		got := mac.MAC(0)
		for _, e := range networksOf(t, edited) {
			if e.NetworkKey() == ns+"/net-b" {
				got = mustMAC(e.MAC())
			}
		}
		g.Expect(got).NotTo(Equal(taken), "the lagging replica gave p the MAC q carries")
	}
	frozen.freeze(false)
	routeTo(0)
}
