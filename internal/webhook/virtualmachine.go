package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// VirtualMachinePath is where the API server sends VirtualMachine and
// VirtualMachineInstance admission reviews.
const VirtualMachinePath = "/mutate-virtualmachines"

// VMMutator writes MACs into the interfaces of KubeVirt VirtualMachines (on
// create and update) and of VirtualMachineInstances created directly.
// The MAC lives in the spec, so it survives restarts and migrations.
type VMMutator struct {
	Pool       *pool.Pool
	Namespaces client.Reader
	Scope      scope.Scope
	// Live reads the VM a VMI claims to come from: a cache that lags would
	// judge a just-created VM missing.
	Live client.Reader
	// MaxInterfaces is the most managed interfaces one VM or VMI may get
	// MACs for.
	MaxInterfaces int
	Log           logr.Logger
	Recorder      events.EventRecorder
}

// Handle answers one admission review.
func (h *VMMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	// Namespaces kubemacpool does not manage get nothing from it: no
	// limits, no reads.
	switch req.Resource.Resource {
	case "virtualmachines", "virtualmachineinstances":
		inScope, err := h.Scope.ManagesName(ctx, h.Namespaces, h.Live, req.Namespace)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if !inScope {
			return admission.Allowed("namespace not managed by kubemacpool")
		}
	}
	var (
		spec, oldSpec *kubevirtv1.VirtualMachineInstanceSpec
		meta          metav1.ObjectMeta
		basePath      string
		kind          string
		existing      *kubevirtv1.VirtualMachine // the stored VM, on updates
		receiver      bool                       // a VM waiting to receive a migration
		leaving       *kubevirtv1.VirtualMachine // a receiver leaving WaitAsReceiver
	)
	switch req.Resource.Resource {
	case "virtualmachines":
		vm := &kubevirtv1.VirtualMachine{}
		if err := json.Unmarshal(req.Object.Raw, vm); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding VirtualMachine: %w", err))
		}
		spec, meta, kind = kubevirt.VMSpec(vm), vm.ObjectMeta, "VirtualMachine"
		receiver = kubevirt.IsMigrationReceiver(vm)
		basePath = "/spec/template/spec/domain/devices/interfaces"
		if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
			existing = vm
			old := &kubevirtv1.VirtualMachine{}
			if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
				return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the old VirtualMachine: %w", err))
			}
			oldSpec = kubevirt.VMSpec(old)
			if kubevirt.IsMigrationReceiver(old) && !receiver {
				leaving = vm
			}
		}
	case "virtualmachineinstances":
		if req.Operation != admissionv1.Create {
			return admission.Allowed("VirtualMachineInstance MACs are assigned at creation")
		}
		vmi := &kubevirtv1.VirtualMachineInstance{}
		if err := json.Unmarshal(req.Object.Raw, vmi); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding VirtualMachineInstance: %w", err))
		}
		if ref, ok := kubevirt.ControllingVM(vmi); ok {
			why, err := h.notFromVM(ctx, vmi, ref)
			if err != nil {
				return admission.Errored(http.StatusInternalServerError, err)
			}
			if why == "" {
				return admission.Allowed("the MACs of a VM's instance come from the VM")
			}
			// An owner reference is only a claim: judged as a VMI of its
			// own, it gets the refusals any object gets.
			h.Log.Info("VirtualMachineInstance judged on its own: its VirtualMachine reference does not hold",
				"namespace", req.Namespace, "name", vmi.Name, "reason", why)
		}
		spec, meta, kind = &vmi.Spec, vmi.ObjectMeta, "VirtualMachineInstance"
		basePath = "/spec/domain/devices/interfaces"
	default:
		return admission.Allowed("not a KubeVirt resource kubemacpool handles")
	}

	managed := kubevirt.ManagedInterfaces(spec)
	if len(managed) == 0 {
		return admission.Allowed("no interface that needs a MAC")
	}
	if refused := tooMany(len(managed), "interfaces that get MACs", h.MaxInterfaces, req.DryRun); refused != nil {
		return *refused
	}

	for _, m := range managed {
		if parsed, err := mac.Parse(m.MAC); err == nil && parsed == mac.KubeVirtInPodBridge && m.Masquerade {
			return admission.Denied(fmt.Sprintf("kubemacpool: interface %s: The requested MAC address is reserved for the in-pod bridge "+
				"(KubeVirt keeps %s for it on the masqueraded pod network); choose another MAC or leave it out to get one assigned", m.Interface, parsed))
		}
	}
	if leaving != nil {
		refused, err := h.leaveWaiting(ctx, leaving, managed)
		switch {
		case err != nil:
			return admission.Errored(http.StatusInternalServerError, err)
		case refused != nil:
			return *refused
		}
	}
	slots := vmSlots(managed, kubevirt.ManagedInterfaces(oldSpec))
	a := &assigner{
		pool: h.Pool, log: h.Log, dryRun: req.DryRun != nil && *req.DryRun, receiver: receiver,
		create: req.Operation == admissionv1.Create,
		owner: v1alpha1.Owner{
			Kind: kind, Namespace: req.Namespace,
			Name: meta.Name, GenerateName: meta.GenerateName, UID: meta.UID,
		},
	}
	macs, err := a.assign(ctx, slots)
	if err != nil {
		// An update is refused on an object that exists: leave an event on
		// it too, for whoever looks at the VM rather than at the client
		// that sent the update (a GitOps controller, say).
		if existing != nil && h.Recorder != nil && !a.dryRun {
			h.Recorder.Eventf(existing, nil, corev1.EventTypeWarning, "MACAllocationRefused", "Allocate",
				"update refused by kubemacpool: %v", err)
		}
		return refusal(err)
	}
	a.done()

	var patches []jsonpatch.Operation
	for i, m := range managed {
		if m.MAC == macs[i].String() {
			continue
		}
		patches = append(patches, jsonpatch.Operation{
			Operation: "add", // sets the field whether or not it is there
			Path:      fmt.Sprintf("%s/%d/macAddress", basePath, m.Index),
			Value:     macs[i].String(),
		})
	}
	if len(patches) == 0 {
		return admission.Allowed("every interface already has its MAC")
	}
	h.Log.V(1).Info("assigned MACs", "kind", kind, "namespace", req.Namespace, "name", a.owner.DisplayName(), "macs", macs, "dryRun", a.dryRun)
	return admission.Patched("MACs assigned", patches...)
}

