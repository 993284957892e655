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
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
	"github.com/kubemacpool/kubemacpool/internal/multus"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// PodPath is where the API server sends pod admission reviews.
const PodPath = "/mutate-pods"

// PodMutator gives every network of a pod's Multus annotation a MAC.
type PodMutator struct {
	Pool       *pool.Pool
	Namespaces client.Reader // a cached reader, for namespace labels
	Scope      scope.Scope
	// Ledger says which MACs a pod holds, for an edit of its networks.
	Ledger *ledger.Ledger
	// StatefulSets reads, from the cache, the StatefulSet a pod claims as
	// its controller: its pods keep their MACs (package sticky).
	StatefulSets client.Reader
	// Live reads what must not come from a lagging cache: the VMI a
	// virt-launcher pod claims to belong to, a StatefulSet the cache does
	// not know yet.
	Live client.Reader
	// MaxInterfaces is the most networks one pod may get MACs for.
	MaxInterfaces int
	Log           logr.Logger
}

// podMeta is all of a pod the mutator reads; decoding only the metadata
// keeps admission cheap and never round-trips fields we do not own.
type podMeta struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
}

// Handle answers one admission review. On CREATE every network without a
// MAC gets one. On UPDATE (the networks annotation edited, which the Multus
// dynamic networks controller turns into hot-plugged interfaces; through
// the status subresource too) networks the pod already had keep their
// MACs, even when the edit leaves them out, and added networks get MACs by
// the same rules as at creation: an edit can never put another object's
// MAC on a pod.
func (h *PodMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("kubemacpool assigns MACs when pods are created or their networks edited")
	}
	var pod podMeta
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding pod: %w", err))
	}
	value, ok := pod.Metadata.Annotations[multus.NetworksAnnotation]
	if !ok || strings.TrimSpace(value) == "" {
		return admission.Allowed("no secondary networks")
	}
	var oldValue string
	if req.Operation == admissionv1.Update {
		var old podMeta
		if err := json.Unmarshal(req.OldObject.Raw, &old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the stored pod: %w", err))
		}
		oldValue = old.Metadata.Annotations[multus.NetworksAnnotation]
		if oldValue == value {
			return admission.Allowed("secondary networks unchanged")
		}
	}
	managed, err := h.Scope.ManagesName(ctx, h.Namespaces, h.Live, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !managed {
		return admission.Allowed("namespace not managed by kubemacpool")
	}
	if ref, ok := kubevirt.LauncherOf(&pod.Metadata); ok {
		return h.checkLauncher(ctx, req, ref, value)
	}

	elems, err := multus.Parse(value, req.Namespace)
	if err != nil {
		if req.DryRun == nil || !*req.DryRun {
			metrics.Allocations.WithLabelValues(metrics.OutcomeRefusedInvalid).Inc()
		}
		return admission.Denied("kubemacpool: " + err.Error())
	}
	if refused := tooMany(len(elems), "networks", h.MaxInterfaces, req.DryRun); refused != nil {
		return *refused
	}
	// What the pod had stays its own; an unreadable old value had nothing.
	oldElems, _ := multus.Parse(oldValue, req.Namespace)
	owner := v1alpha1.Owner{
		Kind:         "Pod",
		Namespace:    req.Namespace,
		Name:         pod.Metadata.Name,
		GenerateName: pod.Metadata.GenerateName,
		UID:          pod.Metadata.UID,
	}
	// Held entries come from the index: one that lags only means a MAC is
	// not reused.
	var held, returning []ledger.Entry
	if claim, ok := sticky.ClaimOf(&pod.Metadata); ok {
		set, err := h.statefulSet(ctx, claim)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if o, ok := sticky.Owner(claim, set); ok {
			// A StatefulSet's pod: it gets back, per network and interface,
			// the MACs held for its name (those still usable: one excluded
			// or carried by another since is replaced, and its entry
			// released by the repair), and what it is given is held for its
			// name too.
			owner = o
			for _, e := range h.Ledger.OwnedBy(sticky.Kind, req.Namespace, claim.Name) {
				if e.Owner == owner && h.Pool.Usable(e.MAC, pool.Request{Owner: owner}) {
					returning = append(returning, e)
				}
			}
		}
	}
	if pod.Metadata.Name != "" && owner.Kind == carriers.Pod {
		self := carriers.Ref{Kind: carriers.Pod, Namespace: req.Namespace, Name: pod.Metadata.Name, UID: pod.Metadata.UID}
		for _, e := range h.Ledger.OwnedBy(carriers.Pod, req.Namespace, pod.Metadata.Name) {
			switch {
			case !holders.OwnerIs(e.Owner, self):
			case !h.Pool.Usable(e.MAC, pool.Request{Owner: owner}):
				// Taken up by another since (the index says): the network
				// gets a fresh MAC rather than a refusal.
			case req.Operation == admissionv1.Update:
				// What the pod holds and its edit left out or plugs back.
				held = append(held, e)
			case e.Owner.UID == "" && !h.Pool.Carried(e.MAC):
				// A create of this name was admitted before and is not
				// stored (a later admission step refused it, or the
				// client retried): asking again gets the same MACs
				// back, so a retried create leaks nothing.
				held = append(held, e)
			}
		}
		if req.Operation == admissionv1.Create {
			// The same, for MACs this replica handed out from its stock
			// (no entry names the pod yet).
			for _, given := range h.Pool.HandedTo(carriers.Pod, req.Namespace, pod.Metadata.Name) {
				held = append(held, ledger.Entry{MAC: given.MAC, MACBlockEntry: v1alpha1.MACBlockEntry{Network: given.Network, Interface: given.Interface}})
			}
		}
	}
	a := &assigner{pool: h.Pool, log: h.Log, owner: owner, dryRun: req.DryRun != nil && *req.DryRun, create: req.Operation == admissionv1.Create}
	macs, err := a.assign(ctx, podSlots(elems, oldElems, held, returning))
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
	if updated == value {
		return admission.Allowed("every network already has its MAC")
	}
	h.Log.V(1).Info("assigned MACs", "namespace", req.Namespace, "pod", owner.DisplayName(), "macs", macs, "dryRun", a.dryRun)
	// Only the annotation changes: other webhooks may have written other
	// annotations, and a patch of the whole map would clobber them.
	return admission.Patched("MACs assigned", jsonpatch.Operation{
		Operation: "replace",
		Path:      "/metadata/annotations/" + escapePointer(multus.NetworksAnnotation),
		Value:     updated,
	})
}

