package controller

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/metrics"
	"github.com/kubemacpool/kubemacpool/internal/pool"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// MACReconciler reconciles one MAC at a time: the MACAddress named after it
// (if any) against every object that carries it (of any kind). Keying the
// work by MAC puts binding, release, expiry, adoption and collisions in one
// place and makes each decision from the whole picture of that MAC.
type MACReconciler struct {
	*Lifecycle
	// Workers is how many MACs are reconciled at once.
	Workers int

	cache      cache.Cache
	indexer    client.FieldIndexer
	controller controller.Controller
}

// carrier is an object carrying the MAC under reconciliation.
type carrier struct {
	kind    Kind
	obj     client.Object
	carried Carried
}

func (c carrier) String() string { return describe(c.kind.Kind(), c.obj) }

// Reconcile brings the MAC named req.Name in step.
func (r *MACReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	address, err := mac.ParseObjectName(req.Name)
	if err != nil {
		return reconcile.Result{}, nil // not a MACAddress name of ours
	}
	log := logf.FromContext(ctx).WithValues("mac", address.String())

	holder := &v1alpha1.MACAddress{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: req.Name}, holder); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		holder = nil
	}
	carriers, err := r.carriersOf(ctx, address)
	if err != nil {
		return reconcile.Result{}, err
	}

	if holder == nil {
		return r.adoptFirstManaged(ctx, address, carriers)
	}
	if _, known := r.Kinds.Get(holder.Spec.Owner.Kind); !known {
		// Held for a kind not tracked yet (KubeVirt's, before its CRDs are
		// found): without a way to look at the owner, never release.
		return reconcile.Result{RequeueAfter: 30 * time.Second}, nil
	}

	var owner *carrier
	for i := range carriers {
		if ownerMatches(holder.Spec.Owner, carriers[i].kind.Kind(), carriers[i].obj) {
			owner = &carriers[i]
			break
		}
	}

	if !holder.IsBound() {
		if owner != nil {
			log.V(1).Info("binding", "owner", owner.String())
			return reconcile.Result{}, r.bind(ctx, holder, owner.kind, owner.obj, owner.carried)
		}
		age := r.now().Sub(reservedAt(holder))
		if age < r.Grace {
			return reconcile.Result{RequeueAfter: r.Grace - age}, nil
		}
		// Expired. A named owner gets one live look in case the cache lags.
		if obj, ok, err := r.currentOwner(ctx, holder); err != nil {
			return reconcile.Result{}, err
		} else if ok {
			k, _ := r.Kinds.Get(holder.Spec.Owner.Kind)
			c, _ := carries(k, obj, address)
			return reconcile.Result{}, r.bind(ctx, holder, k, obj, c)
		}
		log.Info("reservation expired unused; releasing", "owner", holder.Spec.Owner, "age", age.Round(time.Second).String())
		if err := r.release(ctx, holder); err != nil {
			return reconcile.Result{}, err
		}
		metrics.ExpiredReservations.Inc()
		r.Recorder.Eventf(holder, nil, corev1.EventTypeWarning, "ReservationExpired", "Release",
			"MAC %s was reserved for %s %s/%s, which was not seen carrying it within %s (refused by a later admission step, or abandoned); released",
			address, holder.Spec.Owner.Kind, holder.Spec.Owner.Namespace, holder.Spec.Owner.DisplayName(), r.Grace)
		return reconcile.Result{}, nil
	}

	if owner == nil {
		// Not in the cache: confirm with a live read before releasing.
		obj, ok, err := r.currentOwner(ctx, holder)
		if err != nil {
			return reconcile.Result{}, err
		}
		if !ok {
			// A request accepted this reservation for its owner moments
			// ago (a VM update putting back a MAC it had dropped): the
			// object that carries it again may not be stored yet. Judge
			// once the grace since that acceptance has passed.
			if renewed, ok := renewedAt(holder); ok && r.now().Sub(renewed) < r.Grace {
				wait := r.Grace - r.now().Sub(renewed)
				log.V(1).Info("owner does not carry the MAC, but a request renewed it; waiting", "owner", holder.Spec.Owner, "wait", wait.String())
				return reconcile.Result{RequeueAfter: wait}, nil
			}
			// A VM's MAC stays its own while its running VMI or virt-launcher
			// pod carries it (KubeVirt keeps the old MAC until a restart);
			// the VMI's delete brings the MAC back here.
			if c, err := r.carriedFor(ctx, address, holder.Spec.Owner); err != nil {
				return reconcile.Result{}, err
			} else if c != nil {
				log.V(1).Info("owner no longer carries the MAC, but its instance does; keeping it held", "owner", holder.Spec.Owner, "carrier", c.Object.String())
				return reconcile.Result{}, nil
			}
			// Another managed object carrying the MAC inherits the
			// MACAddress in one guarded update: deleting it and adopting it
			// again would leave a moment in which the MAC looks free.
			if next, err := r.firstManaged(ctx, carriers); err != nil {
				return reconcile.Result{}, err
			} else if next != nil {
				log.Info("owner gone; the MAC stays held for another object carrying it", "owner", holder.Spec.Owner, "next", next.String())
				if err := r.bind(ctx, holder, next.kind, next.obj, next.carried); err != nil {
					return reconcile.Result{}, err
				}
				metrics.Adoptions.Inc()
				return reconcile.Result{}, nil
			}
			if others := r.Carried.Of(address); len(others) > 0 {
				// Not a managed object's (an ignored namespace, say): the
				// reservation goes, the MAC stays held by what carries it.
				log.Info("owner gone or no longer carries the MAC; releasing its reservation, the MAC stays taken while another object carries it",
					"owner", holder.Spec.Owner, "carrier", others[0].Object.String())
			} else {
				log.Info("owner gone or no longer carries the MAC; releasing", "owner", holder.Spec.Owner)
			}
			if err := r.release(ctx, holder); err != nil {
				return reconcile.Result{}, err
			}
			metrics.Releases.Inc()
			return reconcile.Result{}, nil
		}
		k, _ := r.Kinds.Get(holder.Spec.Owner.Kind)
		c, _ := carries(k, obj, address)
		owner = &carrier{kind: k, obj: obj, carried: c}
	}
	for _, c := range carriers {
		if c.obj.GetUID() != owner.obj.GetUID() {
			r.reportCollision(address, owner.obj, c.obj, owner.String(), c.String())
		}
	}
	return reconcile.Result{}, nil
}

