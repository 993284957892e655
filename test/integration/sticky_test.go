package integration

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// statefulSet creates a StatefulSet with the given replicas and
// annotations. No controller runs here: the tests create its pods.
func statefulSet(t testing.TB, namespace, name string, replicas int32, annotations map[string]string) *appsv1.StatefulSet {
	t.Helper()
	labels := map[string]string{"app": name}
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: annotations},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod(namespace, "", "").Spec,
			},
		},
	}
	if err := env.Client.Create(context.Background(), set); err != nil {
		t.Fatalf("creating StatefulSet: %v", err)
	}
	return set
}

// podOf is the pod of set with the ordinal, as the StatefulSet controller
// creates it, asking for networks.
func podOf(set *appsv1.StatefulSet, ordinal int32, networks string) *corev1.Pod {
	p := pod(set.Namespace, sticky.PodName(set.Name, ordinal), networks)
	p.Labels = set.Spec.Template.Labels
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: set.Name, UID: set.UID, Controller: ptr.To(true)}}
	return p
}

// deletePodNow deletes p and waits until it is gone.
func deletePodNow(t testing.TB, p *corev1.Pod) {
	t.Helper()
	g := NewWithT(t)
	g.Expect(env.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0))).To(Succeed())
	g.Eventually(func() error {
		return env.Client.Get(context.Background(), client.ObjectKeyFromObject(p), &corev1.Pod{})
	}).WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring("not found")))
}

// expectHeldFor checks, for longer than the grace period, that every MAC
// stays held for the StatefulSet's ordinal.
func expectHeldFor(t testing.TB, set *appsv1.StatefulSet, ordinal int32, macs ...mac.MAC) {
	t.Helper()
	NewWithT(t).Consistently(func(g Gomega) {
		for _, m := range macs {
			e := entryOf(g, m)
			g.Expect(e).NotTo(BeNil(), "MAC %s of %s released while its pod is away", m, sticky.PodName(set.Name, ordinal))
			g.Expect(e.Owner.Kind).To(Equal(sticky.Kind))
			g.Expect(e.Owner.Name).To(Equal(set.Name))
			g.Expect(e.Owner.UID).To(Equal(set.UID))
			g.Expect(e.Owner.Ordinal).To(Equal(ordinal))
		}
	}).WithTimeout(testGrace + 2*time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
}

// A StatefulSet's pod keeps its MACs when it is deleted and gets them back,
// per network and interface, when it is created again under its name;
// nobody else may take them meanwhile. Scaling below the ordinal, or
// deleting the StatefulSet, releases them after the grace period; a
// StatefulSet may opt out.
func TestStatefulSetPodsKeepTheirMACs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	set := statefulSet(t, ns, "web", 2, nil)

	web0 := createPod(t, podOf(set, 0, `[{"name":"net-a","interface":"net1"},{"name":"net-b","interface":"net2"}]`))
	macs := macsOf(t, web0)
	for _, m := range macs {
		expectBound(t, m, web0)
	}
	web1 := createPod(t, podOf(set, 1, `[{"name":"net-a","interface":"net1"}]`))
	web1MAC := macsOf(t, web1)[0]

	deletePodNow(t, web0)
	expectHeldFor(t, set, 0, macs...)
	err := env.Client.Create(ctx, pod(ns, "squatter", `[{"name":"net-a","mac":"`+macs[0].String()+`"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("MAC address " + macs[0].String() + " is already in use by StatefulSet " + ns + "/web for its pod web-0")))

	// Created again, its networks listed the other way round: each network
	// gets its MAC back.
	again := createPod(t, podOf(set, 0, `[{"name":"net-b","interface":"net2"},{"name":"net-a","interface":"net1"}]`))
	g.Expect(macsOf(t, again)).To(Equal([]mac.MAC{macs[1], macs[0]}))
	g.Expect(again.UID).NotTo(Equal(web0.UID))
	for _, m := range macs {
		expectBound(t, m, again)
	}

	// Scaled below ordinal 1: web-1's MAC is released once the grace ends.
	deletePodNow(t, web1)
	cur := &appsv1.StatefulSet{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(set), cur)).To(Succeed())
	cur.Spec.Replicas = ptr.To(int32(1))
	g.Expect(env.Client.Update(ctx, cur)).To(Succeed())
	scaled := time.Now()
	expectReleased(t, web1MAC)
	g.Expect(time.Since(scaled)).To(BeNumerically(">=", testGrace-time.Second), "released before the grace ended")

	// Deleted (and its pod with it, as the garbage collector would): its
	// MACs are released after the grace.
	deletePodNow(t, again)
	g.Expect(env.Client.Delete(ctx, set)).To(Succeed())
	deleted := time.Now()
	for _, m := range macs {
		expectReleased(t, m)
	}
	g.Expect(time.Since(deleted)).To(BeNumerically(">=", testGrace-time.Second), "released before the grace ended")

	// Opted out: the pods are ordinary pods, their MACs go with them.
	plain := statefulSet(t, ns, "plain", 1, map[string]string{sticky.OptOutAnnotation: "false"})
	p := createPod(t, podOf(plain, 0, `[{"name":"net-a"}]`))
	m := macsOf(t, p)[0]
	expectBound(t, m, p)
	g.Expect(entryOf(g, m).Owner.Kind).To(Equal("Pod"))
	deletePodNow(t, p)
	expectReleased(t, m)
}