// podSlots turns networks into slots. A network that omits its MAC gets
// back one the pod has for that network and interface: first from the
// annotation as stored before an edit, in order, then from the ledger
// entries held for the pod (a network unplugged by an earlier edit and
// plugged back, or a create of the same name admitted before and never
// stored), then, for a StatefulSet's pod created again, from the MACs held
// for its name (returning). Only the stored annotation is taken as the
// pod's own without asking: it is what the API server holds. What the index
// says the pod holds is asked for again (the block write judges it, and
// renews it), since the index may lag a release and a new owner.
func podSlots(elems, old []multus.Element, held, returning []ledger.Entry) []slot {
	key := func(network, iface string) string { return network + "@" + iface }
	explicit := map[mac.MAC]bool{}
	for i := range elems {
		if m, err := mac.Parse(elems[i].MAC()); err == nil {
			explicit[m] = true
		}
	}
	had := map[mac.MAC]bool{}
	seen := map[mac.MAC]bool{}
	restorable := map[string][]mac.MAC{}
	keep := func(m mac.MAC, network, iface string, own bool) {
		if seen[m] {
			return
		}
		seen[m], had[m] = true, own
		if !explicit[m] { // otherwise kept by the element that names it
			k := key(network, iface)
			restorable[k] = append(restorable[k], m)
		}
	}
	for i := range old {
		if m, err := mac.Parse(old[i].MAC()); err == nil {
			keep(m, old[i].NetworkKey(), old[i].Interface(), true)
		}
	}
	for _, e := range held {
		keep(e.MAC, e.Network, e.Interface, false)
	}
	for _, e := range returning {
		keep(e.MAC, e.Network, e.Interface, false)
	}
	slots := make([]slot, len(elems))
	for i := range elems {
		e := &elems[i]
		s := slot{Network: e.NetworkKey(), Interface: e.Interface(), Requested: e.MAC()}
		if k := key(s.Network, s.Interface); s.Requested == "" && len(restorable[k]) > 0 {
			s.Requested, restorable[k] = restorable[k][0].String(), restorable[k][1:]
		}
		if m, err := mac.Parse(s.Requested); err == nil && had[m] {
			s.Held = true
		}
		slots[i] = s
	}
	return slots
}

// statefulSet reads the StatefulSet a pod claims: from the cache, and
// live when the cache does not have it with the claimed UID (it may have
// just been created). Nil when it does not exist.
func (h *PodMutator) statefulSet(ctx context.Context, c sticky.Claim) (*appsv1.StatefulSet, error) {
	key := client.ObjectKey{Namespace: c.Namespace, Name: c.Name}
	for _, reader := range []client.Reader{h.StatefulSets, h.Live} {
		set := &appsv1.StatefulSet{}
		err := reader.Get(ctx, key, set)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("reading StatefulSet %s/%s, the controller of the pod: %w", c.Namespace, c.Name, err)
		case string(set.UID) == c.UID:
			return set, nil
		}
	}
	return nil, nil
}

