package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

const (
	// firstMAC is the first MAC written into the start-up objects: locally
	// administered, unicast, inside the default range, and far from where
	// the random cursor of the earlier series is likely to have been.
	firstMAC = mac.MAC(0x0a0000000000)
	// directMAC is the first MAC of the MACBlocks updated directly.
	directMAC = mac.MAC(0x0e0000000000)

	readyTimeout  = 5 * time.Minute
	repairTimeout = 30 * time.Minute
	repairPoll    = 250 * time.Millisecond
	// createRetry is how soon a create refused while kubemacpool starts is
	// tried again: the resolution of "first good create".
	createRetry = 20 * time.Millisecond
)

// startup measures kubemacpool starting on a cluster that already holds
// b.o.pods pods and b.o.vms VMs carrying MACs it never handed out, like
// objects that predate it: how long until it is ready, how long until every
// MAC is adopted, and how much memory it holds then. Then it restarts with
// all of them in the ledger.
func (b *bench) startup() error {
	say("stopping kubemacpool")
	b.kmp.Stop()
	if err := b.clearEarlierObjects(); err != nil {
		return err
	}
	if err := b.macBlockUpdates(); err != nil {
		return err
	}
	ns, err := b.namespace("bench-startup", nil)
	if err != nil {
		return err
	}
	say("removing kubemacpool's webhook configuration")
	webhook, err := b.removeWebhook(ns)
	if err != nil {
		return err
	}
	expected, took, err := b.fill(ns)
	if err != nil {
		return err
	}

	// The webhook is back before kubemacpool starts, as on a cluster where
	// it is installed and its pods (re)start: creates are refused until it
	// serves, and the first that succeeds must not get a carried MAC.
	if err := b.restoreWebhook(webhook, ns); err != nil {
		return err
	}
	say("timing a bare cache's sync of the same objects")
	floor, err := b.bareSync(false)
	if err != nil {
		return err
	}
	say("starting kubemacpool with %d pods and %d VMs to adopt", b.o.pods, b.o.vms)
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	if err := b.kmp.Start(); err != nil {
		return err
	}
	profiled := b.startupProfile(b.o.startupCPU)
	apiProfiled := b.startupAPIProfile(b.o.startupAPICPU)
	// Ready, the first good create and repair progress side by side:
	// readiness does not wait for adoption.
	type result struct {
		after time.Duration
		err   error
	}
	readyCh := make(chan result, 1)
	go func() {
		after, err := b.kmp.WaitReady(ctx, readyTimeout)
		readyCh <- result{after, err}
	}()
	type created struct {
		pod     client.Object
		after   time.Duration
		refused int
		err     error
	}
	firstCh := make(chan created, 1)
	go func() {
		pod, after, refused, err := b.createUntilGood(ns, "first-start")
		firstCh <- created{pod, after, refused, err}
	}()
	repaired, err := b.waitRepaired(ctx, expected)
	if err != nil {
		return err
	}
	ready := <-readyCh
	if ready.err != nil {
		return ready.err
	}
	first := <-firstCh
	if first.err != nil {
		return first.err
	}
	if err := profiled(); err != nil {
		return err
	}
	if err := apiProfiled(); err != nil {
		return err
	}
	handedAgain := 0
	for _, m := range podMACs(first.pod.GetNamespace(), first.pod.GetAnnotations()) {
		if parsed, err := mac.Parse(m); err == nil && expected[parsed] {
			handedAgain++
		}
	}

	// There is no start-up without kubemacpool to compare with; the fill,
	// the same objects created without it, is this run's measure of how
	// fast the machine is.
	total := fmt.Sprintf("%d pods + %d VMs", b.o.pods, b.o.vms)
	if b.o.podMACs > 1 {
		total = fmt.Sprintf("%d pods (%d MACs each) + %d VMs", b.o.pods, b.o.podMACs, b.o.vms)
	}
	b.table.add("start-up fill without kubemacpool: "+total+" (this run's reference)",
		fmt.Sprintf("%s = %s", seconds(took), rate(float64(b.o.pods+b.o.vms)/took.Seconds())), "")
	b.table.add("start-up with "+total+": ready", againstFloor(ready.after, floor), "≤ 3 s")
	b.table.add("start-up: first good create (carried MACs handed out again)",
		fmt.Sprintf("%s (%d refused before; %d handed out again)", seconds(first.after), first.refused, handedAgain), "≤ 2.5 s (0)")
	b.table.add("start-up: repair complete (all MACs adopted)", seconds(repaired), "≤ 10 s")
	// Memory once the repair has judged what it adopted, as it does after
	// each write: the leader's notes of every entry are then kept.
	if err := b.settle(); err != nil {
		return err
	}
	if err := b.memory("resident memory after repair, once idle", "≤ 113 MiB"); err != nil {
		return err
	}
	if err := b.restart(len(expected)); err != nil {
		return err
	}
	if err := b.firstGoodCreates(ns, len(expected)); err != nil {
		return err
	}
	if !b.o.seriesAtScale {
		return nil
	}
	// The admission series again, with every start-up object still there
	// (and the restarted kubemacpool indexing them): what the cluster's
	// size costs an admission, beside the same series on an empty cluster.
	b.variant, b.variantNS = fmt.Sprintf(", %d objects present", b.o.pods+b.o.vms), "-at-scale"
	defer func() { b.variant, b.variantNS = "", "" }()
	say("the admission series again, with %d pods and %d VMs present", b.o.pods, b.o.vms)
	for _, w := range []workload{pods, vms} {
		if err := b.admission(w); err != nil {
			return err
		}
	}
	return nil
}

