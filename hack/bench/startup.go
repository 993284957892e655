package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

const (
	// firstMAC is the first MAC written into the start-up objects: locally
	// administered, unicast, inside the default range, and far from where
	// the random cursor of the earlier series is likely to have been.
	firstMAC = mac.MAC(0x0a0000000000)
	// directMAC is the first MAC of the MACAddresses created directly.
	directMAC = mac.MAC(0x0e0000000000)

	readyTimeout  = 5 * time.Minute
	repairTimeout = 30 * time.Minute
	repairPoll    = 250 * time.Millisecond
)

// startup measures kubemacpool starting on a cluster that already holds
// b.o.pods pods and b.o.vms VMs carrying MACs it never handed out, like
// objects that predate it: how long until it is ready, how long until every
// MAC is adopted, and how much memory it holds then.
func (b *bench) startup() error {
	say("stopping kubemacpool")
	b.kmp.Stop()
	if err := b.clearEarlierObjects(); err != nil {
		return err
	}
	if err := b.macAddressCreates(); err != nil {
		return err
	}
	ns, err := b.namespace("bench-startup", nil)
	if err != nil {
		return err
	}
	say("removing kubemacpool's webhook configuration")
	if err := b.removeWebhook(ns); err != nil {
		return err
	}
	expected, err := b.fill(ns)
	if err != nil {
		return err
	}

	say("starting kubemacpool with %d pods and %d VMs to adopt", b.o.pods, b.o.vms)
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	if err := b.kmp.Start(); err != nil {
		return err
	}
	// Ready and repair progress side by side: readiness does not wait for
	// adoption, and a List of thousands of MACAddresses takes longer than
	// the resolution readiness deserves.
	type result struct {
		after time.Duration
		err   error
	}
	readyCh := make(chan result, 1)
	go func() {
		after, err := b.kmp.WaitReady(ctx, readyTimeout)
		readyCh <- result{after, err}
	}()
	repaired, err := b.waitRepaired(ctx, expected)
	if err != nil {
		return err
	}
	ready := <-readyCh
	if ready.err != nil {
		return ready.err
	}

	total := fmt.Sprintf("%d pods + %d VMs", b.o.pods, b.o.vms)
	b.table.add("start-up with "+total+": ready", seconds(ready.after))
	b.table.add("start-up: repair complete (all MACs adopted)", seconds(repaired))
	if err := b.memory("resident memory after repair"); err != nil {
		return err
	}
	return b.restart(len(expected))
}

// restart measures the usual restart, a new version rolled out: every MAC
// already has its MACAddress, and readiness waits for the index to hold
// them all.
func (b *bench) restart(held int) error {
	say("restarting kubemacpool with %d MACs held", held)
	b.kmp.Stop()
	if err := b.kmp.Start(); err != nil {
		return err
	}
	ready, err := b.kmp.WaitReady(b.ctx, readyTimeout)
	if err != nil {
		return err
	}
	b.table.add(fmt.Sprintf("restart with %d MACAddresses held: ready", held), seconds(ready))
	return nil
}

// macAddressCreates times the API call behind every MAC the webhook hands
// out, a MACAddress create, alone (kubemacpool is stopped): the floor
// under the added admission latency, paid once per network.
func (b *bench) macAddressCreates() error {
	say("%d sequential MACAddress creates, without kubemacpool", b.o.seq)
	latencies, err := sequential(b.ctx, b.c, b.o.seq, func(i int) client.Object {
		m := directMAC + mac.MAC(i)
		return &v1alpha1.MACAddress{
			ObjectMeta: metav1.ObjectMeta{Name: m.ObjectName()},
			Spec: v1alpha1.MACAddressSpec{
				Address: m.String(),
				Owner:   v1alpha1.Owner{APIVersion: "v1", Kind: "Pod", Namespace: "bench-direct", Name: fmt.Sprintf("pod-%d", i)},
				Network: "bench-direct/net-a",
			},
		}
	})
	if err != nil {
		return err
	}
	s := summarize(latencies, 0)
	b.table.add("MACAddress create, direct (one per MAC): p50 / p99", ms(s.p50)+" / "+ms(s.p99))
	if err := b.c.DeleteAllOf(b.ctx, &v1alpha1.MACAddress{}); err != nil {
		return fmt.Errorf("deleting MACAddresses: %w", err)
	}
	return nil
}