// adoptFirstManaged gives a MAC carried without a MACAddress to the oldest
// managed object carrying it; any other carrier is then a collision, which
// the next pass (triggered by the new MACAddress) reports.
func (r *MACReconciler) adoptFirstManaged(ctx context.Context, address mac.MAC, carriers []carrier) (reconcile.Result, error) {
	c, err := r.firstManaged(ctx, carriers)
	if err != nil || c == nil {
		return reconcile.Result{}, err
	}
	err = r.adopt(ctx, c.kind, c.obj, c.carried)
	if apierrors.IsAlreadyExists(err) {
		return reconcile.Result{Requeue: true}, nil // a reservation just appeared: look again
	}
	return reconcile.Result{}, err
}

// firstManaged returns the oldest carrier in a namespace kubemacpool
// manages for its kind, or nil.
func (r *MACReconciler) firstManaged(ctx context.Context, carriers []carrier) (*carrier, error) {
	for i, c := range carriers {
		managed, err := r.Kinds.Scope(c.kind.Kind()).ManagesName(ctx, r.Client, c.obj.GetNamespace())
		if err != nil {
			return nil, err
		}
		if managed {
			return &carriers[i], nil
		}
	}
	return nil, nil
}

// carriersOf lists every object, of every kind, carrying address, oldest first.
func (r *MACReconciler) carriersOf(ctx context.Context, address mac.MAC) ([]carrier, error) {
	var out []carrier
	for _, k := range r.Kinds.All() {
		objs, err := r.listCarriers(ctx, k, address)
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			c, _ := carries(k, obj, address)
			out = append(out, carrier{kind: k, obj: obj, carried: c})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := out[i].obj.GetCreationTimestamp(), out[j].obj.GetCreationTimestamp()
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return out[i].String() < out[j].String()
	})
	return out, nil
}

// carriedFor returns an object that carries address on behalf of the
// owner o (its VMI or virt-launcher pod, for a VM), or nil. Each carrier
// is confirmed in the cache: the index is fed by a handler of the same
// informer, which may not have seen the delete that brought us here.
func (r *MACReconciler) carriedFor(ctx context.Context, address mac.MAC, o v1alpha1.Owner) (*carriers.Carrier, error) {
	for _, c := range r.Carried.Of(address) {
		if !c.For.Is(o.Kind, o.Namespace, o.Name, o.UID) {
			continue
		}
		k, ok := r.Kinds.Get(c.Object.Kind)
		if !ok {
			return &c, nil // a kind not tracked yet: never release on a guess
		}
		obj := k.New()
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Object.Namespace, Name: c.Object.Name}, obj)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, err
		case obj.GetUID() == c.Object.UID:
			return &c, nil
		}
	}
	return nil, nil
}

// reservedAt is when a reservation was last made or accepted by a request:
// its grace period counts from then, so a retried create that accepts it
// gets the full grace to store its object.
func reservedAt(m *v1alpha1.MACAddress) time.Time {
	at := m.CreationTimestamp.Time
	if renewed, ok := renewedAt(m); ok && renewed.After(at) {
		at = renewed
	}
	return at
}

