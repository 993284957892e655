package kubevirt

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Migration names the two sides of a decentralized live migration as
// KubeVirt pairs them: a VirtualMachineInstanceMigration that receives
// MigrationID into a VMI, and one that sends a VMI with the same
// MigrationID. KubeVirt names a VM's instance after the VM, so each side's
// vmiName is also its VM's name.
type Migration struct {
	ReceiverNamespace, ReceiverVMI string
	SourceNamespace, SourceVMI     string
	// Succeeded asks that the receiving side report the migration done.
	Succeeded bool
}

// Paired reports whether the migration objects that pair m's two sides
// exist, read with r (live: a lagging cache must not pair what is not, nor
// miss a pairing just created). Only KubeVirt's controllers move a
// migration's status, and a tenant cannot create the sending side in the
// source VM's namespace without rights there: a pairing is the source
// owner's consent. Without the VirtualMachineInstanceMigration kind
// installed nothing is paired.
func Paired(ctx context.Context, r client.Reader, m Migration) (bool, error) {
	receiving := &kubevirtv1.VirtualMachineInstanceMigrationList{}
	if err := r.List(ctx, receiving, client.InNamespace(m.ReceiverNamespace)); err != nil {
		if meta.IsNoMatchError(err) {
			return false, nil
		}
		return false, fmt.Errorf("listing VirtualMachineInstanceMigrations in %s: %w", m.ReceiverNamespace, err)
	}
	ids := map[string]bool{}
	for _, mig := range receiving.Items {
		recv := mig.Spec.Receive
		if recv == nil || recv.MigrationID == "" || mig.Spec.VMIName != m.ReceiverVMI {
			continue
		}
		if m.Succeeded && mig.Status.Phase != kubevirtv1.MigrationSucceeded {
			continue
		}
		ids[recv.MigrationID] = true
	}
	if len(ids) == 0 {
		return false, nil
	}
	sending := &kubevirtv1.VirtualMachineInstanceMigrationList{}
	if err := r.List(ctx, sending, client.InNamespace(m.SourceNamespace)); err != nil {
		return false, fmt.Errorf("listing VirtualMachineInstanceMigrations in %s: %w", m.SourceNamespace, err)
	}
	for _, mig := range sending.Items {
		if to := mig.Spec.SendTo; to != nil && ids[to.MigrationID] && mig.Spec.VMIName == m.SourceVMI {
			return true, nil
		}
	}
	return false, nil
}