// notFromVM checks a VMI's claim to come from the VM ref names: the VM
// exists with that UID, the VMI bears its name, and every MAC of the VMI's managed interfaces is
// the VM's (in its template, or held for it in the ledger: a template just
// edited still holds the MACs it had). It returns why the claim fails, or
// "" when it holds.
func (h *VMMutator) notFromVM(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, ref metav1.OwnerReference) (string, error) {
	vm := &kubevirtv1.VirtualMachine{}
	err := h.Live.Get(ctx, client.ObjectKey{Namespace: vmi.Namespace, Name: ref.Name}, vm)
	switch {
	case apierrors.IsNotFound(err) || apimeta.IsNoMatchError(err):
		return fmt.Sprintf("VirtualMachine %s/%s does not exist", vmi.Namespace, ref.Name), nil
	case err != nil:
		return "", fmt.Errorf("reading VirtualMachine %s/%s: %w", vmi.Namespace, ref.Name, err)
	case vm.UID != ref.UID:
		return fmt.Sprintf("VirtualMachine %s/%s has UID %s, not %s", vmi.Namespace, ref.Name, vm.UID, ref.UID), nil
	case vmi.Name != vm.Name:
		// KubeVirt names a VM's instance after the VM: a second VMI with
		// the VM's MACs would be a duplicate the repair cannot see.
		return fmt.Sprintf("a VirtualMachine's instance is named after it (%s), not %s", vm.Name, vmi.Name), nil
	}
	own := map[mac.MAC]bool{}
	for _, m := range kubevirt.ManagedInterfaces(kubevirt.VMSpec(vm)) {
		if parsed, err := mac.Parse(m.MAC); err == nil {
			own[parsed] = true
		}
	}
	vmRef := carriers.Ref{Kind: carriers.VirtualMachine, Namespace: vm.Namespace, Name: vm.Name, UID: vm.UID}
	for _, m := range kubevirt.ManagedInterfaces(&vmi.Spec) {
		if m.MAC == "" {
			continue
		}
		parsed, err := mac.Parse(m.MAC)
		if err != nil {
			return fmt.Sprintf("MAC %s of interface %s is not a MAC", m.MAC, m.Interface), nil
		}
		if own[parsed] {
			continue
		}
		// Not in the template: the VM's only if the ledger holds it for
		// the VM now (a template just edited), read past the index, which
		// may not have seen it released and taken since.
		e, err := ledger.ReadEntry(ctx, h.Live, parsed)
		if err != nil {
			return "", err
		}
		if e == nil || !holders.OwnerIs(e.Owner, vmRef) {
			return fmt.Sprintf("MAC %s of interface %s is not a MAC of VirtualMachine %s/%s", m.MAC, m.Interface, vm.Namespace, vm.Name), nil
		}
	}
	return "", nil
}