// renewedAt is when a request last accepted the existing reservation m
// (pool.Claim), if one did.
func renewedAt(m *v1alpha1.MACAddress) (time.Time, bool) {
	renewed, err := time.Parse(time.RFC3339Nano, m.Annotations[pool.RenewedAnnotation])
	return renewed, err == nil
}

// release deletes a MACAddress, but only the exact version we judged: if it
// was bound or changed meanwhile, the delete fails and the MAC is looked at
// again.
func (r *MACReconciler) release(ctx context.Context, m *v1alpha1.MACAddress) error {
	err := r.Client.Delete(ctx, m, client.Preconditions{UID: &m.UID, ResourceVersion: &m.ResourceVersion})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("releasing MAC %s: %w", m.Spec.Address, err)
	}
	return nil
}

// SetupWithManager registers the controller with the kinds known now; more
// kinds can join later through AddKind. Every event on a carrier object
// enqueues the MACs it carries and the MACs recorded as its, so deletes,
// removed interfaces and new reservations are all seen.
func (r *MACReconciler) SetupWithManager(ctx context.Context, mgr manager.Manager) error {
	r.cache = mgr.GetCache()
	r.indexer = mgr.GetFieldIndexer()
	if err := r.indexer.IndexField(ctx, &v1alpha1.MACAddress{}, ownerIndex, indexMACAddressOwner); err != nil {
		return err
	}
	c, err := builder.ControllerManagedBy(mgr).
		Named("mac").
		For(&v1alpha1.MACAddress{}).
		// Work is keyed by MAC and the workqueue never hands one key to two
		// workers, so MACs are reconciled in parallel safely; one worker
		// made adopting 20,000 MACs at start-up take minutes.
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		Build(r)
	if err != nil {
		return err
	}
	r.controller = c
	for _, k := range r.Kinds.All() {
		if err := r.indexKind(ctx, k); err != nil {
			return err
		}
		if err := r.watchKind(k); err != nil {
			return err
		}
	}
	return nil
}

// AddKind starts tracking a kind that became available at run time.
// The kind is indexed first, then known to reconciles, then watched, so
// that no event of the kind is judged without the kind.
func (r *MACReconciler) AddKind(ctx context.Context, k Kind, s scope.Scope) error {
	if err := r.indexKind(ctx, k); err != nil {
		return err
	}
	r.Kinds.Add(k, s)
	return r.watchKind(k)
}

func (r *MACReconciler) indexKind(ctx context.Context, k Kind) error {
	if err := r.indexer.IndexField(ctx, k.New(), carriedIndex, indexCarried(k)); err != nil {
		return fmt.Errorf("indexing %s by MAC: %w", k.Kind(), err)
	}
	return nil
}

func (r *MACReconciler) watchKind(k Kind) error {
	return r.controller.Watch(source.Kind(r.cache, k.New(),
		handler.EnqueueRequestsFromMapFunc(r.macsOf(k)), carriesAny(k)))
}

// macsOf maps an object of kind k to the MACs it carries and the MACs
// recorded as held by it (which it may no longer carry).
func (r *MACReconciler) macsOf(k Kind) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		seen := map[string]bool{}
		var reqs []reconcile.Request
		add := func(name string) {
			if !seen[name] {
				seen[name] = true
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
			}
		}
		for _, c := range k.Carried(obj) {
			add(c.MAC.ObjectName())
		}
		// What it carries for another (a VM's VMI and launcher pod): its
		// delete may free a MAC its VM dropped.
		for _, c := range carriers.Of(obj) {
			add(c.MAC.ObjectName())
		}
		held := &v1alpha1.MACAddressList{}
		if err := r.Client.List(ctx, held, client.MatchingFields{ownerIndex: ownerKey(k.Kind(), obj.GetNamespace(), obj.GetName())}); err == nil {
			for _, m := range held.Items {
				add(m.Name)
			}
		}
		return reqs
	}
}

// carriesAny passes events of objects that carry a MAC, or carried one
// before an update (so a removed interface's MAC is released), and deletes.
func carriesAny(k Kind) predicate.Funcs {
	has := func(obj client.Object) bool {
		return obj != nil && (len(k.Carried(obj)) > 0 || len(carriers.Of(obj)) > 0)
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return has(e.Object) },
		// Every delete: the object may hold MACs it no longer carries (a
		// pod whose annotation was edited keeps its MAC until it is gone).
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		GenericFunc: func(e event.GenericEvent) bool { return has(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return has(e.ObjectOld) || has(e.ObjectNew)
		},
	}
}
