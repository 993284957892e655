// Package webhook holds the admission handlers that write MACs into objects
// as the API server creates them.
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// PodPath is where the API server sends pod admission reviews.
const PodPath = "/mutate-pods"

// PodMutator gives every network of a pod's Multus annotation a MAC.
type PodMutator struct {
	Pool       *pool.Pool
	Namespaces client.Reader // a cached reader, for namespace labels
	Scope      scope.Scope
	Log        logr.Logger
}

// podMeta is all of a pod the mutator reads; decoding only the metadata
// keeps admission cheap and never round-trips fields we do not own.
type podMeta struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
}

// Handle answers one admission review.
func (h *PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create {
		return admission.Allowed("kubemacpool only assigns MACs when pods are created")
	}
	var pod podMeta
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err))
	}
	value, ok := pod.Metadata.Annotations[multus.NetworksAnnotation]
	if !ok || strings.TrimSpace(value) == "" {
		return admission.Allowed("no secondary networks")
	}
	managed, err := h.Scope.ManagesName(ctx, h.Namespaces, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !managed {
		return admission.Allowed("namespace not managed by kubemacpool")
	}
	if vmi, ok := kubevirt.LauncherOf(&pod.Metadata); ok {
		return h.checkLauncher(ctx, req, vmi, value)
	}

	elems, err := multus.Parse(value, req.Namespace)
	if err != nil {
		if req.DryRun == nil || !*req.DryRun {
			metrics.Allocations.WithLabelValues(metrics.OutcomeRefusedInvalid).Inc()
		}
		return admission.Denied("kubemacpool: " + err.Error())
	}
	owner := v1alpha1.Owner{
		APIVersion:   "v1",
		Kind:         "Pod",
		Namespace:    req.Namespace,
		Name:         pod.Metadata.Name,
		GenerateName: pod.Metadata.GenerateName,
	}
	a := &assigner{pool: h.Pool, log: h.Log, owner: owner, dryRun: req.DryRun != nil && *req.DryRun}
	slots := make([]slot, len(elems))
	for i, e := range elems {
		slots[i] = slot{Network: e.NetworkKey(), Interface: e.Interface(), Requested: e.MAC()}
	}
	macs, err := a.assign(ctx, slots)
	if err != nil {
		return refusal(err)
	}
	for i := range elems {
		elems[i].SetMAC(macs[i].String())
	}
	updated, err := multus.Format(elems)
	if err != nil {
		a.release(ctx)
		return admission.Errored(http.StatusInternalServerError, err)
	}
	a.done()
	h.Log.V(1).Info("assigned MACs", "namespace", req.Namespace, "pod", owner.DisplayName(), "macs", macs, "dryRun", a.dryRun)
	// Only the annotation changes: other webhooks may have written other
	// annotations, and a patch of the whole map would clobber them.
	return admission.Patched("MACs assigned", jsonpatch.Operation{
		Operation: "replace",
		Path:      "/metadata/annotations/" + escapePointer(multus.NetworksAnnotation),
		Value:     updated,
	})
}

// checkLauncher admits a virt-launcher pod, which carries the MACs of its
// VMI and gets none of its own, after checking that each MAC it carries is
// free or held for that VMI (or its VM, which has the same name): a pod
// that merely claims to be a launcher cannot take somebody else's MAC.
func (h *PodMutator) checkLauncher(ctx context.Context, req admission.Request, vmi, networks string) admission.Response {
	elems, err := multus.Parse(networks, req.Namespace)
	if err != nil {
		return admission.Denied("kubemacpool: " + err.Error())
	}
	for _, e := range elems {
		if e.MAC() == "" {
			continue
		}
		m, err := mac.Parse(e.MAC())
		if err != nil {
			return admission.Denied(fmt.Sprintf("kubemacpool: network %s: %v", e.NetworkKey(), err))
		}
		holder, err := h.Pool.Holder(ctx, m)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if holder == nil {
			continue
		}
		o := holder.Spec.Owner
		if o.Namespace == req.Namespace && o.Name == vmi && (o.Kind == "VirtualMachineInstance" || o.Kind == "VirtualMachine") {
			continue
		}
		return refusal(&pool.HeldError{MAC: m, Holder: *holder})
	}
	return admission.Allowed("virt-launcher pods carry the MACs of their VMI")
}
