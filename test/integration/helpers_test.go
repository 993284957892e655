package integration

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/controller"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

const managerNamespace = "kubemacpool-system"

var nsCounter atomic.Int64

// newNamespace creates a namespace with a unique name and the given labels.
func newNamespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%d", time.Now().UnixNano()%100000, nsCounter.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	return name
}

// ensureNamespace creates a namespace if it does not exist.
func ensureNamespace(name string) error {
	err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// pod is a minimal pod asking for the given networks annotation.
func pod(namespace, name, networks string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "samplepod",
			Image: "quay.io/schseba/kubemacpool-test:latest",
		}}},
	}
	if networks != "" {
		p.Annotations = map[string]string{multus.NetworksAnnotation: networks}
	}
	return p
}

// createPod creates p and fails the test on error.
func createPod(t testing.TB, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatalf("creating pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	return p
}

// networksOf parses the networks annotation as the API server stored it.
func networksOf(t testing.TB, p *corev1.Pod) []multus.Element {
	t.Helper()
	elems, err := multus.Parse(p.Annotations[multus.NetworksAnnotation], p.Namespace)
	if err != nil {
		t.Fatalf("stored annotation does not parse: %v", err)
	}
	return elems
}

// macsOf returns the MACs written into a stored pod, in element order.
func macsOf(t testing.TB, p *corev1.Pod) []mac.MAC {
	t.Helper()
	var out []mac.MAC
	for _, e := range networksOf(t, p) {
		m, err := mac.Parse(e.MAC())
		if err != nil {
			t.Fatalf("network %s has no valid MAC: %v", e.NetworkKey(), err)
		}
		out = append(out, m)
	}
	return out
}

// macAddress reads the MACAddress object of m; nil when absent.
func macAddress(g Gomega, m mac.MAC) *v1alpha1.MACAddress {
	obj := &v1alpha1.MACAddress{}
	err := env.Client.Get(context.Background(), client.ObjectKey{Name: m.ObjectName()}, obj)
	if apierrors.IsNotFound(err) {
		return nil
	}
	g.Expect(err).NotTo(HaveOccurred())
	return obj
}

// expectBound waits until m is held by a MACAddress bound to p.
func expectBound(t testing.TB, m mac.MAC, p *corev1.Pod) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		obj := macAddress(g, m)
		g.Expect(obj).NotTo(BeNil(), "MACAddress %s must exist", m)
		g.Expect(obj.Status.Phase).To(Equal(v1alpha1.PhaseBound))
		g.Expect(obj.Spec.Owner.Kind).To(Equal("Pod"))
		g.Expect(obj.Spec.Owner.Namespace).To(Equal(p.Namespace))
		g.Expect(obj.Spec.Owner.Name).To(Equal(p.Name))
		g.Expect(obj.Spec.Owner.UID).To(Equal(p.UID))
		g.Expect(obj.Spec.Address).To(Equal(m.String()))
	}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// expectReleased waits until no MACAddress holds m.
func expectReleased(t testing.TB, m mac.MAC) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		g.Expect(macAddress(g, m)).To(BeNil(), "MAC %s must be released", m)
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
}

// setRange writes the range ConfigMap, and removes it when the test ends.
func setRange(t testing.TB, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: controller.RangeConfigMapName}}
	err := env.Client.Get(ctx, client.ObjectKeyFromObject(cm), cm)
	switch {
	case apierrors.IsNotFound(err):
		cm.Data = data
		err = env.Client.Create(ctx, cm)
	case err == nil:
		cm.Data = data
		err = env.Client.Update(ctx, cm)
	}
	if err != nil {
		t.Fatalf("writing the range ConfigMap: %v", err)
	}
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: controller.RangeConfigMapName}})
	})
}

// eventsAbout lists the events.k8s.io events regarding an object.
func eventsAbout(g Gomega, namespace, name, reason string) []eventsv1.Event {
	list := &eventsv1.EventList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(namespace))).To(Succeed())
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// deleteAllPods removes every pod of a namespace at once (no kubelet runs,
// so a grace period of zero deletes them immediately).
func deleteAllPods(t testing.TB, namespace string) {
	t.Helper()
	err := env.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(namespace), client.GracePeriodSeconds(0))
	if err != nil {
		t.Fatalf("deleting pods: %v", err)
	}
}

// containsAll reports whether s contains every part.
func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// podsIn lists the pods of a namespace.
func podsIn(g Gomega, namespace string) []corev1.Pod {
	list := &corev1.PodList{}
	g.Expect(env.Client.List(context.Background(), list, client.InNamespace(namespace))).To(Succeed())
	return list.Items
}

// ownControlPlane starts a control plane for one test, apart from the shared
// one (for tests that break it, or need it without something), with the
// given namespaces created, and stops it when the test ends.
func ownControlPlane(t testing.TB, o testenv.Options, namespaces ...string) *testenv.Env {
	t.Helper()
	e, err := testenv.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	for _, ns := range namespaces {
		if err := e.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	return e
}
