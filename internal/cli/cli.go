// Package cli is the operator's view of kubemacpool: how full the pool is,
// who holds a MAC, which running objects share one. It reads the cluster
// through the kubeconfig, like kubectl, and is served as subcommands of the
// kubemacpool binary (also installable as the kubectl plugin
// kubectl-macpool).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/collision"
	"github.com/kubemacpool/kubemacpool/internal/controller"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Commands lists the subcommands, for usage messages.
const Commands = "status | who MAC | collisions"

// Run runs one subcommand.
func Run(ctx context.Context, c client.Client, namespace string, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("missing command: %s", Commands)
	}
	switch args[0] {
	case "status":
		return Status(ctx, c, namespace, out)
	case "who":
		if len(args) != 2 {
			return errors.New("usage: who MAC (any spelling: 02:00:00:00:00:1a, 02-00-00-00-00-1A, 0200.0000.001a)")
		}
		return Who(ctx, c, args[1], out)
	case "collisions":
		return Collisions(ctx, c, out)
	}
	return fmt.Errorf("unknown command %q: %s", args[0], Commands)
}

// Status prints the range, its size, what is held and waiting, and counts
// per namespace.
func Status(ctx context.Context, c client.Client, namespace string, out io.Writer) error {
	cm := &corev1.ConfigMap{}
	var data map[string]string
	source := fmt.Sprintf("ConfigMap %s/%s", namespace, controller.RangeConfigMapName)
	switch err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: controller.RangeConfigMapName}, cm); {
	case apierrors.IsNotFound(err):
		source = "default: no ConfigMap " + namespace + "/" + controller.RangeConfigMapName
	case err != nil:
		return err
	default:
		data = cm.Data
	}
	alloc, rangeErr := controller.ParseRangeConfig(data)

	list := &v1alpha1.MACAddressList{}
	if err := c.List(ctx, list); err != nil {
		return fmt.Errorf("listing MACAddresses: %w", err)
	}
	perNS := map[string]map[string]int{}
	var inRange, waiting int
	for _, m := range list.Items {
		address, err := mac.Parse(m.Spec.Address)
		if err == nil && rangeErr == nil && alloc.Contains(address) {
			inRange++
		}
		if !m.IsBound() {
			waiting++
		}
		ns := m.Spec.Owner.Namespace
		if perNS[ns] == nil {
			perNS[ns] = map[string]int{}
		}
		key := m.Spec.Owner.Kind
		if !m.IsBound() {
			key = "Reserved"
		}
		perNS[ns][key]++
	}

	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if rangeErr != nil {
		fmt.Fprintf(w, "Range:\tINVALID in %s: %v (kubemacpool keeps the range it had)\n", source, rangeErr)
	} else {
		universal := "universally administered MACs excluded"
		if alloc.AllowUniversal() {
			universal = "universally administered MACs allowed"
		}
		fmt.Fprintf(w, "Range:\t%s (%s; %s)\n", alloc.Range(), source, universal)
		fmt.Fprintf(w, "Allocatable:\t%d\n", alloc.Size())
		fmt.Fprintf(w, "Held:\t%d in range (%.4f%%), %d in all\n", inRange, 100*float64(inRange)/float64(alloc.Size()), len(list.Items))
	}
	fmt.Fprintf(w, "Waiting:\t%d reservations not bound yet\n", waiting)
	w.Flush()

	namespaces := make([]string, 0, len(perNS))
	for ns := range perNS {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	fmt.Fprintln(out)
	w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tPODS\tVMS\tVMIS\tRESERVED")
	for _, ns := range namespaces {
		n := perNS[ns]
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\n", ns, n["Pod"], n["VirtualMachine"], n["VirtualMachineInstance"], n["Reserved"])
	}
	return w.Flush()
}