// checkLauncher admits a virt-launcher pod, which carries the MACs of its
// VMI and gets none of its own. The label and the owner reference that
// make it one are writable by anyone, so the VMI must exist with the
// referenced UID and every MAC the pod carries must be one of that VMI's.
// Who holds those MACs is not checked again: the VM or VMI was checked
// when admitted, and a collision that predates kubemacpool is reported by
// the collision detector, not enforced here, where refusing would only
// keep a VM from starting or migrating (and a node from draining).
func (h *PodMutator) checkLauncher(ctx context.Context, req admission.Request, ref metav1.OwnerReference, networks string) admission.Response {
	elems, err := multus.Parse(networks, req.Namespace)
	if err != nil {
		return admission.Denied("kubemacpool: " + err.Error())
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	err = h.Live.Get(ctx, client.ObjectKey{Namespace: req.Namespace, Name: ref.Name}, vmi)
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return admission.Denied(fmt.Sprintf("kubemacpool: this pod is marked as the virt-launcher pod of VirtualMachineInstance %s/%s, which does not exist; "+
			"only KubeVirt creates virt-launcher pods, other pods must not carry the kubevirt.io=virt-launcher label", req.Namespace, ref.Name))
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading VirtualMachineInstance %s/%s: %w", req.Namespace, ref.Name, err))
	case ref.UID != vmi.UID:
		return admission.Denied(fmt.Sprintf("kubemacpool: this pod is marked as the virt-launcher pod of VirtualMachineInstance %s/%s with UID %s, but that VMI's UID is %s",
			req.Namespace, ref.Name, ref.UID, vmi.UID))
	}
	own := map[mac.MAC]bool{}
	for _, iface := range vmi.Spec.Domain.Devices.Interfaces {
		if m, err := mac.Parse(iface.MacAddress); err == nil {
			own[m] = true
		}
	}
	for _, e := range elems {
		if e.MAC() == "" {
			continue
		}
		m, err := mac.Parse(e.MAC())
		if err != nil {
			return admission.Denied(fmt.Sprintf("kubemacpool: network %s: %v", e.NetworkKey(), err))
		}
		if !own[m] {
			return admission.Denied(fmt.Sprintf("kubemacpool: network %s: MAC address %s is not a MAC of VirtualMachineInstance %s/%s, and a virt-launcher pod carries only its VMI's MACs",
				e.NetworkKey(), m, req.Namespace, vmi.Name))
		}
	}
	if refused, err := h.checkReceivingPod(ctx, vmi, elems); err != nil || refused != nil {
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		return *refused
	}
	return admission.Allowed("virt-launcher pods carry the MACs of their VMI")
}

// checkReceivingPod judges the pod of a VMI whose VM waits as the receiver
// of a decentralized live migration: the migration's target pod, which puts
// the VM's MACs on the network while its source still runs. A MAC another
// VM holds may be on it only while a migration pairs the two (the holders'
// rule, with the pairing found live): a copy made of any VM's MACs must not
// run on them. Pods of other VMs are not judged here: a collision older than
// kubemacpool is reported, never a reason to keep a VM from starting.
func (h *PodMutator) checkReceivingPod(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance, elems []multus.Element) (*admission.Response, error) {
	ref, ok := kubevirt.ControllingVM(vmi)
	if !ok {
		return nil, nil
	}
	vm := &kubevirtv1.VirtualMachine{}
	switch err := h.Live.Get(ctx, client.ObjectKey{Namespace: vmi.Namespace, Name: ref.Name}, vm); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading VirtualMachine %s/%s: %w", vmi.Namespace, ref.Name, err)
	case vm.UID != ref.UID || !kubevirt.IsMigrationReceiver(vm):
		return nil, nil
	}
	self := v1alpha1.Owner{Kind: carriers.VirtualMachine, Namespace: vm.Namespace, Name: vm.Name, UID: vm.UID}
	for _, e := range elems {
		m, err := mac.Parse(e.MAC())
		if err != nil {
			continue
		}
		refusal, err := unpaired(ctx, h.Live, self, vmi.Name, m, false)
		if err != nil {
			return nil, err
		}
		if refusal != nil {
			r := admission.Denied(fmt.Sprintf("kubemacpool: network %s: %v; the pod of VirtualMachine %s/%s, which waits as a migration receiver, "+
				"may carry another VM's MAC only while a decentralized live migration from that VM pairs the two "+
				"(VirtualMachineInstanceMigrations with one migrationID: spec.receive here, spec.sendTo beside the source)",
				e.NetworkKey(), refusal, vm.Namespace, vm.Name))
			return &r, nil
		}
	}
	return nil, nil
}
