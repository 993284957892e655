package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// kustomize renders a kustomization with the real kubectl.
func kustomize(t testing.TB, dir string) string {
	t.Helper()
	out, err := exec.Command("kubectl", "kustomize", filepath.Join(env.Root, dir)).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	return string(out)
}

// kustomizeWithComponent renders config/default with a component, as an
// overlay an admin would write (kustomize wants relative paths).
func kustomizeWithComponent(t testing.TB, component string) string {
	t.Helper()
	overlay := t.TempDir()
	rel := func(dir string) string {
		r, err := filepath.Rel(overlay, filepath.Join(env.Root, dir))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	kustomization := "resources: [" + rel("config/default") + "]\ncomponents: [" + rel(component) + "]\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("kubectl", "kustomize", overlay).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize with %s: %v\n%s", component, err, out)
	}
	return string(out)
}

// The rendered release manifest is what config/default renders now, and
// every overlay renders.
func TestReleaseManifestCurrent(t *testing.T) {
	g := NewWithT(t)
	committed, err := os.ReadFile(filepath.Join(env.Root, "config/release/kubemacpool.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(committed)).To(Equal(kustomize(t, "config/default")),
		"config/release/kubemacpool.yaml is stale: run make release")
	optIn := kustomize(t, "config/opt-in")
	g.Expect(optIn).To(ContainSubstring("--pod-namespaces=opt-in"))
	g.Expect(optIn).To(ContainSubstring("- allocate"))
	g.Expect(kustomize(t, "config/certmanager")).To(ContainSubstring("cert-manager.io/inject-ca-from"))
	// The webhook-source component narrows the webhook port to a CIDR.
	narrowed := kustomizeWithComponent(t, "config/components/webhook-source")
	g.Expect(narrowed).To(ContainSubstring("cidr: 192.0.2.0/24"))
	g.Expect(narrowed).NotTo(ContainSubstring("cidr: 0.0.0.0/0"))
	// The pods-opt-in component gives upstream's defaults: pods opt in,
	// VMs stay opt-out.
	upstreamLike := kustomizeWithComponent(t, "config/components/pods-opt-in")
	g.Expect(upstreamLike).To(And(ContainSubstring("--pod-namespaces=opt-in"), ContainSubstring("--vm-namespaces=opt-out")))
	monitoring := kustomize(t, "config/prometheus")
	for _, alert := range []string{"KubeMacPoolMACCollision", "KubeMacPoolPoolAlmostFull", "KubeMacPoolRangeConfigInvalid", "KubeMacPoolDown", "kind: ServiceMonitor"} {
		g.Expect(monitoring).To(ContainSubstring(alert))
	}
}

// The release manifest is accepted whole by a real API server.
func TestReleaseManifestApplies(t *testing.T) {
	g := NewWithT(t)
	e := ownControlPlane(t, testenv.Options{WithoutWebhooks: true})
	kubeconfig, err := e.Kubeconfig()
	g.Expect(err).NotTo(HaveOccurred())
	path := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(os.WriteFile(path, kubeconfig, 0o600)).To(Succeed())

	cmd := exec.Command("kubectl", "--kubeconfig", path, "apply", "-f", filepath.Join(env.Root, "config/release/kubemacpool.yaml"))
	out, err := cmd.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl apply: %s", out)
	for _, want := range []string{
		"namespace/kubemacpool-system", "customresourcedefinition.apiextensions.k8s.io/macblocks.kubemacpool.io",
		"serviceaccount/kubemacpool", "clusterrole.rbac.authorization.k8s.io/kubemacpool", "role.rbac.authorization.k8s.io/kubemacpool",
		"configmap/kubemacpool-mac-range-config", "service/kubemacpool-service", "deployment.apps/kubemacpool-mac-controller-manager",
		"poddisruptionbudget.policy/kubemacpool", "mutatingwebhookconfiguration.admissionregistration.k8s.io/kubemacpool-mutator",
		"networkpolicy.networking.k8s.io/kubemacpool",
		"validatingadmissionpolicy.admissionregistration.k8s.io/kubemacpool-protect-macblocks",
		"validatingadmissionpolicybinding.admissionregistration.k8s.io/kubemacpool-protect-macblocks",
	} {
		g.Expect(string(out)).To(ContainSubstring(want))
	}
	g.Expect(strings.Count(string(out), "created")).To(BeNumerically(">=", 12))

	d := &appsv1.Deployment{}
	g.Expect(e.Client.Get(context.Background(), client.ObjectKey{Namespace: "kubemacpool-system", Name: "kubemacpool-mac-controller-manager"}, d)).To(Succeed())
	g.Expect(*d.Spec.Replicas).To(Equal(int32(2)))

	// The RBAC shipped is enough: kubemacpool running as its
	// ServiceAccount, with its own certificates, becomes ready (range
	// loaded, index synced, certificate Secret written, caBundle
	// published) and keeps the record of the range in force.
	ctx := context.Background()
	readyAsServiceAccount(t, e, "kubemacpool-system")

	record := &corev1.ConfigMap{}
	recordKey := client.ObjectKey{Namespace: "kubemacpool-system", Name: pool.RangeRecordName}
	g.Eventually(func(g Gomega) {
		g.Expect(e.Client.Get(ctx, recordKey, record)).To(Succeed())
		g.Expect(record.Data).To(HaveKeyWithValue("START_POOL_RANGE", "02:00:00:00:00:00"))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	rangeCM := &corev1.ConfigMap{}
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: "kubemacpool-system", Name: rangeconfig.ConfigMapName}, rangeCM)).To(Succeed())
	rangeCM.Data = map[string]string{"START_POOL_RANGE": "02:50:00:00:00:00", "END_POOL_RANGE": "02:50:00:00:00:ff"}
	g.Expect(e.Client.Update(ctx, rangeCM)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(e.Client.Get(ctx, recordKey, record)).To(Succeed())
		g.Expect(record.Data).To(HaveKeyWithValue("START_POOL_RANGE", "02:50:00:00:00:00"))
	}).WithTimeout(30*time.Second).Should(Succeed(), "the Role must let kubemacpool update its record")
}

