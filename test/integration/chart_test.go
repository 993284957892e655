package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/peers"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

const chartDir = "charts/kubemacpool"

// helm runs the helm that `make helm` builds from the pinned
// module in hack/tools/helm, and returns its combined output.
func helm(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin := filepath.Join(env.Root, "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no helm at %s (make helm builds it): %v", bin, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = env.Root
	// helm keeps caches and settings under $HOME; a test's own keep it
	// from reading or writing the user's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// helmTemplate renders the chart as release kubemacpool in namespace with
// the given --set values.
func helmTemplate(t testing.TB, namespace string, set ...string) string {
	t.Helper()
	args := []string{"template", "kubemacpool", chartDir, "--namespace", namespace}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// objectKey names an object the way the API server does.
func objectKey(o map[string]any) string {
	u := unstructured.Unstructured{Object: o}
	return fmt.Sprintf("%s %s %s/%s", u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName())
}

// objectsOf decodes a multi-document manifest into its objects, by key.
func objectsOf(t testing.TB, manifest string) map[string]map[string]any {
	t.Helper()
	objects := map[string]map[string]any{}
	d := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var o map[string]any
		err := d.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objects
		}
		if err != nil {
			t.Fatalf("decoding a rendered manifest: %v", err)
		}
		if o == nil {
			continue // an empty document
		}
		key := objectKey(o)
		if _, dup := objects[key]; dup {
			t.Fatalf("%s is rendered twice", key)
		}
		objects[key] = o
	}
}

// helmOwnMetadata is what the chart adds to the objects of config/default:
// Helm's labels, and the CRD kept on uninstall.
var helmOwnMetadata = map[string][]string{
	"labels":      {"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"},
	"annotations": {"helm.sh/resource-policy"},
}

// withoutHelmMetadata is the chart's object as kustomize would have it.
func withoutHelmMetadata(o map[string]any) map[string]any {
	u := unstructured.Unstructured{Object: o}
	u = *u.DeepCopy()
	labels, annotations := u.GetLabels(), u.GetAnnotations()
	for _, k := range helmOwnMetadata["labels"] {
		delete(labels, k)
	}
	for _, k := range helmOwnMetadata["annotations"] {
		delete(annotations, k)
	}
	u.SetLabels(labels)
	u.SetAnnotations(annotations)
	// Objects kustomize leaves without labels or annotations have none.
	if len(labels) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "labels")
	}
	if len(annotations) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
	}
	return u.Object
}

