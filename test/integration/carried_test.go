package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// The promise kubemacpool exists for, on a start after an upgrade or a
// restore: objects already carry MACs that kubemacpool has no record of.
// 1,000 objects carry every second address of a 2,048-address range, so no
// cursor position can dodge them; kubemacpool starts and 200 pods are
// created at once, retried while it is not ready. None may get a carried
// MAC, and every carried MAC is held: a pod asking for one is refused,
// naming the carrier, and in managed namespaces it is adopted.
func TestCarriedMACsNeverHandedOut(t *testing.T) {
	for i, tc := range []struct {
		name     string
		carriers string // pods | vms
		ignored  bool   // the carriers stay in a namespace kubemacpool ignores
	}{
		{name: "pods", carriers: "pods"},
		{name: "vms", carriers: "vms"},
		{name: "pods in an ignored namespace", carriers: "pods", ignored: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			base := uint64(0x02c800000000) + uint64(i)<<16
			start, end := mac.MAC(base), mac.MAC(base+2047)
			setRange(t, map[string]string{"START_POOL_RANGE": start.String(), "END_POOL_RANGE": end.String()})

			// "Created with the webhook off": the namespace is ignored by
			// the webhook configuration while the carriers are created.
			label := map[string]string{"pods": "mutatepods.kubemacpool.io", "vms": "mutatevirtualmachines.kubemacpool.io"}[tc.carriers]
			old := newNamespace(t, map[string]string{label: "ignore"})
			carried := map[mac.MAC]string{}
			var names []string
			for k := 0; k < 1000; k++ {
				m := mac.MAC(base + 2*uint64(k))
				name := fmt.Sprintf("carrier-%d", k)
				carried[m] = old + "/" + name
				names = append(names, name)
			}
			macOf := func(name string) mac.MAC {
				var k int
				fmt.Sscanf(name, "carrier-%d", &k)
				return mac.MAC(base + 2*uint64(k))
			}
			parallel(t, names, func(name string) error {
				m := macOf(name)
				if tc.carriers == "vms" {
					return env.Client.Create(ctx, newVM(old, name, iface{"a", "bridge", "net-a", m.String()}))
				}
				return env.Client.Create(ctx, pod(old, name, `[{"name":"net-a","mac":"`+m.String()+`"}]`))
			})
			t.Cleanup(func() { deleteCarriers(t, old) })
			if !tc.ignored {
				nsObj := &corev1.Namespace{}
				g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: old}, nsObj)).To(Succeed())
				delete(nsObj.Labels, label)
				g.Expect(env.Client.Update(ctx, nsObj)).To(Succeed())
			}

			o := testOptions(t)
			launchManagerOn(t, env, o)
			ns := newNamespace(t, nil)
			var newNames []string
			for k := 0; k < 200; k++ {
				newNames = append(newNames, fmt.Sprintf("new-%d", k))
			}
			var mu sync.Mutex
			got := map[mac.MAC]string{}
			deadline := time.Now().Add(60 * time.Second)
			parallel(t, newNames, func(name string) error {
				for {
					p := pod(ns, name, `[{"name":"net-a"}]`)
					err := env.Client.Create(ctx, p)
					if err != nil && time.Now().Before(deadline) {
						time.Sleep(50 * time.Millisecond) // not ready yet: retry, as a client would
						continue
					}
					if err != nil {
						return err
					}
					m, err := mac.Parse(networksOf(t, p)[0].MAC())
					if err != nil {
						return err
					}
					mu.Lock()
					defer mu.Unlock()
					if other, dup := got[m]; dup {
						return fmt.Errorf("pods %s and %s both got MAC %s", other, name, m)
					}
					got[m] = name
					return nil
				}
			})
			var handedOut []string
			for m, name := range got {
				if carrier, ok := carried[m]; ok {
					handedOut = append(handedOut, fmt.Sprintf("%s got %s, carried by %s", name, m, carrier))
				}
			}
			g.Expect(handedOut).To(BeEmpty(), "pods were given MACs that existing objects carry")
			g.Expect(got).To(HaveLen(200))

			// Held: an explicit request for a carried MAC names the carrier.
			kind := map[string]string{"pods": "Pod", "vms": "VirtualMachine"}[tc.carriers]
			for _, k := range []int{0, 499, 999} {
				m := macOf(fmt.Sprintf("carrier-%d", k))
				err := env.Client.Create(ctx, pod(ns, fmt.Sprintf("asks-%d", k), `[{"name":"net-a","mac":"`+m.String()+`"}]`))
				g.Expect(err).To(MatchError(And(ContainSubstring("MAC address "+m.String()+" is already in use by "+kind+" "+old+"/carrier-"),
					ContainSubstring("choose another MAC"))))
			}
			// Every carried MAC, in a managed namespace or an ignored one,
			// gets its ledger entry, for the object it is carried for.
			g.Eventually(func(g Gomega) {
				for m, who := range carried {
					e := entryOf(g, m)
					g.Expect(e).NotTo(BeNil(), "carried MAC %s not adopted", m)
					g.Expect(e.Owner.Namespace+"/"+e.Owner.Name).To(Equal(who), "MAC %s adopted for %+v", m, e.Owner)
					g.Expect(e.Adopted).To(BeTrue())
				}
			}).WithTimeout(120 * time.Second).WithPolling(time.Second).Should(Succeed())
		})
	}
}