// clearEarlierObjects deletes the pods, VMs and MACAddresses of the load
// series while kubemacpool is stopped, so start-up sees exactly the objects
// the table names. (envtest runs no namespace controller: deleting the
// namespaces would leave their objects behind.)
func (b *bench) clearEarlierObjects() error {
	say("deleting the objects of the load series")
	for _, ns := range b.namespaces {
		for _, obj := range []client.Object{&corev1.Pod{}, &kubevirtv1.VirtualMachine{}} {
			if err := b.c.DeleteAllOf(b.ctx, obj, client.InNamespace(ns), client.GracePeriodSeconds(0)); err != nil {
				return fmt.Errorf("deleting %T in %s: %w", obj, ns, err)
			}
		}
	}
	b.namespaces = nil
	if err := b.c.DeleteAllOf(b.ctx, &v1alpha1.MACAddress{}); err != nil {
		return fmt.Errorf("deleting MACAddresses: %w", err)
	}
	return nil
}

// fill creates the pods and VMs that carry MACs without kubemacpool, each
// with its own MAC, and returns the MACAddress names that must appear.
func (b *bench) fill(ns string) (map[string]bool, error) {
	expected := make(map[string]bool, b.o.pods+b.o.vms)
	podMAC := func(i int) mac.MAC { return firstMAC + mac.MAC(i) }
	vmMAC := func(i int) mac.MAC { return firstMAC + mac.MAC(b.o.pods+i) }
	for i := range b.o.pods {
		expected[podMAC(i).ObjectName()] = true
	}
	for i := range b.o.vms {
		expected[vmMAC(i).ObjectName()] = true
	}

	say("creating %d pods and %d VMs carrying MACs, without kubemacpool", b.o.pods, b.o.vms)
	_, _, err := concurrent(b.ctx, b.c, b.o.pods, b.o.workers, func(i int) client.Object {
		return podWithMAC(ns, fmt.Sprintf("pod-%d", i), podMAC(i))
	})
	if err != nil {
		return nil, err
	}
	_, _, err = concurrent(b.ctx, b.c, b.o.vms, b.o.workers, func(i int) client.Object {
		return vmWithMAC(ns, fmt.Sprintf("vm-%d", i), vmMAC(i))
	})
	if err != nil {
		return nil, err
	}
	return expected, nil
}

// waitRepaired lists MACAddresses every repairPoll until each expected one
// exists, and returns the time since kubemacpool started.
func (b *bench) waitRepaired(ctx context.Context, expected map[string]bool) (time.Duration, error) {
	deadline := b.kmp.Started().Add(repairTimeout)
	lastReport := time.Now()
	for {
		held, err := b.countHeld(ctx, expected)
		if err != nil {
			return 0, err
		}
		if held == len(expected) {
			return time.Since(b.kmp.Started()), nil
		}
		if err := b.kmp.Alive(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d MACs adopted %s after kubemacpool started", held, len(expected), repairTimeout)
		}
		if time.Since(lastReport) > 10*time.Second {
			say("%d of %d MACs adopted after %s", held, len(expected), seconds(time.Since(b.kmp.Started())))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(repairPoll):
		}
	}
}

// countHeld counts the expected MACs that have a MACAddress. It lists
// metadata only: the name is the MAC, and the full objects would make each
// poll a far heavier request on the API server kubemacpool is using.
func (b *bench) countHeld(ctx context.Context, expected map[string]bool) (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("MACAddressList"))
	if err := b.c.List(ctx, list); err != nil {
		return 0, fmt.Errorf("listing MACAddresses: %w", err)
	}
	held := 0
	for _, m := range list.Items {
		if expected[m.Name] {
			held++
		}
	}
	return held, nil
}

// errWebhookStillCalled is returned when the API server keeps calling the
// removed webhook configuration.
var errWebhookStillCalled = errors.New("the API server still calls kubemacpool's webhook 30 s after its configuration was deleted")

// removeWebhook deletes kubemacpool's webhook configuration and waits until
// the API server stops calling it (a dry-run create succeeds while
// kubemacpool is stopped), so the objects created next predate kubemacpool
// as far as it can tell.
func (b *bench) removeWebhook(namespace string) error {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "kubemacpool-mutator"}}
	if err := b.c.Delete(b.ctx, mwc); err != nil {
		return fmt.Errorf("deleting the webhook configuration: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := b.c.Create(b.ctx, twoNetworkPod(namespace, "probe"), client.DryRunAll); err == nil {
			return nil
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errWebhookStillCalled
}