// leaveWaiting judges a VM that leaves WaitAsReceiver, about to run: every
// MAC it carries that another VM holds must come from a decentralized live
// migration from that VM that succeeded (the holders' rule, with the
// pairing found live). It returns the refusal, or nil to go on.
func (h *VMMutator) leaveWaiting(ctx context.Context, vm *kubevirtv1.VirtualMachine, managed []kubevirt.Managed) (*admission.Response, error) {
	self := v1alpha1.Owner{Kind: carriers.VirtualMachine, Namespace: vm.Namespace, Name: vm.Name, UID: vm.UID}
	for _, m := range managed {
		parsed, err := mac.Parse(m.MAC)
		if err != nil {
			continue // not a MAC: nothing held by anyone
		}
		refusal, err := unpaired(ctx, h.Live, self, vm.Name, parsed, true)
		if err != nil {
			return nil, err
		}
		if refusal != nil {
			r := admission.Denied(fmt.Sprintf("kubemacpool: VirtualMachine %s/%s may not leave runStrategy WaitAsReceiver: interface %s: %v; "+
				"a migration receiver runs with its source's MACs only once a decentralized live migration from that VM succeeded "+
				"(VirtualMachineInstanceMigrations with one migrationID: spec.receive here, spec.sendTo beside the source)",
				vm.Namespace, vm.Name, m.Interface, refusal))
			return &r, nil
		}
	}
	return nil, nil
}

// unpaired asks the holders' rule whether self, a VM whose instance is
// named vmi, may run on m, with m's entry read live and, when another VM
// holds it, the decentralized live migration that pairs the two (that
// succeeded, with succeeded) found live. It returns the refusal, or nil.
func unpaired(ctx context.Context, live client.Reader, self v1alpha1.Owner, vmi string, m mac.MAC, succeeded bool) (refusal, err error) {
	req := holders.Request{Owner: self}
	e, err := ledger.ReadEntry(ctx, live, m)
	if err != nil {
		return nil, err
	}
	if e != nil && e.Owner.Kind == carriers.VirtualMachine && !holders.SameOwner(e.Owner, self) {
		paired, err := kubevirt.Paired(ctx, live, kubevirt.Migration{
			ReceiverNamespace: self.Namespace, ReceiverVMI: vmi,
			SourceNamespace: e.Owner.Namespace, SourceVMI: e.Owner.Name, Succeeded: succeeded,
		})
		if err != nil {
			return nil, err
		}
		if paired {
			req.PairedWith = []carriers.Ref{{Kind: e.Owner.Kind, Namespace: e.Owner.Namespace, Name: e.Owner.Name, UID: e.Owner.UID}}
		}
	}
	return holders.MayTake(req, holders.Facts{MAC: m, Entry: e}).Err(m), nil
}

// vmSlots turns managed interfaces into slots. On an update, an interface
// that omits its MAC keeps the one it had (a re-apply of a manifest without
// MACs must not renumber the VM), and MACs the VM already had need no new
// reservation.
func vmSlots(managed, old []kubevirt.Managed) []slot {
	oldByName := map[string]string{}
	oldMACs := map[mac.MAC]bool{}
	for _, o := range old {
		if m, err := mac.Parse(o.MAC); err == nil {
			oldByName[o.Interface] = m.String()
			oldMACs[m] = true
		}
	}
	slots := make([]slot, len(managed))
	for i, m := range managed {
		s := slot{Network: m.Network, Interface: m.Interface, Requested: strings.TrimSpace(m.MAC)}
		if s.Requested == "" {
			s.Requested = oldByName[m.Interface]
		}
		if parsed, err := mac.Parse(s.Requested); err == nil && oldMACs[parsed] {
			s.Held = true
		}
		slots[i] = s
	}
	return slots
}