// startupProfile starts, when file is set (-startup-cpu, -restart-cpu), a
// CPU profile of kubemacpool from its start over -startup-cpu-seconds into
// file, and returns a wait for it. The profile endpoint is asked until it
// answers: it comes up with the process, a moment after the start.
func (b *bench) startupProfile(file string) (wait func() error) {
	if file == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := b.saveProfile(fmt.Sprintf("profile?seconds=%d", b.o.startupCPUSeconds), file)
			if err == nil || time.Now().After(deadline) {
				done <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return func() error { return <-done }
}

// startupAPIProfile starts, when file is set (-startup-api-cpu), a CPU
// profile of kube-apiserver from kubemacpool's first start over
// -startup-cpu-seconds, and returns a wait for it: what serving the
// replica's lists, and then the adoption's writes, cost the API server.
func (b *bench) startupAPIProfile(file string) (wait func() error) {
	if file == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() { done <- b.apiServerProfile(file, time.Duration(b.o.startupCPUSeconds)*time.Second) }()
	return func() error { return <-done }
}

// restart measures the usual restart, a new version rolled out: every MAC
// already has its ledger entry, and readiness waits for the index to hold
// them all.
func (b *bench) restart(held int) error {
	say("timing a bare cache's sync of the same objects and the MAC blocks")
	floor, err := b.bareSync(true)
	if err != nil {
		return err
	}
	say("restarting kubemacpool with %d MACs held", held)
	b.kmp.Stop()
	if err := b.kmp.Start(); err != nil {
		return err
	}
	profiled := b.startupProfile(b.o.restartCPU)
	ready, err := b.kmp.WaitReady(b.ctx, readyTimeout)
	if err != nil {
		return err
	}
	b.table.add(fmt.Sprintf("restart with %d MACs held: ready", held), againstFloor(ready, floor), "")
	return profiled()
}

// firstGoodCreates restarts kubemacpool once more, the ledger as full, and
// times from process start until a pod create through the webhook first
// succeeds with its MACs: how long a rollout keeps users' pods out. Until
// kubemacpool serves, creates are refused (the API server cannot reach the
// webhook, or kubemacpool answers 503 while not ready, and failurePolicy
// is Fail); they are tried again every createRetry. A restart of its own,
// so these creates do not stretch the ready time measured before.
//
// With -restarts N it does so N times and reports the median and each run:
// one restart on a shared machine is one sample of a noisy figure.
func (b *bench) firstGoodCreates(namespace string, held int) error {
	var runs []time.Duration
	refusedTotal := 0
	for i := range b.o.restarts {
		say("restarting kubemacpool with %d MACs held, creating a pod until one succeeds (%d of %d)", held, i+1, b.o.restarts)
		b.kmp.Stop()
		if err := b.kmp.Start(); err != nil {
			return err
		}
		_, after, refused, err := b.createUntilGood(namespace, fmt.Sprintf("first-good-%d", i))
		if err != nil {
			return err
		}
		runs = append(runs, after)
		refusedTotal += refused
	}
	value := fmt.Sprintf("%s (%d refused before)", seconds(runs[0]), refusedTotal)
	if len(runs) > 1 {
		each := make([]string, len(runs))
		for i, r := range runs {
			each[i] = seconds(r)
		}
		sorted := slices.Clone(runs)
		slices.Sort(sorted)
		median := (sorted[(len(sorted)-1)/2] + sorted[len(sorted)/2]) / 2
		value = fmt.Sprintf("median %s of %d restarts (%s; %d refused before, in all)", seconds(median), len(runs), strings.Join(each, ", "), refusedTotal)
	}
	b.table.add(fmt.Sprintf("restart with %d MACs held: first good create", held), value, restartTarget(held))
	return nil
}

// createUntilGood creates a two-network pod every createRetry until a
// create succeeds with its MACs, and returns that pod, the time since
// kubemacpool started and how many creates were refused before.
func (b *bench) createUntilGood(namespace, prefix string) (client.Object, time.Duration, int, error) {
	deadline := b.kmp.Started().Add(readyTimeout)
	var refused error
	for attempt := 0; ; attempt++ {
		pod := twoNetworkPod(namespace, fmt.Sprintf("%s-%d", prefix, attempt))
		err := b.c.Create(b.ctx, pod)
		if err == nil {
			after := time.Since(b.kmp.Started())
			if !carriesMACs(pod) {
				return nil, 0, 0, fmt.Errorf("pod %s/%s was created without MACs: the API server did not call kubemacpool", namespace, pod.GetName())
			}
			return pod, after, attempt, nil
		}
		refused = err
		if err := b.kmp.Alive(); err != nil {
			return nil, 0, 0, err
		}
		if time.Now().After(deadline) {
			return nil, 0, 0, fmt.Errorf("no pod create succeeded %s after kubemacpool started; the last refusal: %w", readyTimeout, refused)
		}
		select {
		case <-b.ctx.Done():
			return nil, 0, 0, b.ctx.Err()
		case <-time.After(createRetry):
		}
	}
}

// macBlockUpdates times the API call behind every admission batch the
// webhook writes, a MACBlock update adding entries, alone (kubemacpool is
// stopped): the floor under the added admission latency. Each update adds
// one entry to the block it read last, carrying its resourceVersion as
// kubemacpool does; a full block gives way to the next, created untimed,
// so the updates see every size a block goes through.
func (b *bench) macBlockUpdates() error {
	say("%d sequential MACBlock updates, without kubemacpool", b.o.seq)
	latencies := make([]time.Duration, 0, b.o.seq)
	var block *v1alpha1.MACBlock
	for i := range b.o.seq {
		m := directMAC + mac.MAC(i)
		if ledger.Offset(m) == 0 {
			block = ledger.NewBlock(m)
			if err := b.c.Create(b.ctx, block); err != nil {
				return fmt.Errorf("creating MACBlock %s: %w", block.Name, err)
			}
		}
		ledger.Put(block, v1alpha1.MACBlockEntry{
			Offset:   ledger.Offset(m),
			MAC:      m.String(),
			Owner:    v1alpha1.Owner{Kind: "Pod", Namespace: "bench-direct", Name: fmt.Sprintf("pod-%d", i)},
			Network:  "bench-direct/net-a",
			Reserved: metav1.NowMicro(),
		})
		// Update writes the stored block back, with the resourceVersion
		// the next update must carry.
		start := time.Now()
		if err := b.c.Update(b.ctx, block); err != nil {
			return fmt.Errorf("updating MACBlock %s: %w", block.Name, err)
		}
		latencies = append(latencies, time.Since(start))
	}
	s, p := summarize(latencies, 0), b.plainCreate
	b.table.add("MACBlock update, direct (one per admission batch): p50 / p99",
		fmt.Sprintf("%s / %s vs %s / %s for a pod create without the webhook = %s / %s", ms(s.p50), ms(s.p99), ms(p.p50), ms(p.p99), percent(s.p50, p.p50), percent(s.p99, p.p99)), "")
	if err := b.c.DeleteAllOf(b.ctx, &v1alpha1.MACBlock{}); err != nil {
		return fmt.Errorf("deleting MACBlocks: %w", err)
	}
	return nil
}

// clearEarlierObjects deletes the pods, VMs and MACBlocks of the load
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
	if err := b.c.DeleteAllOf(b.ctx, &v1alpha1.MACBlock{}); err != nil {
		return fmt.Errorf("deleting MACBlocks: %w", err)
	}
	return nil
}

