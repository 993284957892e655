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
	if kubevirt.IsVirtLauncher(pod.Metadata.Labels) {
		return admission.Allowed("virt-launcher pods carry the MACs of their VM")
	}
	managed, err := h.Scope.ManagesName(ctx, h.Namespaces, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !managed {
		return admission.Allowed("namespace not managed by kubemacpool")
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