// readyAsServiceAccount runs kubemacpool in namespace as the ServiceAccount
// kubemacpool there, with its own certificates, and waits until it is
// ready: its range loaded, its index synced, its certificate Secret written,
// and its CA published in the webhook configuration (ready means the API
// server can call it), which it returns.
func readyAsServiceAccount(t testing.TB, e *testenv.Env, namespace string) (*testenv.Process, *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	sa := "system:serviceaccount:" + namespace + ":kubemacpool"
	asSA := impersonating(t, e, sa, "system:serviceaccounts", "system:serviceaccounts:"+namespace, "system:authenticated")
	o := optionsFor(t, e)
	// No --cert-hosts: the names follow the namespace, as in a Deployment.
	o.Namespace, o.CertMode = namespace, manager.CertModeSelf
	port, err := testenv.FreePort()
	g.Expect(err).NotTo(HaveOccurred())
	o.WebhookHost, o.WebhookPort = "127.0.0.1", port
	replica := kubemacpoolProcess(t, asSA, o)
	g.Expect(replica.Start()).To(Succeed())
	_, err = replica.WaitReady(ctx, 60*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	hook := &admissionregistrationv1.MutatingWebhookConfiguration{}
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: "kubemacpool-mutator"}, hook)).To(Succeed())
	for _, w := range hook.Webhooks {
		g.Expect(w.ClientConfig.CABundle).NotTo(BeEmpty(), "ready before the CA of webhook %s was published", w.Name)
	}
	return replica, hook
}

// impersonating writes a kubeconfig for e that acts as user in groups, as
// the ServiceAccount of the release manifest would.
func impersonating(t testing.TB, e *testenv.Env, user string, groups ...string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfigFor(t, e))
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate, auth.ImpersonateGroups = user, groups
	}
	path := filepath.Join(t.TempDir(), "kubeconfig-as-"+strings.ReplaceAll(user, ":", "-"))
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