// fill creates the pods and VMs that carry MACs without kubemacpool, each
// with its own MAC, and returns the MACs that must be adopted and how long
// the creates took.
func (b *bench) fill(ns string) (map[mac.MAC]bool, time.Duration, error) {
	expected := make(map[mac.MAC]bool, b.o.pods*b.o.podMACs+b.o.vms)
	podMACs := func(i int) []mac.MAC {
		out := make([]mac.MAC, b.o.podMACs)
		for k := range out {
			out[k] = firstMAC + mac.MAC(i*b.o.podMACs+k)
		}
		return out
	}
	vmMAC := func(i int) mac.MAC { return firstMAC + mac.MAC(b.o.pods*b.o.podMACs+i) }
	for i := range b.o.pods {
		for _, m := range podMACs(i) {
			expected[m] = true
		}
	}
	for i := range b.o.vms {
		expected[vmMAC(i)] = true
	}

	say("creating %d pods and %d VMs carrying MACs, without kubemacpool", b.o.pods, b.o.vms)
	_, podsTook, err := concurrent(b.ctx, b.c, b.o.pods, b.o.workers, func(i int) client.Object {
		return podWithMACs(ns, fmt.Sprintf("pod-%d", i), podMACs(i))
	})
	if err != nil {
		return nil, 0, err
	}
	_, vmsTook, err := concurrent(b.ctx, b.c, b.o.vms, b.o.workers, func(i int) client.Object {
		return vmWithMAC(ns, fmt.Sprintf("vm-%d", i), vmMAC(i))
	})
	if err != nil {
		return nil, 0, err
	}
	return expected, podsTook + vmsTook, nil
}