// A pod the webhook never saw (its namespace is ignored) holds the MAC that
// Multus applies from its annotation, even where kubemacpool's own parser
// refuses the annotation: Multus decodes it with encoding/json, which
// matches keys in any letter case and keeps the last of duplicate keys. A
// pod asking for that MAC is refused, naming the carrier, and repair adopts
// the MAC for the carrier.
func TestCarriedAsMultusReadsIt(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ignored := newNamespace(t, map[string]string{"mutatepods.kubemacpool.io": "ignore"})
	t.Cleanup(func() { deleteCarriers(t, ignored) })
	cases := []struct{ name, networks, applied string }{
		{"upper-case-key", `[{"name":"net-a","MAC":"02:c9:4d:00:00:01"}]`, "02:c9:4d:00:00:01"},
		{"duplicate-keys", `[{"name":"net-a","mac":"02:c9:4d:00:00:02","Mac":"02-C9-4D-00-00-03"}]`, "02:c9:4d:00:00:03"},
	}
	for _, c := range cases {
		_, err := multus.Parse(c.networks, ignored)
		g.Expect(err).To(HaveOccurred(), "kubemacpool's parser must refuse %s for this test to mean anything", c.networks)
		p := createPod(t, pod(ignored, c.name, c.networks))
		applied := multusRequests(g, p)
		g.Expect(applied).To(HaveLen(1))
		g.Expect(mac.Parse(applied[0].MacRequest)).To(Equal(mustParseMAC(g, c.applied)), "the MAC Multus applies")
	}

	// Started after the carriers exist: ready means they are indexed.
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)
	for _, c := range cases {
		err := env.Client.Create(ctx, pod(ns, "asks-"+c.name, `[{"name":"net-a","mac":"`+c.applied+`"}]`))
		g.Expect(err).To(MatchError(ContainSubstring("MAC address "+c.applied+" is already in use by Pod "+ignored+"/"+c.name)),
			"a pod asking for the MAC that %s/%s carries", ignored, c.name)
	}
	g.Eventually(func(g Gomega) {
		for _, c := range cases {
			e := entryOf(g, mustParseMAC(g, c.applied))
			g.Expect(e).NotTo(BeNil(), "carried MAC %s not adopted", c.applied)
			g.Expect(e.Owner.Namespace+"/"+e.Owner.Name).To(Equal(ignored+"/"+c.name), "MAC %s adopted for %+v", c.applied, e.Owner)
		}
	}).WithTimeout(60 * time.Second).WithPolling(time.Second).Should(Succeed())
	// The first of the duplicate keys is not what Multus applies.
	g.Expect(env.Client.Create(ctx, pod(ns, "asks-overridden", `[{"name":"net-a","mac":"02:c9:4d:00:00:02"}]`))).To(Succeed())
}

func mustParseMAC(g Gomega, s string) mac.MAC {
	m, err := mac.Parse(s)
	g.Expect(err).NotTo(HaveOccurred())
	return m
}

// A running VM keeps the MAC of an interface its template dropped until
// its VMI stops carrying it: KubeVirt keeps the old MAC until a restart.
func TestVMIKeepsDroppedMACHeld(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	vm := newVM(ns, "running", iface{"a", "bridge", "net-a", ""}, iface{"b", "bridge", "net-b", ""})
	g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	dropped := vmMACs(vm)["b"]
	expectHeldBy(t, dropped, "VirtualMachine", vm)
	// The VMI KubeVirt would start from the VM: the same interfaces, a
	// controller reference to the VM.
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: vm.Name, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "kubevirt.io/v1", Kind: "VirtualMachine", Name: vm.Name, UID: vm.UID, Controller: ptr.To(true),
		}}},
		Spec: *vm.Spec.Template.Spec.DeepCopy(),
	}
	g.Expect(env.Client.Create(ctx, vmi)).To(Succeed())

	// The template drops interface b.
	g.Eventually(func() error {
		cur := getVM(g, vm)
		cur.Spec.Template.Spec.Domain.Devices.Interfaces = cur.Spec.Template.Spec.Domain.Devices.Interfaces[:1]
		cur.Spec.Template.Spec.Networks = cur.Spec.Template.Spec.Networks[:1]
		return env.Client.Update(ctx, cur)
	}).WithTimeout(10 * time.Second).Should(Succeed())

	asks := func(name string) error {
		return env.Client.Create(ctx, pod(ns, name, `[{"name":"net-b","mac":"`+dropped+`"}]`))
	}
	g.Consistently(func(g Gomega) {
		g.Expect(asks("while-running")).To(MatchError(ContainSubstring("MAC address " + dropped + " is already in use by VirtualMachineInstance " + ns + "/running (network net-b) of VirtualMachine " + ns + "/running")))
	}).WithTimeout(3 * time.Second).WithPolling(time.Second).Should(Succeed())

	g.Expect(env.Client.Delete(ctx, vmi)).To(Succeed())
	g.Eventually(func() error { return asks("after-stop") }).WithTimeout(30 * time.Second).Should(Succeed())
}

// parallel runs f for every name on 16 goroutines and fails the test with
// the first error.
func parallel(t testing.TB, names []string, f func(string) error) {
	t.Helper()
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				if err := f(name); err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
				}
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	var all []string
	for err := range errs {
		all = append(all, err.Error())
	}
	if len(all) > 0 {
		t.Fatalf("%d of %d failed, first: %s", len(all), len(names), strings.Join(all[:1], ""))
	}
}

// deleteCarriers removes the pods and VMs of a namespace, so later tests do
// not pay for them.
func deleteCarriers(t testing.TB, namespace string) {
	ctx := context.Background()
	_ = env.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(namespace), client.GracePeriodSeconds(0))
	_ = env.Client.DeleteAllOf(ctx, &kubevirtv1.VirtualMachine{}, client.InNamespace(namespace))
}
