package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// Faults during a create/delete load, on a control plane of its own: a
// replica killed, kube-apiserver killed and restarted, etcd restarted, the
// range ConfigMap flipped (invalid values included). Replicas are
// supervised (restarted when they exit, as the kubelet would). Afterwards:
// no MAC held twice, every MAC carried by a managed pod held for it, no
// entry outliving its owner, nothing left reserved.
func TestFaultsUnderLoad(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	e := ownControlPlane(t, testenv.Options{EtcdDataDir: t.TempDir()}, managerNamespace, "faults")
	c := e.Client
	rangeCM := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: rangeconfig.ConfigMapName},
		Data: map[string]string{"START_POOL_RANGE": "02:d0:00:00:00:00", "END_POOL_RANGE": "02:d0:00:00:0f:ff"}}
	g.Expect(c.Create(ctx, rangeCM)).To(Succeed())

	kubeconfig, err := e.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, kubeconfig, 0o600)).To(Succeed())
	replicas := []*replica{newReplicaOn(t, e, path), newReplicaOn(t, e, path)}
	for _, r := range replicas {
		r.start()
		r.supervise()
	}
	startRoundRobin(t, e.WebhookAddr(), func(i int) bool { return replicas[i].ready() }, replicas[0].webhook, replicas[1].webhook)

	load := startLoad(c, "faults", "churn", 4, true)
	pause := func() { time.Sleep(2 * time.Second) }
	pause()

	t.Log("fault: SIGKILL a replica")
	replicas[0].signal(9)
	pause()

	t.Log("fault: kube-apiserver killed, restarted after 2s")
	restart, err := e.KillAPIServer()
	g.Expect(err).NotTo(HaveOccurred())
	time.Sleep(2 * time.Second)
	g.Expect(restart()).To(Succeed())
	g.Eventually(func() error { return c.List(ctx, &corev1.NamespaceList{}) }).WithTimeout(60 * time.Second).Should(Succeed())
	pause()

	t.Log("fault: etcd stopped for 2s")
	g.Expect(e.RestartEtcd(2 * time.Second)).To(Succeed())
	g.Eventually(func() error { return c.List(ctx, &corev1.NamespaceList{}) }).WithTimeout(60 * time.Second).Should(Succeed())
	pause()

	t.Log("fault: range flipped, invalid values included")
	for i, data := range []map[string]string{
		{"START_POOL_RANGE": "02:d1:00:00:00:00", "END_POOL_RANGE": "02:d1:00:00:0f:ff"},
		{"START_POOL_RANGE": "zz", "END_POOL_RANGE": "02:d1:00:00:0f:ff"},
		{"START_POOL_RANGE": "02:d2:00:00:00:00", "END_POOL_RANGE": "02:d2:00:00:0f:ff"},
		{"START_POOL_RANGE": "03:00:00:00:00:00", "END_POOL_RANGE": "03:00:00:00:00:ff"},
		{"START_POOL_RANGE": "02:d0:00:00:00:00", "END_POOL_RANGE": "02:d0:00:00:0f:ff"},
		{"START_POOL_RANGE": "02:d3:00:00:0f:ff", "END_POOL_RANGE": "02:d3:00:00:00:00"},
	} {
		g.Eventually(func() error {
			cm := &corev1.ConfigMap{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(rangeCM), cm); err != nil {
				return err
			}
			cm.Data = data
			return c.Update(ctx, cm)
		}).WithTimeout(10*time.Second).Should(Succeed(), "flip %d", i)
		time.Sleep(300 * time.Millisecond)
	}
	pause()
	load.finish()
	t.Logf("load under faults: %d pods created, %d creates failed", load.created.Load(), load.failed.Load())
	g.Expect(load.created.Load()).To(BeNumerically(">", 50))

	for i, r := range replicas {
		r.mu.Lock()
		t.Logf("replica %d started %d times", i, r.launches)
		r.mu.Unlock()
	}
	for _, r := range replicas {
		g.Eventually(r.ready).WithTimeout(60*time.Second).Should(BeTrue(), "replica back after the faults; log %s", r.logPath)
	}
	expectInvariantsOn(t, c)
	g.Eventually(func(g Gomega) { expectAllBoundOn(g, c) }).WithTimeout(testGrace + 60*time.Second).WithPolling(time.Second).Should(Succeed())
}