// waitRepaired follows the ledger until each expected MAC has an entry
// (looking every repairPoll), and returns the time since kubemacpool
// started.
func (b *bench) waitRepaired(ctx context.Context, expected map[mac.MAC]bool) (time.Duration, error) {
	deadline := b.kmp.Started().Add(repairTimeout)
	lastReport := time.Now()
	held, err := b.watchHeld(ctx, expected)
	if err != nil {
		return 0, err
	}
	for {
		n := held()
		if n == len(expected) {
			return time.Since(b.kmp.Started()), nil
		}
		if err := b.kmp.Alive(); err != nil {
			return 0, err
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("only %d of %d MACs adopted %s after kubemacpool started", n, len(expected), repairTimeout)
		}
		if time.Since(lastReport) > 10*time.Second {
			say("%d of %d MACs adopted after %s", n, len(expected), seconds(time.Since(b.kmp.Started())))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(repairPoll):
		}
	}
}

// watchHeld follows the ledger through the bench's watch until ctx ends,
// and returns a count of the expected MACs that have an entry in some
// block. A watch, not a LIST of the whole ledger each poll: at 100,000
// entries those LISTs (25 MB of JSON four times a second) took the API
// server's CPU from the adoption being measured.
func (b *bench) watchHeld(ctx context.Context, expected map[mac.MAC]bool) (held func() int, err error) {
	informer, err := b.view.GetInformer(ctx, &v1alpha1.MACBlock{})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	perBlock := map[string]int{} // expected MACs with an entry, by block
	total := 0
	count := func(obj any, gone bool) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		block, ok := obj.(*v1alpha1.MACBlock)
		if !ok {
			return
		}
		n := 0
		if !gone {
			eachEntry([]v1alpha1.MACBlock{*block}, func(m mac.MAC, _ *v1alpha1.MACBlockEntry) {
				if expected[m] {
					n++
				}
			})
		}
		mu.Lock()
		defer mu.Unlock()
		total += n - perBlock[block.Name]
		perBlock[block.Name] = n
	}
	reg, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { count(obj, false) },
		UpdateFunc: func(_, obj any) { count(obj, false) },
		DeleteFunc: func(obj any) { count(obj, true) },
	})
	if err != nil {
		return nil, err
	}
	go func() {
		<-ctx.Done()
		_ = informer.RemoveEventHandler(reg)
	}()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return total
	}, nil
}

