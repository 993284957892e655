// Package webhook holds the admission handlers that write MACs into objects
// as the API server creates them.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// PodPath is where the API server sends pod admission reviews.
const PodPath = "/mutate-pods"

// VirtLauncherLabel marks the pods KubeVirt runs VMs in. Their MACs come from
// the VM, so the pod webhook must not add more.
const VirtLauncherLabel = "kubevirt.io"

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
	if pod.Metadata.Labels[VirtLauncherLabel] == "virt-launcher" {
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
		return admission.Denied("kubemacpool: " + err.Error())
	}
	owner := v1alpha1.Owner{
		APIVersion:   "v1",
		Kind:         "Pod",
		Namespace:    req.Namespace,
		Name:         pod.Metadata.Name,
		GenerateName: pod.Metadata.GenerateName,
	}
	dryRun := req.DryRun != nil && *req.DryRun
	macs, err := h.assign(ctx, elems, owner, dryRun)
	if err != nil {
		return refusal(err)
	}
	updated, err := multus.Format(elems)
	if err != nil {
		h.releaseAll(ctx, macs, dryRun)
		return admission.Errored(http.StatusInternalServerError, err)
	}
	h.Log.V(1).Info("assigned MACs", "namespace", req.Namespace, "pod", podName(owner), "macs", macs, "dryRun", dryRun)
	if dryRun {
		h.releaseAll(ctx, macs, dryRun)
	}
	// Only the annotation changes: other webhooks may have written other
	// annotations, and a patch of the whole map would clobber them.
	return admission.Patched("MACs assigned", jsonpatch.Operation{
		Operation: "replace",
		Path:      "/metadata/annotations/" + escapePointer(multus.NetworksAnnotation),
		Value:     updated,
	})
}

// assign reserves a MAC for every element: the one the user wrote, or a
// free one from the pool. On any refusal, what this request reserved is
// released again so nothing is held for a pod that will not exist.
func (h *PodMutator) assign(ctx context.Context, elems []multus.Element, owner v1alpha1.Owner, dryRun bool) ([]mac.MAC, error) {
	var taken []mac.MAC
	fail := func(err error) ([]mac.MAC, error) {
		h.releaseAll(ctx, taken, dryRun)
		return nil, err
	}
	// Explicit MACs first, so a refused one costs no pool allocation.
	for i := range elems {
		e := &elems[i]
		if e.MAC() == "" {
			continue
		}
		m, err := mac.Parse(e.MAC())
		if err != nil {
			return fail(&invalidError{fmt.Sprintf("network %s: %v", e.NetworkKey(), err)})
		}
		if m.IsMulticast() {
			return fail(&invalidError{fmt.Sprintf("network %s: MAC address %s is a multicast address (lowest bit of the first octet set) and cannot be given to an interface; choose a unicast MAC", e.NetworkKey(), m)})
		}
		for _, t := range taken {
			if t == m {
				return fail(&invalidError{fmt.Sprintf("MAC address %s is asked for by two networks of the same pod; every interface needs its own MAC", m)})
			}
		}
		r := pool.Request{Owner: owner, Network: e.NetworkKey(), Interface: e.Interface(), DryRun: dryRun}
		if err := h.Pool.Claim(ctx, m, r); err != nil {
			return fail(err)
		}
		taken = append(taken, m)
		e.SetMAC(m.String())
	}
	for i := range elems {
		e := &elems[i]
		if e.MAC() != "" {
			continue
		}
		r := pool.Request{Owner: owner, Network: e.NetworkKey(), Interface: e.Interface(), DryRun: dryRun}
		m, err := h.Pool.Allocate(ctx, r)
		if err != nil {
			return fail(err)
		}
		taken = append(taken, m)
		e.SetMAC(m.String())
	}
	return taken, nil
}

// releaseAll gives back what a request took: reservations are deleted,
// dry-run picks only unmarked in memory. A failed delete is logged and left
// to the reservation expiry, which exists for exactly this.
func (h *PodMutator) releaseAll(ctx context.Context, macs []mac.MAC, dryRun bool) {
	for _, m := range macs {
		if dryRun {
			h.Pool.Unmark(m)
			continue
		}
		if err := h.Pool.Release(ctx, m); err != nil {
			h.Log.Error(err, "releasing a reservation of a refused request; it expires after the grace period", "mac", m.String())
		}
	}
}

// invalidError is a refusal caused by what the user wrote.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

// refusal turns an assignment error into the answer the user sees.
func refusal(err error) admission.Response {
	var held *pool.HeldError
	var exhausted *pool.ExhaustedError
	var invalid *invalidError
	switch {
	case errors.As(err, &held), errors.As(err, &exhausted), errors.As(err, &invalid):
		return admission.Denied("kubemacpool: " + err.Error())
	case errors.Is(err, pool.ErrNotReady):
		return admission.Errored(http.StatusServiceUnavailable, err)
	default:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("kubemacpool: %w", err))
	}
}

func podName(o v1alpha1.Owner) string {
	if o.Name != "" {
		return o.Name
	}
	return o.GenerateName + "*"
}

// escapePointer escapes a map key for use in a JSON pointer (RFC 6901).
func escapePointer(key string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}
