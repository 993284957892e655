package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

const protectionName = "kubemacpool-protect-macblocks"

// A MACBlock holding entries cannot be deleted while the policy shipped in
// config/default is bound: its entries are the only record of MACs held
// but not carried (a StatefulSet's pod that is away, a reservation in
// flight), which the repair could never adopt back. Empty blocks, the only
// ones kubemacpool deletes, go as before; deleting the binding, as the
// README tells an admin who means to drop the ledger, lets every delete
// through. Its own control plane: the policy is cluster-wide, and a
// collection delete would reach other tests' blocks.
func TestProtectMACBlocks(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	e := ownControlPlane(t, testenv.Options{WithoutWebhooks: true})

	held := []*v1alpha1.MACBlock{heldBlock("02:00:00:00:01:05"), heldBlock("02:00:00:00:02:07", "02:00:00:00:02:3f")}
	empty := []*v1alpha1.MACBlock{ledger.NewBlock(mustMAC("02:00:00:00:00:00")), ledger.NewBlock(mustMAC("02:00:00:00:03:00")), ledger.NewBlock(mustMAC("02:00:00:00:04:00"))}
	for _, b := range append(append([]*v1alpha1.MACBlock{}, held...), empty...) {
		g.Expect(e.Client.Create(ctx, b)).To(Succeed())
	}

	// The policy and its binding exactly as config/default renders them
	// (and config/release/kubemacpool.yaml ships them).
	rendered := objectsOf(t, kustomize(t, "config/default"))
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	fromObject(t, rendered["admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy /"+protectionName], policy)
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	fromObject(t, rendered["admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding /"+protectionName], binding)
	g.Expect(e.Client.Create(ctx, policy)).To(Succeed())
	g.Expect(e.Client.Create(ctx, binding)).To(Succeed())

	// The API server's policy informer picks the binding up a moment after
	// it is created: wait with dry-run deletes, which are admitted like
	// real ones and delete nothing.
	refusal := func(b *v1alpha1.MACBlock) error {
		return e.Client.Delete(ctx, b.DeepCopy(), client.DryRunAll)
	}
	g.Eventually(func() error { return refusal(held[0]) }).WithTimeout(30 * time.Second).ShouldNot(Succeed())

	// Refused, saying what is wrong and what to do.
	err := e.Client.Delete(ctx, held[0].DeepCopy())
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "deleting a block that holds entries: %v", err)
	g.Expect(err.Error()).To(And(
		ContainSubstring("MACBlock 02-00-00-00-01-00 still holds 1 entry: deleting it would free MACs that objects hold"),
		ContainSubstring("kubemacpool deletes empty blocks itself"),
		ContainSubstring("delete the ValidatingAdmissionPolicyBinding kubemacpool-protect-macblocks first")))
	err = e.Client.Delete(ctx, held[1].DeepCopy())
	g.Expect(err).To(MatchError(ContainSubstring("MACBlock 02-00-00-00-02-00 still holds 2 entries")))

	// An empty block goes, with the preconditions kubemacpool's repair
	// deletes with.
	fresh := &v1alpha1.MACBlock{}
	g.Expect(e.Client.Get(ctx, client.ObjectKeyFromObject(empty[0]), fresh)).To(Succeed())
	g.Expect(e.Client.Delete(ctx, fresh, client.Preconditions{UID: &fresh.UID, ResourceVersion: &fresh.ResourceVersion})).To(Succeed())

	// A collection delete is admitted block by block, and stops at the
	// first block that holds entries (those after it stay, empty or not).
	err = e.Client.DeleteAllOf(ctx, &v1alpha1.MACBlock{})
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "deleting every block at once: %v", err)
	g.Expect(err.Error()).To(ContainSubstring("still holds"))
	g.Expect(blockNames(g, e)).To(ContainElements(held[0].Name, held[1].Name))

	// kubectl delete --all deletes one by one: every empty block goes, each
	// block holding entries is refused with the message.
	g.Expect(e.Client.Create(ctx, ledger.NewBlock(mustMAC("02:00:00:00:05:00")))).To(Succeed())
	out, err := exec.Command("kubectl", "--kubeconfig", kubeconfigFor(t, e), "delete", "macblocks", "--all").CombinedOutput()
	g.Expect(err).To(HaveOccurred(), "kubectl delete macblocks --all:\n%s", out)
	g.Expect(string(out)).To(And(
		ContainSubstring(`macblock.kubemacpool.io "02-00-00-00-05-00" deleted`),
		ContainSubstring("MACBlock 02-00-00-00-01-00 still holds 1 entry"),
		ContainSubstring("MACBlock 02-00-00-00-02-00 still holds 2 entries")))
	expectBlocks(g, e, held...)

	// What the README tells an admin who really means to drop the ledger:
	// delete the binding, then the blocks.
	g.Expect(e.Client.Delete(ctx, binding)).To(Succeed())
	g.Eventually(func() error { return refusal(held[0]) }).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(e.Client.DeleteAllOf(ctx, &v1alpha1.MACBlock{})).To(Succeed())
	expectBlocks(g, e)

	// Deleting the CRD deletes every block, bound policy or not: the API
	// server removes a CRD's objects without admission. The README says so.
	binding.ResourceVersion = ""
	g.Expect(e.Client.Create(ctx, binding)).To(Succeed())
	last := heldBlock("02:00:00:00:07:01")
	g.Expect(e.Client.Create(ctx, last)).To(Succeed())
	g.Eventually(func() error { return refusal(last) }).WithTimeout(30 * time.Second).ShouldNot(Succeed())
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	crd.SetName("macblocks.kubemacpool.io")
	g.Expect(e.Client.Delete(ctx, crd)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(e.Client.Get(ctx, client.ObjectKeyFromObject(crd), crd))
	}).WithTimeout(30*time.Second).Should(BeTrue(), "the CRD is stuck deleting its blocks")
}

// heldBlock is the block of the first MAC, holding an entry for each MAC
// given (all in that block), as kubemacpool writes them for pods.
func heldBlock(macs ...string) *v1alpha1.MACBlock {
	b := ledger.NewBlock(mustMAC(macs[0]))
	for i, s := range macs {
		m := mustMAC(s)
		ledger.Put(b, v1alpha1.MACBlockEntry{
			Offset:   ledger.Offset(m),
			MAC:      m.String(),
			Owner:    v1alpha1.Owner{Kind: "Pod", Namespace: "default", Name: "web-" + strings.Repeat("x", i+1)},
			Network:  "default/ovs-conf",
			Reserved: metav1.NewMicroTime(time.Now()),
		})
	}
	return b
}

// expectBlocks checks that exactly the blocks given are stored.
func expectBlocks(g Gomega, e *testenv.Env, want ...*v1alpha1.MACBlock) {
	wantNames := []string{}
	for _, b := range want {
		wantNames = append(wantNames, b.Name)
	}
	g.Expect(blockNames(g, e)).To(ConsistOf(wantNames))
}

// blockNames lists the names of the stored blocks.
func blockNames(g Gomega, e *testenv.Env) []string {
	list := &v1alpha1.MACBlockList{}
	g.Expect(e.Client.List(context.Background(), list)).To(Succeed())
	names := []string{}
	for _, b := range list.Items {
		names = append(names, b.Name)
	}
	return names
}
