package integration

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/controller/legacy"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// Replacing upstream kubemacpool (docs/upgrade-from-upstream.md): what
// upstream left (its range ConfigMap keys, its namespace labels, pods and
// VMs carrying the MACs it gave, its VM finalizer) works as it is.
func TestUpgradeFromUpstream(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	// Upstream's keys.
	setRange(t, map[string]string{"RANGE_START": "02:fe:00:00:00:00", "RANGE_END": "02:fe:00:00:00:ff"})
	// What upstream handed out, created while no kubemacpool runs (its
	// namespaces are skipped by the webhook so they can be created).
	before := newNamespace(t, map[string]string{scope.PodsLabel: "ignore", scope.VirtualMachinesLabel: "ignore"})
	p := createPod(t, pod(before, "from-upstream", `[{"name":"br1","mac":"02:fe:00:00:00:10"}]`))
	vm := newVM(before, "from-upstream", iface{"br1", "bridge", "br1", "02:fe:00:00:00:11"})
	vm.Finalizers = []string{legacy.Finalizer}
	g.Expect(env.Client.Create(ctx, vm)).To(Succeed())
	g.Expect(env.Client.Delete(ctx, vm)).To(Succeed()) // stuck on upstream's finalizer

	startManager(t, testOptions(t))
	// Upstream's label: allocate.
	served := newNamespace(t, map[string]string{scope.PodsLabel: scope.Allocate})
	fresh := createPod(t, pod(served, "after", `[{"name":"br1"}]`))
	m := macsOf(t, fresh)[0]
	g.Expect(m.String()).To(HavePrefix("02:fe:00:00:00:"), "the range from upstream's keys")
	g.Expect(m.String()).NotTo(Equal("02:fe:00:00:00:10"))
	// The pod's MAC is adopted and refused to others.
	expectBound(t, mustMAC("02:fe:00:00:00:10"), p)
	err := env.Client.Create(ctx, pod(served, "thief", `[{"name":"br1","mac":"02:fe:00:00:00:10"}]`))
	g.Expect(err).To(MatchError(ContainSubstring("already in use by Pod " + before + "/from-upstream")))
	// The VM stuck on upstream's finalizer goes.
	g.Eventually(func() bool {
		return apierrors.IsNotFound(env.Client.Get(ctx, client.ObjectKeyFromObject(vm), &kubevirtv1.VirtualMachine{}))
	}).WithTimeout(20 * time.Second).Should(BeTrue())
}
