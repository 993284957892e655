package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
)

// Lifecycle holds what the reconcilers share: clients, the kinds that carry
// MACs, and the grace period of reservations.
type Lifecycle struct {
	Client   client.Client // cached reads, direct writes
	Live     client.Reader // uncached reads, checked before anything is deleted
	Recorder events.EventRecorder
	// Kinds that carry MACs, each with the namespaces it manages: only
	// objects in managed namespaces have MACs adopted for them.
	Kinds *Kinds
	// Carried is every MAC that objects carry, in any namespace: a MAC a
	// VM's instance still carries is never released.
	Carried *carriers.Index
	// Grace is how long a reservation may stay unbound before it is deleted.
	Grace time.Duration
	// Now is the clock; tests may replace it.
	Now func() time.Time
}

func (l *Lifecycle) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// bind records that obj carries the MAC of m.
func (l *Lifecycle) bind(ctx context.Context, m *v1alpha1.MACAddress, k Kind, obj client.Object, c Carried) error {
	m.Spec.Owner = v1alpha1.Owner{
		APIVersion: k.APIVersion(), Kind: k.Kind(),
		Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(),
		GenerateName: m.Spec.Owner.GenerateName,
	}
	if m.Spec.Network == "" {
		m.Spec.Network = c.Network
	}
	if m.Spec.Interface == "" {
		m.Spec.Interface = c.Interface
	}
	m.Status.Phase = v1alpha1.PhaseBound
	m.Status.BoundTime = ptr.To(metav1.NewTime(l.now()))
	// Update carries the resourceVersion we read: if the reservation changed
	// meanwhile (expired, bound elsewhere) the update fails and we look again.
	if err := l.Client.Update(ctx, m); err != nil {
		return fmt.Errorf("binding MAC %s to %s %s/%s: %w", m.Spec.Address, k.Kind(), obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// adopt creates a bound MACAddress for a MAC that obj carries without one:
// objects created while kubemacpool was down, restored from backup, or from
// before an upgrade.
func (l *Lifecycle) adopt(ctx context.Context, k Kind, obj client.Object, c Carried) error {
	m := &v1alpha1.MACAddress{
		ObjectMeta: metav1.ObjectMeta{Name: c.MAC.ObjectName()},
		Spec: v1alpha1.MACAddressSpec{
			Address: c.MAC.String(),
			Owner: v1alpha1.Owner{
				APIVersion: k.APIVersion(), Kind: k.Kind(),
				Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(),
			},
			Network:   c.Network,
			Interface: c.Interface,
		},
		Status: v1alpha1.MACAddressStatus{Phase: v1alpha1.PhaseBound, BoundTime: ptr.To(metav1.NewTime(l.now()))},
	}
	if err := l.Client.Create(ctx, m); err != nil {
		return fmt.Errorf("adopting MAC %s carried by %s %s/%s: %w", c.MAC, k.Kind(), obj.GetNamespace(), obj.GetName(), err)
	}
	metrics.Adoptions.Inc()
	l.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, "MACAdopted", "Adopt",
		"MAC %s was carried without a reservation; kubemacpool now holds it for this object", c.MAC)
	return nil
}

// reportCollision puts a Warning event on both objects that carry one MAC.
func (l *Lifecycle) reportCollision(m mac.MAC, a, b runtime.Object, aName, bName string) {
	l.Recorder.Eventf(a, b, corev1.EventTypeWarning, "MACCollision", "Collide",
		"MAC %s is also carried by %s; two interfaces with one MAC on a network break both", m, bName)
	l.Recorder.Eventf(b, a, corev1.EventTypeWarning, "MACCollision", "Collide",
		"MAC %s is also carried by %s; two interfaces with one MAC on a network break both", m, aName)
}

// currentOwner returns the object a MACAddress names if it still exists
// (with the bound UID) and still carries the MAC. A miss in the cache is
// confirmed with a live read, so a lagging cache never releases a MAC in use.
func (l *Lifecycle) currentOwner(ctx context.Context, m *v1alpha1.MACAddress) (client.Object, bool, error) {
	o := m.Spec.Owner
	k, ok := l.Kinds.Get(o.Kind)
	if !ok || (o.Name == "" && o.GenerateName == "") {
		return nil, false, nil
	}
	address, err := mac.Parse(m.Spec.Address)
	if err != nil {
		return nil, false, nil
	}
	if o.Name == "" {
		return l.liveGenerated(ctx, k, o, address)
	}
	for _, r := range []client.Reader{l.Client, l.Live} {
		obj := k.New()
		err := r.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: o.Name}, obj)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, false, err
		}
		if err == nil && ownerMatches(o, o.Kind, obj) {
			if _, ok := carries(k, obj, address); ok || (k.FixedAtCreation() && m.IsBound()) {
				return obj, true, nil
			}
		}
	}
	return nil, false, nil
}

// liveGenerated looks, with a live list of the namespace, for an object
// created from a generateName reservation that carries address. It runs
// only when such a reservation is about to expire, so that a cache lagging
// behind never frees a MAC that a new pod already carries.
func (l *Lifecycle) liveGenerated(ctx context.Context, k Kind, o v1alpha1.Owner, address mac.MAC) (client.Object, bool, error) {
	list, err := listOf(k, l.Client.Scheme())
	if err != nil {
		return nil, false, err
	}
	if err := l.Live.List(ctx, list, client.InNamespace(o.Namespace)); err != nil {
		return nil, false, err
	}
	objs, err := objectsOf(list)
	if err != nil {
		return nil, false, err
	}
	for _, obj := range objs {
		if ownerMatches(o, o.Kind, obj) {
			if _, ok := carries(k, obj, address); ok {
				return obj, true, nil
			}
		}
	}
	return nil, false, nil
}

// listCarriers lists the objects of kind k that carry address, from the cache.
func (l *Lifecycle) listCarriers(ctx context.Context, k Kind, address mac.MAC, opts ...client.ListOption) ([]client.Object, error) {
	list, err := listOf(k, l.Client.Scheme())
	if err != nil {
		return nil, err
	}
	opts = append(opts, client.MatchingFields{carriedIndex: address.String()})
	if err := l.Client.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("listing %s carrying %s: %w", k.Kind(), address, err)
	}
	return objectsOf(list)
}

func describe(kind string, obj client.Object) string {
	return fmt.Sprintf("%s %s/%s", kind, obj.GetNamespace(), obj.GetName())
}