// expectSameObjects fails with a diff per object where the chart and
// kustomize create different things. kustomize's Namespace is the one
// object the chart leaves out: Helm creates the release namespace
// (--create-namespace) before the release's objects.
func expectSameObjects(t testing.TB, chart, kustomized string) {
	t.Helper()
	fromChart, fromKustomize := objectsOf(t, chart), objectsOf(t, kustomized)
	for key, o := range fromKustomize {
		if o["kind"] == "Namespace" {
			delete(fromKustomize, key)
		}
	}
	// kustomize folds a Secret's long base64 values over lines, Helm does
	// not: the same bytes either way.
	for _, objs := range []map[string]map[string]any{fromChart, fromKustomize} {
		for _, o := range objs {
			if data, ok := o["data"].(map[string]any); ok && o["kind"] == "Secret" {
				for k, v := range data {
					if s, ok := v.(string); ok {
						data[k] = strings.Join(strings.Fields(s), "")
					}
				}
			}
		}
	}
	var problems []string
	for key, want := range fromKustomize {
		got, ok := fromChart[key]
		if !ok {
			problems = append(problems, "the chart does not create "+key)
			continue
		}
		if diff := cmp.Diff(want, withoutHelmMetadata(got)); diff != "" {
			problems = append(problems, fmt.Sprintf("%s differs (-kustomize +chart):\n%s", key, diff))
		}
	}
	for key := range fromChart {
		if _, ok := fromKustomize[key]; !ok {
			problems = append(problems, "only the chart creates "+key)
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		t.Fatalf("the chart and the kustomize manifests drifted apart:\n%s", strings.Join(problems, "\n"))
	}
}

// helm lint passes, strict, with the default values and with every
// non-default one set.
func TestChartLints(t *testing.T) {
	for _, set := range [][]string{
		nil,
		{"namespaces.pods=opt-in,namespaces.vms=opt-in,certs.mode=cert-manager,replicas=3",
			"metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,networkPolicy.webhookSources={10.0.0.0/24}",
			"clusterName=west,peers[0].name=east,peers[0].kubeconfig=x,peers[1].name=north,peers[1].existingSecret=peer-north"},
	} {
		args := []string{"lint", "--strict", chartDir, "--namespace", "kubemacpool-system"}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Each of the chart's settings creates what the matching kustomize overlay
// creates, object for object: the chart cannot drift from config/default
// (or the overlays from it) without this failing.
func TestChartMatchesKustomize(t *testing.T) {
	prometheus := func(t testing.TB) string {
		return kustomize(t, "config/default") + "\n---\n" + kustomize(t, "config/prometheus")
	}
	for _, c := range []struct {
		name       string
		set        []string
		kustomized func(testing.TB) string
	}{
		{"defaults", nil, func(t testing.TB) string { return kustomize(t, "config/default") }},
		{"opt-in", []string{"namespaces.pods=opt-in,namespaces.vms=opt-in"}, func(t testing.TB) string { return kustomize(t, "config/opt-in") }},
		{"upstream's defaults", []string{"namespaces.pods=opt-in"}, func(t testing.TB) string {
			return kustomizeWithComponent(t, "config/components/pods-opt-in")
		}},
		{"cert-manager", []string{"certs.mode=cert-manager"}, func(t testing.TB) string { return kustomize(t, "config/certmanager") }},
		{"webhook sources", []string{"networkPolicy.webhookSources={192.0.2.0/24}"}, func(t testing.TB) string {
			return kustomizeWithComponent(t, "config/components/webhook-source")
		}},
		{"monitoring", []string{"metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true"}, prometheus},
	} {
		t.Run(c.name, func(t *testing.T) {
			expectSameObjects(t, helmTemplate(t, "kubemacpool-system", c.set...), c.kustomized(t))
		})
	}
	t.Run("peers", func(t *testing.T) {
		args := []string{"template", "kubemacpool", chartDir, "--namespace", "kubemacpool-system", "--set", "clusterName=west,peers[0].name=east",
			"--set-file", "peers[0].kubeconfig=" + filepath.Join(env.Root, "config/components/peers/east.kubeconfig")}
		chart, err := helm(t, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, chart)
		}
		expectSameObjects(t, chart, kustomizeWithComponent(t, "config/components/peers"))
	})
	// The CRD the chart ships is the generated one (make generate copies it).
	generated, err := os.ReadFile(filepath.Join(env.Root, "config/crd/bases/kubemacpool.io_macblocks.yaml"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	shipped, err := os.ReadFile(filepath.Join(env.Root, chartDir, "files/kubemacpool.io_macblocks.yaml"))
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	NewWithT(t).Expect(string(shipped)).To(Equal(string(generated)), "the chart's CRD is stale: run make generate")
}

// The values without an overlay do what values.yaml says, and bad values
// are refused before anything is installed, saying which value is wrong.
func TestChartValues(t *testing.T) {
	g := NewWithT(t)
	objects := objectsOf(t, helmTemplate(t, "macs",
		"replicas=3,image.repository=registry.example/kubemacpool,image.tag=v1.2.3,image.pullPolicy=IfNotPresent",
		"range.start=02:aa:00:00:00:00,range.end=02:aa:00:00:ff:ff,range.excluded=02:aa:00:00:00:01,range.allowUniversalMACs=true",
		"resources.limits.memory=1Gi,extraArgs={--reservation-grace=5m},networkPolicy.metricsNamespace=observability",
		"nodeSelector.kubernetes\\.io/os=linux"))

	var d appsv1.Deployment
	fromObject(t, objects["apps/v1 Deployment macs/kubemacpool-mac-controller-manager"], &d)
	g.Expect(*d.Spec.Replicas).To(Equal(int32(3)))
	container := d.Spec.Template.Spec.Containers[0]
	g.Expect(container.Image).To(Equal("registry.example/kubemacpool:v1.2.3"))
	g.Expect(container.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
	g.Expect(container.Args).To(ContainElement("--reservation-grace=5m"))
	g.Expect(container.Resources.Limits.Memory().String()).To(Equal("1Gi"))
	g.Expect(d.Spec.Template.Spec.NodeSelector).To(Equal(map[string]string{"kubernetes.io/os": "linux"}))

	var cm corev1.ConfigMap
	fromObject(t, objects["v1 ConfigMap macs/kubemacpool-mac-range-config"], &cm)
	g.Expect(cm.Data).To(Equal(map[string]string{
		"START_POOL_RANGE": "02:aa:00:00:00:00", "END_POOL_RANGE": "02:aa:00:00:ff:ff",
		"EXCLUDED_MACS": "02:aa:00:00:00:01", "ALLOW_UNIVERSAL_MACS": "true",
	}))

	// Another namespace: everything namespaced is in it, the webhook calls
	// the Service there, and that namespace is the one kept out of reach.
	for key, o := range objects {
		u := unstructured.Unstructured{Object: o}
		if u.GetNamespace() != "" {
			g.Expect(u.GetNamespace()).To(Equal("macs"), key)
		}
	}
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	fromObject(t, objects["admissionregistration.k8s.io/v1 MutatingWebhookConfiguration /kubemacpool-mutator"], &hook)
	for _, w := range hook.Webhooks {
		g.Expect(w.ClientConfig.Service.Namespace).To(Equal("macs"))
		g.Expect(w.NamespaceSelector.MatchExpressions[1].Values).To(ContainElement("macs"))
		g.Expect(w.NamespaceSelector.MatchExpressions[1].Values).NotTo(ContainElement("kubemacpool-system"))
	}
	g.Expect(objects).To(HaveKey("policy/v1 PodDisruptionBudget macs/kubemacpool"))
	g.Expect(objects["networking.k8s.io/v1 NetworkPolicy macs/kubemacpool"]).To(HaveKeyWithValue("spec",
		HaveKeyWithValue("ingress", ContainElement(HaveKeyWithValue("from", ContainElement(HaveKeyWithValue("namespaceSelector",
			HaveKeyWithValue("matchLabels", HaveKeyWithValue("kubernetes.io/metadata.name", "observability")))))))))

	// One replica gets no PodDisruptionBudget (it would block every drain
	// of its node); no NetworkPolicy when disabled.
	single := objectsOf(t, helmTemplate(t, "kubemacpool-system", "replicas=1,networkPolicy.enabled=false"))
	for key := range single {
		g.Expect(key).NotTo(Or(ContainSubstring("PodDisruptionBudget"), ContainSubstring("NetworkPolicy")))
	}

	for _, c := range []struct{ set, says string }{
		{"namespaces.pods=optin", "at '/namespaces/pods': value must be one of 'opt-in', 'opt-out'"},
		{"certs.mode=files", "at '/certs/mode': value must be one of 'self', 'cert-manager'"},
		{"replica=3", "additional properties 'replica' not allowed"},
		{"replicas=0", "at '/replicas'"},
		{"extraArgs={reservation-grace=5m}", "at '/extraArgs/0'"},
		// Peers need this cluster's name, another than theirs, and a
		// kubeconfig or a Secret of the user's.
		{"peers[0].name=east,peers[0].kubeconfig=x", "peers need clusterName"},
		{"clusterName=west,peers[0].name=west,peers[0].kubeconfig=x", "has this cluster's own name"},
		{"clusterName=west,peers[0].name=east", "at '/peers/0'"},
		{"clusterName=West", "at '/clusterName'"},
	} {
		out, err := helm(t, "template", "kubemacpool", chartDir, "--namespace", "kubemacpool-system", "--set", c.set)
		g.Expect(err).To(HaveOccurred(), "--set %s rendered:\n%s", c.set, out)
		g.Expect(out).To(ContainSubstring(c.says), "--set %s", c.set)
	}
	// Installed in default, kubemacpool would never give MACs there (its
	// webhook leaves its own namespace alone): refused.
	out, err := helm(t, "template", "kubemacpool", chartDir)
	g.Expect(err).To(HaveOccurred(), "rendered in the default namespace:\n%s", out)
	g.Expect(out).To(ContainSubstring("install kubemacpool in a namespace of its own"))
	// Peers: the cluster's name as a flag, a labelled Secret per peer given
	// a kubeconfig; peers without a cluster name are refused.
	peered := objectsOf(t, helmTemplate(t, "kubemacpool-system",
		"clusterName=west,peers[0].name=east,peers[0].kubeconfig=apiVersion: v1,peers[1].name=north,peers[1].existingSecret=mine"))
	fromObject(t, peered["apps/v1 Deployment kubemacpool-system/kubemacpool-mac-controller-manager"], &d)
	g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--cluster-name=west"))
	var peerSecret corev1.Secret
	fromObject(t, peered["v1 Secret kubemacpool-system/kubemacpool-peer-east"], &peerSecret)
	g.Expect(peerSecret.Labels).To(HaveKeyWithValue(peers.Label, "east"))
	g.Expect(peerSecret.Data).To(HaveKeyWithValue(peers.KubeconfigKey, []byte("apiVersion: v1")))
	g.Expect(peered).NotTo(HaveKey(ContainSubstring("kubemacpool-peer-north")), "a Secret kept by the user is not made by the chart")
	// A numeric tag given with --set is a tag, not a refusal.
	numeric := objectsOf(t, helmTemplate(t, "kubemacpool-system", "image.tag=1.2"))
	fromObject(t, numeric["apps/v1 Deployment kubemacpool-system/kubemacpool-mac-controller-manager"], &d)
	g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("kubemacpool:1.2"))
}

// fromObject converts a decoded object into a typed one.
func fromObject(t testing.TB, o map[string]any, into any) {
	t.Helper()
	if o == nil {
		t.Fatalf("no such object rendered")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o, into); err != nil {
		t.Fatal(err)
	}
}

// The chart installs, upgrades and uninstalls on a real API server with
// helm itself, in a namespace of its own, and kubemacpool running as the
// chart's ServiceAccount with the chart's RBAC becomes ready there.
func TestChartInstalls(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	e := ownControlPlane(t, testenv.Options{WithoutWebhooks: true, WithoutOwnCRDs: true,
		ExtraCRDDirs: []string{"test/fixtures/chart-crds"}})
	kubeconfig := kubeconfigFor(t, e)
	const ns = "macs"
	install := func(verb string, set ...string) string {
		t.Helper()
		args := []string{verb, "kubemacpool", chartDir, "--kubeconfig", kubeconfig, "--namespace", ns}
		if verb == "install" {
			args = append(args, "--create-namespace")
		} else {
			args = append(args, "--reuse-values")
		}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		out, err := helm(t, args...)
		g.Expect(err).NotTo(HaveOccurred(), "helm %s:\n%s", verb, out)
		return out
	}
	notes := install("install", "namespaces.pods=opt-in,replicas=3",
		"range.start=02:ab:00:00:00:00,range.end=02:ab:00:00:ff:ff",
		"metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true")
	g.Expect(notes).To(ContainSubstring("kubectl macpool status -namespace macs"))

	d := &appsv1.Deployment{}
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubemacpool-mac-controller-manager"}, d)).To(Succeed())
	g.Expect(*d.Spec.Replicas).To(Equal(int32(3)))
	g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElements("--pod-namespaces=opt-in", "--vm-namespaces=opt-out", "--cert-mode=self"))
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubemacpool"}, &policyv1.PodDisruptionBudget{})).To(Succeed())
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"},
		{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"},
	} {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubemacpool"}, u)).To(Succeed(), gvk.Kind)
	}

	// kubemacpool as the chart's ServiceAccount, in the release namespace:
	// ready means its range loaded, its index synced, its certificate
	// Secret written in macs and its CA published in the webhook
	// configuration; it records the chart's range.
	replica, hook := readyAsServiceAccount(t, e, ns)
	for _, w := range hook.Webhooks {
		g.Expect(w.ClientConfig.Service.Namespace).To(Equal(ns))
	}
	recordKey := client.ObjectKey{Namespace: ns, Name: pool.RangeRecordName}
	record := &corev1.ConfigMap{}
	g.Eventually(func(g Gomega) {
		g.Expect(e.Client.Get(ctx, recordKey, record)).To(Succeed())
		g.Expect(record.Data).To(HaveKeyWithValue("START_POOL_RANGE", "02:ab:00:00:00:00"))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// An upgrade changes the range in place (kubemacpool follows it live)
	// and switches to cert-manager's certificates. kubemacpool's caBundle
	// stays in the webhook configuration: helm's three-way merge leaves a
	// field it never set alone, so no admission fails for want of a CA
	// while cert-manager's injector takes over.
	replica.Stop()
	install("upgrade", "range.start=02:ac:00:00:00:00,range.end=02:ac:00:00:ff:ff", "certs.mode=cert-manager")
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubemacpool-mac-controller-manager"}, d)).To(Succeed())
	g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElements("--cert-mode=files", "--pod-namespaces=opt-in"))
	rangeCM := &corev1.ConfigMap{}
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubemacpool-mac-range-config"}, rangeCM)).To(Succeed())
	g.Expect(rangeCM.Data).To(HaveKeyWithValue("START_POOL_RANGE", "02:ac:00:00:00:00"))
	certificate := &unstructured.Unstructured{}
	certificate.SetGroupVersionKind(schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: "Certificate"})
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubemacpool-serving-cert"}, certificate)).To(Succeed())
	dnsNames, _, _ := unstructured.NestedStringSlice(certificate.Object, "spec", "dnsNames")
	g.Expect(dnsNames).To(ContainElement("kubemacpool-service.macs.svc"))
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: "kubemacpool-mutator"}, hook)).To(Succeed())
	g.Expect(hook.Annotations).To(HaveKeyWithValue("cert-manager.io/inject-ca-from", "macs/kubemacpool-serving-cert"))
	for _, w := range hook.Webhooks {
		g.Expect(w.ClientConfig.CABundle).NotTo(BeEmpty(), "the upgrade wiped the caBundle of webhook %s", w.Name)
	}

	// Uninstall removes kubemacpool but keeps the MACBlock CRD, and with
	// it the ledger of which MACs are held.
	out, err := helm(t, "uninstall", "kubemacpool", "--kubeconfig", kubeconfig, "--namespace", ns)
	g.Expect(err).NotTo(HaveOccurred(), "helm uninstall:\n%s", out)
	err = e.Client.Get(ctx, client.ObjectKey{Name: "kubemacpool-mutator"}, hook)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the webhook configuration outlived the release: %v", err)
	g.Eventually(func() bool {
		err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "kubemacpool-mac-controller-manager"}, d)
		return apierrors.IsNotFound(err)
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: "macblocks.kubemacpool.io"}, crd)).To(Succeed())
	g.Expect(crd.GetDeletionTimestamp()).To(BeNil())

	// Installed again under the same name, the release takes the kept CRD
	// back.
	install("install")
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: "kubemacpool-mutator"}, hook)).To(Succeed())
}