// Who prints the holder of a MAC, whatever its spelling.
func Who(ctx context.Context, c client.Client, spelled string, out io.Writer) error {
	m, err := mac.Parse(spelled)
	if err != nil {
		return err
	}
	holder := &v1alpha1.MACAddress{}
	if err := c.Get(ctx, client.ObjectKey{Name: m.ObjectName()}, holder); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		found, err := carriedBy(ctx, c, m)
		if err != nil {
			return err
		}
		if len(found) == 0 {
			fmt.Fprintf(out, "%s is not held: no MACAddress %s, and no pod, VM or VMI carries it\n", m, m.ObjectName())
			return nil
		}
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "MAC:\t%s\n", m)
		for _, f := range found {
			fmt.Fprintf(w, "Carried by:\t%s (network %s)\n", f.Object, f.Network)
			if f.For != f.Object {
				fmt.Fprintf(w, "For:\t%s\n", f.For)
			}
		}
		fmt.Fprintf(w, "Phase:\tCarried, not in the ledger yet (kubemacpool adopts it; until then it is held all the same and never handed out)\n")
		return w.Flush()
	}
	o := holder.Spec.Owner
	name := o.DisplayName()
	if o.Name == "" {
		name += " (generated name not known yet)"
	}
	phase := holder.Status.Phase
	if phase == "" {
		phase = v1alpha1.PhaseReserved
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "MAC:\t%s\n", m)
	fmt.Fprintf(w, "Holder:\t%s %s/%s\n", o.Kind, o.Namespace, name)
	if o.UID != "" {
		fmt.Fprintf(w, "UID:\t%s\n", o.UID)
	}
	if holder.Spec.Network != "" {
		fmt.Fprintf(w, "Network:\t%s\n", holder.Spec.Network)
	}
	if holder.Spec.Interface != "" {
		fmt.Fprintf(w, "Interface:\t%s\n", holder.Spec.Interface)
	}
	fmt.Fprintf(w, "Phase:\t%s\n", phase)
	fmt.Fprintf(w, "Since:\t%s\n", holder.CreationTimestamp.UTC().Format("2006-01-02 15:04:05 MST"))
	return w.Flush()
}

// carriedBy lists the pods, VMs and VMIs carrying m, from live lists.
func carriedBy(ctx context.Context, c client.Client, m mac.MAC) ([]carriers.Carrier, error) {
	var objs []any
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	for i := range pods.Items {
		objs = append(objs, &pods.Items[i])
	}
	vms := &kubevirtv1.VirtualMachineList{}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	for _, list := range []client.ObjectList{vms, vmis} {
		if err := c.List(ctx, list); err != nil && !meta.IsNoMatchError(err) {
			return nil, fmt.Errorf("listing KubeVirt objects: %w", err)
		}
	}
	for i := range vms.Items {
		objs = append(objs, &vms.Items[i])
	}
	for i := range vmis.Items {
		objs = append(objs, &vmis.Items[i])
	}
	var out []carriers.Carrier
	for _, o := range objs {
		for _, cr := range carriers.Of(o) {
			if cr.MAC == m {
				out = append(out, cr)
			}
		}
	}
	return out, nil
}

// Collisions prints MACs that running pods and VMIs report at once.
func Collisions(ctx context.Context, c client.Client, out io.Writer) error {
	var reporters []collision.Reporter
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	for i := range pods.Items {
		if r, ok := collision.FromPod(&pods.Items[i]); ok {
			reporters = append(reporters, r)
		}
	}
	vmis := &kubevirtv1.VirtualMachineInstanceList{}
	switch err := c.List(ctx, vmis); {
	case meta.IsNoMatchError(err):
		// KubeVirt is not installed: pods only.
	case err != nil:
		return fmt.Errorf("listing VirtualMachineInstances: %w", err)
	default:
		for i := range vmis.Items {
			if r, ok := collision.FromVMI(&vmis.Items[i]); ok {
				reporters = append(reporters, r)
			}
		}
	}
	found := collision.Find(reporters)
	if len(found) == 0 {
		fmt.Fprintln(out, "No MAC is used by two running objects.")
		return nil
	}
	macs := make([]mac.MAC, 0, len(found))
	for m := range found {
		macs = append(macs, m)
	}
	sort.Slice(macs, func(i, j int) bool { return macs[i] < macs[j] })
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MAC\tOBJECTS\tUSED BY")
	for _, m := range macs {
		var names []string
		for _, r := range found[m] {
			names = append(names, r.String())
		}
		sort.Strings(names)
		fmt.Fprintf(w, "%s\t%d\t%s\n", m, len(names), strings.Join(names, ", "))
	}
	return w.Flush()
}
