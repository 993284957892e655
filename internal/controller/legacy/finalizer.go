// Package legacy cleans up after upstream kubemacpool, which a cluster may
// have run before this one.
package legacy

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
)

// Finalizer is the finalizer upstream kubemacpool put on VirtualMachines.
// Without upstream's controller to remove it, a VM carrying it can never be
// deleted; kubemacpool needs no finalizer (the repair releases a deleted
// VM's MACs), so it removes this one.
const Finalizer = "k8s.v1.cni.cncf.io/kubeMacPool"

// FinalizerRemover removes Finalizer from every VM that has it, on the
// leader, once KubeVirt is served.
type FinalizerRemover struct {
	Manager manager.Manager
	// Live reads a VM before it is patched, and Writer patches it (the
	// controllers' client): the cache holds only what kubemacpool derives
	// of VMs (carriers.Cached), not the VM a patch is computed from.
	Live   client.Reader
	Writer client.Writer
	Mapper meta.RESTMapper
	// Poll is how often to look for KubeVirt's CRDs until they are served.
	Poll time.Duration
	Log  logr.Logger
}

// NeedLeaderElection is true: one replica patches.
func (r *FinalizerRemover) NeedLeaderElection() bool { return true }

// Start waits for KubeVirt, then adds the controller that does the work.
func (r *FinalizerRemover) Start(ctx context.Context) error {
	for !kubevirt.Served(r.Mapper) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.Poll):
		}
	}
	hasIt := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return controllerutil.ContainsFinalizer(o, Finalizer)
	})
	return builder.ControllerManagedBy(r.Manager).
		Named("legacy-finalizer").
		For(&kubevirtv1.VirtualMachine{}, builder.WithPredicates(hasIt)).
		Complete(reconcile.Func(r.reconcile))
}

// reconcile removes the finalizer with a patch that holds only if the VM is
// still the version read (a conflict is retried from the next version).
func (r *FinalizerRemover) reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	vm := &kubevirtv1.VirtualMachine{}
	if err := r.Live.Get(ctx, req.NamespacedName, vm); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !controllerutil.ContainsFinalizer(vm, Finalizer) {
		return reconcile.Result{}, nil
	}
	patch := client.MergeFromWithOptions(vm.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(vm, Finalizer)
	if err := r.Writer.Patch(ctx, vm, patch); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	r.Log.Info("removed upstream kubemacpool's finalizer", "namespace", req.Namespace, "name", req.Name)
	return reconcile.Result{}, nil
}
