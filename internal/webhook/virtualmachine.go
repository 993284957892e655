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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
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
	Log        logr.Logger
	Recorder   events.EventRecorder
}

// Handle answers one admission review.
func (h *VMMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	var (
		spec, oldSpec *kubevirtv1.VirtualMachineInstanceSpec
		meta          metav1.ObjectMeta
		basePath      string
		kind          string
		existing      *kubevirtv1.VirtualMachine // the stored VM, on updates
	)
	switch req.Resource.Resource {
	case "virtualmachines":
		vm := &kubevirtv1.VirtualMachine{}
		if err := json.Unmarshal(req.Object.Raw, vm); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding VirtualMachine: %w", err))
		}
		spec, meta, kind = kubevirt.VMSpec(vm), vm.ObjectMeta, "VirtualMachine"
		basePath = "/spec/template/spec/domain/devices/interfaces"
		if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
			existing = vm
			old := &kubevirtv1.VirtualMachine{}
			if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
				return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the old VirtualMachine: %w", err))
			}
			oldSpec = kubevirt.VMSpec(old)
		}
	case "virtualmachineinstances":
		if req.Operation != admissionv1.Create {
			return admission.Allowed("VirtualMachineInstance MACs are assigned at creation")
		}
		vmi := &kubevirtv1.VirtualMachineInstance{}
		if err := json.Unmarshal(req.Object.Raw, vmi); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding VirtualMachineInstance: %w", err))
		}
		if kubevirt.OwnedByVM(vmi) {
			return admission.Allowed("the MACs of a VM's instance come from the VM")
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
	inScope, err := h.Scope.ManagesName(ctx, h.Namespaces, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !inScope {
		return admission.Allowed("namespace not managed by kubemacpool")
	}

	slots := vmSlots(managed, kubevirt.ManagedInterfaces(oldSpec))
	a := &assigner{
		pool: h.Pool, log: h.Log, dryRun: req.DryRun != nil && *req.DryRun,
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