// errWebhookStillCalled is returned when the API server keeps calling the
// removed webhook configuration.
var errWebhookStillCalled = errors.New("the API server still calls kubemacpool's webhook 30 s after its configuration was deleted")

// errWebhookNotCalled is returned when the API server does not call the
// restored webhook configuration.
var errWebhookNotCalled = errors.New("the API server still admits pods without kubemacpool (stopped) 30 s after its webhook configuration was restored")

const webhookConfiguration = "kubemacpool-mutator"

// removeWebhook deletes kubemacpool's webhook configuration and waits until
// the API server stops calling it (a dry-run create succeeds while
// kubemacpool is stopped), so the objects created next predate kubemacpool
// as far as it can tell. It returns the configuration, for restoreWebhook:
// kubemacpool does not write it when serving certificates from files.
func (b *bench) removeWebhook(namespace string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := b.c.Get(b.ctx, client.ObjectKey{Name: webhookConfiguration}, mwc); err != nil {
		return nil, fmt.Errorf("reading the webhook configuration: %w", err)
	}
	if err := b.c.Delete(b.ctx, mwc); err != nil {
		return nil, fmt.Errorf("deleting the webhook configuration: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := b.c.Create(b.ctx, twoNetworkPod(namespace, "probe"), client.DryRunAll); err == nil {
			return mwc, nil
		}
		select {
		case <-b.ctx.Done():
			return nil, b.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, errWebhookStillCalled
}

// restoreWebhook puts back the configuration removeWebhook deleted and
// waits until the API server calls kubemacpool's webhook again, so the
// start after it is measured with the webhook in the path, as in a
// cluster. kubemacpool is stopped: a dry-run create is refused once the
// API server calls the webhook (failurePolicy Fail).
func (b *bench) restoreWebhook(saved *admissionregistrationv1.MutatingWebhookConfiguration, namespace string) error {
	say("restoring kubemacpool's webhook configuration")
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: saved.Name, Labels: saved.Labels, Annotations: saved.Annotations},
		Webhooks:   saved.Webhooks,
	}
	if err := b.c.Create(b.ctx, mwc); err != nil {
		return fmt.Errorf("restoring the webhook configuration: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		probe := twoNetworkPod(namespace, "probe")
		if err := b.c.Create(b.ctx, probe, client.DryRunAll); err != nil {
			return nil
		}
		select {
		case <-b.ctx.Done():
			return b.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errWebhookNotCalled
}

// restartTarget is the first good create's target after a restart with
// held MACs in the ledger: 1 s at 20,000 (the stock issue's), 2 s at
// 100,000 (the scale issue's).
func restartTarget(held int) string {
	if held <= 20000 {
		return "≤ 1 s"
	}
	return "≤ 2 s"
}
