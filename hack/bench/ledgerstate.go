package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// listBlocks lists the whole ledger, as the bench's watch last saw it.
func (b *bench) listBlocks(ctx context.Context) ([]v1alpha1.MACBlock, error) {
	list := &v1alpha1.MACBlockList{}
	if err := b.view.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing MACBlocks: %w", err)
	}
	// In the order of names, as the API server lists them: the cache's
	// order is its map's, and fingerprint compares lists.
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// eachEntry calls f with every entry of blocks and the MAC it holds. A
// block whose name is not a block start is not kubemacpool's and is
// skipped; a count waiting for its MACs then times out and says so.
func eachEntry(blocks []v1alpha1.MACBlock, f func(m mac.MAC, e *v1alpha1.MACBlockEntry)) {
	for i := range blocks {
		start, ok := ledger.StartOf(&blocks[i])
		if !ok {
			continue
		}
		for j := range blocks[i].Spec.Entries {
			e := &blocks[i].Spec.Entries[j]
			f(start+mac.MAC(e.Offset), e)
		}
	}
}

// fingerprint changes whenever any block is written, created or deleted:
// the names and resourceVersions of all of them, in the list's order.
func fingerprint(blocks []v1alpha1.MACBlock) string {
	var s strings.Builder
	for i := range blocks {
		s.WriteString(blocks[i].Name)
		s.WriteByte('@')
		s.WriteString(blocks[i].ResourceVersion)
		s.WriteByte(' ')
	}
	return s.String()
}

// holder is an object carrying a MAC, in the terms of a ledger entry's
// owner.
type holder struct{ kind, namespace, name, uid string }

// carried maps every MAC that a pod or VM carries to the object carrying
// it, as the bench's watches last saw them. Pods are watched as metadata
// only: their MACs are in the networks annotation.
func (b *bench) carried(ctx context.Context) (map[mac.MAC]holder, error) {
	out := map[mac.MAC]holder{}
	pods := &metav1.PartialObjectMetadataList{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := b.view.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	for _, p := range pods.Items {
		for _, s := range podMACs(p.Namespace, p.Annotations) {
			if m, err := mac.Parse(s); err == nil {
				out[m] = holder{"Pod", p.Namespace, p.Name, string(p.UID)}
			}
		}
	}
	vms := &kubevirtv1.VirtualMachineList{}
	if err := b.view.List(ctx, vms); err != nil {
		return nil, fmt.Errorf("listing VMs: %w", err)
	}
	for _, vm := range vms.Items {
		if vm.Spec.Template == nil {
			continue
		}
		for _, i := range vm.Spec.Template.Spec.Domain.Devices.Interfaces {
			if m, err := mac.Parse(i.MacAddress); err == nil {
				out[m] = holder{"VirtualMachine", vm.Namespace, vm.Name, string(vm.UID)}
			}
		}
	}
	return out, nil
}

// podMACs are the MACs written in a pod's networks annotation, one per
// network ("" where none is). An annotation that does not parse has none
// as far as the benchmark is concerned.
func podMACs(namespace string, annotations map[string]string) []string {
	value, ok := annotations[multus.NetworksAnnotation]
	if !ok {
		return nil
	}
	elems, err := multus.Parse(value, namespace)
	if err != nil {
		return nil
	}
	macs := make([]string, len(elems))
	for i := range elems {
		macs[i] = elems[i].MAC()
	}
	return macs
}

// balance compares the ledger with the MACs carried: entries whose MAC is
// not carried by an object matching their owner (a reservation whose
// object is not stored, or not yet), and carried MACs without such an
// entry. A replica's stock entry that nothing carries is neither: it waits
// for an admission, not for an object.
func balance(blocks []v1alpha1.MACBlock, carried map[mac.MAC]holder) (unbound, missing int) {
	matched := 0
	eachEntry(blocks, func(m mac.MAC, e *v1alpha1.MACBlockEntry) {
		h, ok := carried[m]
		if !ok && heartbeat.IsStock(e.Owner) {
			return // a replica's stock, not handed out (or not carried yet)
		}
		if ok && holders.OwnerIs(e.Owner, carriers.Ref{Kind: h.kind, Namespace: h.namespace, Name: h.name, UID: types.UID(h.uid)}) {
			matched++
			return
		}
		unbound++
	})
	return unbound, len(carried) - matched
}

// startView starts the bench's watches of MAC blocks, pods (their
// metadata) and VMs, and waits for them to sync.
func (b *bench) startView() (cache.Cache, error) {
	view, err := cache.New(b.cfg, cache.Options{Scheme: b.c.Scheme()})
	if err != nil {
		return nil, err
	}
	pods := &metav1.PartialObjectMetadata{}
	pods.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	for _, obj := range []client.Object{&v1alpha1.MACBlock{}, pods, &kubevirtv1.VirtualMachine{}} {
		if _, err := view.GetInformer(b.ctx, obj); err != nil {
			return nil, err
		}
	}
	go func() { _ = view.Start(b.ctx) }()
	if !view.WaitForCacheSync(b.ctx) {
		return nil, errors.New("the bench's watches did not sync")
	}
	return view, nil
}
