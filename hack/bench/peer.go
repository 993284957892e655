package main

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/peers"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// The cluster names of the peer series: kubemacpool runs as benchCluster,
// its peer is peerCluster.
const (
	benchCluster = "bench"
	peerCluster  = "peer"
)

// withPeer runs the pod series again with one peer cluster: a second
// control plane whose ledger holds o.peerEntries entries, in blocks the
// split gives the peer, listed as kubemacpool's peer. The same run's plain
// series are the reference: the rows differ only by the peer.
func (b *bench) withPeer() error {
	say("peer: starting a second kube-apiserver and etcd, with %d ledger entries", b.o.peerEntries)
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return err
	}
	defer func() {
		say("peer: stopping its control plane")
		_ = env.Stop()
	}()
	split := peers.NewSplit(peerCluster, []string{benchCluster})
	created := 0
	// The default range, from an arbitrary point: the peer's blocks.
	for start := mac.MAC(0x0a1234000000); created < b.o.peerEntries; start += ledger.BlockSize {
		if !split.Mine(start) {
			continue
		}
		block := ledger.NewBlock(start)
		for off := 0; off < ledger.BlockSize && created < b.o.peerEntries; off++ {
			m := start + mac.MAC(off)
			ledger.Put(block, v1alpha1.MACBlockEntry{
				Offset: int32(off), MAC: m.String(), Network: "peer/net1",
				Owner:    v1alpha1.Owner{Kind: "Pod", Namespace: "peer", Name: fmt.Sprintf("pod-%d", created)},
				Reserved: metav1.NewMicroTime(time.Now().UTC().Truncate(time.Microsecond)),
			})
			created++
		}
		if err := env.Client.Create(b.ctx, block); err != nil {
			return fmt.Errorf("filling the peer's ledger: %w", err)
		}
	}
	kubeconfig, err := env.Kubeconfig()
	if err != nil {
		return err
	}
	if err := b.memory("peer: resident memory before the peer is listed", ""); err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: "peer-" + peerCluster, Labels: map[string]string{peers.Label: peerCluster}},
		Data:       map[string][]byte{peers.KubeconfigKey: kubeconfig},
	}
	if err := b.c.Create(b.ctx, secret); err != nil {
		return err
	}
	defer func() { _ = b.c.Delete(b.ctx, secret) }()
	say("peer: waiting for kubemacpool to read the peer's ledger")
	began := time.Now()
	for {
		n, err := b.peerEntriesSeen()
		if err == nil && n == b.o.peerEntries {
			break
		}
		if time.Since(began) > 2*time.Minute {
			return fmt.Errorf("kubemacpool has not read the peer's %d entries in 2 minutes (saw %d, %v)", b.o.peerEntries, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.table.add("peer: time to read a peer's ledger once its Secret exists",
		fmt.Sprintf("%s for %d entries", time.Since(began).Round(10*time.Millisecond), b.o.peerEntries), "")
	if err := b.memory(fmt.Sprintf("peer: resident memory with its %d entries indexed", b.o.peerEntries), ""); err != nil {
		return err
	}
	b.variant, b.variantNS = fmt.Sprintf(", one peer (%d entries)", b.o.peerEntries), "-peer"
	defer func() { b.variant, b.variantNS = "", "" }()
	return b.admission(pods)
}

// peerEntriesSeen reads kmp_peer_entries{peer="peer"} from kubemacpool's
// metrics.
func (b *bench) peerEntriesSeen() (int, error) {
	resp, err := http.Get("http://" + b.metricsAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	prefix := fmt.Sprintf("kmp_peer_entries{peer=%q} ", peerCluster)
	scan := bufio.NewScanner(resp.Body)
	for scan.Scan() {
		if line := scan.Text(); strings.HasPrefix(line, prefix) {
			v, err := strconv.ParseFloat(strings.TrimPrefix(line, prefix), 64)
			return int(v), err
		}
	}
	return 0, fmt.Errorf("no %s in kubemacpool's metrics", strings.TrimSpace(prefix))
}
