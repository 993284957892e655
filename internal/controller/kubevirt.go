package controller

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/scope"
)

// VMKind reads MACs from the interfaces of a VirtualMachine's template.
type VMKind struct{}

func (VMKind) APIVersion() string { return kubevirtv1.SchemeGroupVersion.String() }
func (VMKind) Kind() string       { return "VirtualMachine" }
func (VMKind) New() client.Object { return &kubevirtv1.VirtualMachine{} }

// FixedAtCreation is false: a VM's interfaces may change, and a removed
// interface's MAC is released once the change is stored.
func (VMKind) FixedAtCreation() bool { return false }
func (VMKind) Carried(obj client.Object) []Carried {
	vm, ok := obj.(*kubevirtv1.VirtualMachine)
	if !ok {
		return nil
	}
	return carriedBy(kubevirt.VMSpec(vm))
}

// VMIKind reads MACs from VirtualMachineInstances created directly. An
// instance created by a VM carries the VM's MACs, which the VM holds: it is
// not a second holder.
type VMIKind struct{}

func (VMIKind) APIVersion() string { return kubevirtv1.SchemeGroupVersion.String() }
func (VMIKind) Kind() string       { return "VirtualMachineInstance" }
func (VMIKind) New() client.Object { return &kubevirtv1.VirtualMachineInstance{} }

// FixedAtCreation is true: a running VMI's interfaces do not change.
func (VMIKind) FixedAtCreation() bool { return true }
func (VMIKind) Carried(obj client.Object) []Carried {
	vmi, ok := obj.(*kubevirtv1.VirtualMachineInstance)
	if !ok || kubevirt.OwnedByVM(vmi) {
		return nil
	}
	return carriedBy(&vmi.Spec)
}

func carriedBy(spec *kubevirtv1.VirtualMachineInstanceSpec) []Carried {
	var out []Carried
	for _, m := range kubevirt.ManagedInterfaces(spec) {
		if parsed, err := mac.Parse(m.MAC); err == nil {
			out = append(out, Carried{MAC: parsed, Network: m.Network, Interface: m.Interface})
		}
	}
	return out
}

// KubeVirtWatcher adds the KubeVirt kinds to the MAC controller once the
// KubeVirt CRDs are served, so kubemacpool runs for pods alone without
// KubeVirt and starts handling VMs, without a restart, when it is installed.
type KubeVirtWatcher struct {
	Reconciler *MACReconciler
	Mapper     meta.RESTMapper
	Scope      scope.Scope
	// Detector, when set, starts watching running VMIs for collisions too.
	Detector interface{ WatchVMIs(context.Context) error }
	Interval time.Duration
	Log      logr.Logger
}

// Start polls discovery until both KubeVirt kinds are served, then adds them.
func (w *KubeVirtWatcher) Start(ctx context.Context) error {
	logged := false
	for {
		if kubevirt.Served(w.Mapper) {
			for _, k := range []Kind{VMKind{}, VMIKind{}} {
				if err := w.Reconciler.AddKind(ctx, k, w.Scope); err != nil {
					return err
				}
			}
			if w.Detector != nil {
				if err := w.Detector.WatchVMIs(ctx); err != nil {
					return err
				}
			}
			w.Log.Info("KubeVirt found: VirtualMachine MACs are now tracked")
			<-ctx.Done()
			return nil
		}
		if !logged {
			w.Log.Info("KubeVirt CRDs not installed; handling pods only until they are")
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.Interval):
		}
	}
}
