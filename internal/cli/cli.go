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
	"k8s.io/apimachinery/pkg/runtime"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/controller/applied"
	"github.com/kubemacpool/kubemacpool/internal/controller/collision"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/peers"
	"github.com/kubemacpool/kubemacpool/internal/rangeconfig"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// Commands lists the subcommands, for usage messages.
const Commands = "status | who MAC | collisions | not-applied"

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
		return Who(ctx, c, namespace, args[1], out)
	case "collisions":
		return Collisions(ctx, c, namespace, out)
	case "not-applied":
		return NotApplied(ctx, c, out)
	}
	return fmt.Errorf("unknown command %q: %s", args[0], Commands)
}

// Status prints the range, its size, what is held and waiting, and counts
// per namespace, from the ledger and what objects carry.
func Status(ctx context.Context, c client.Client, namespace string, out io.Writer) error {
	cm := &corev1.ConfigMap{}
	var data map[string]string
	source := fmt.Sprintf("ConfigMap %s/%s", namespace, rangeconfig.ConfigMapName)
	switch err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: rangeconfig.ConfigMapName}, cm); {
	case apierrors.IsNotFound(err):
		source = "default: no ConfigMap " + namespace + "/" + rangeconfig.ConfigMapName
	case err != nil:
		return err
	default:
		data = cm.Data
	}
	alloc, rangeErr := rangeconfig.Parse(data)

	entries, blocks, carried, err := ledgerAndCarriers(ctx, c)
	if err != nil {
		return err
	}
	perNS := map[string]map[string]int{}
	count := func(ns, key string) {
		if perNS[ns] == nil {
			perNS[ns] = map[string]int{}
		}
		perNS[ns][key]++
	}
	held := map[mac.MAC]bool{}
	var waiting int
	stock := map[string]int{} // per replica (and incarnation)
	for _, e := range entries {
		held[e.MAC] = true
		if heartbeat.IsStock(e.Owner) && len(carried[e.MAC]) == 0 {
			stock[fmt.Sprintf("%s (incarnation %s)", e.Owner.Name, e.Owner.UID)]++
			continue
		}
		key := e.Owner.Kind
		if !holders.Bound(e.Owner, carried[e.MAC]) {
			waiting++
			key = "Reserved"
		}
		count(e.Owner.Namespace, key)
	}
	var unadopted int
	for m := range carried {
		if !held[m] {
			held[m] = true
			unadopted++
		}
	}
	inRange := 0
	for m := range held {
		if rangeErr == nil && alloc.Contains(m) {
			inRange++
		}
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
		fmt.Fprintf(w, "Held:\t%d in range (%.4f%%), %d in all\n", inRange, 100*float64(inRange)/float64(alloc.Size()), len(held))
	}
	fmt.Fprintf(w, "Ledger:\t%d entries in %d MAC blocks\n", len(entries), blocks)
	fmt.Fprintf(w, "Waiting:\t%d reservations not bound yet\n", waiting)
	replicas := make([]string, 0, len(stock))
	for r := range stock {
		replicas = append(replicas, r)
	}
	sort.Strings(replicas)
	for _, r := range replicas {
		fmt.Fprintf(w, "In stock:\t%d held by replica %s for admissions (or handed out, and its object not stored yet)\n", stock[r], r)
	}
	if unadopted > 0 {
		fmt.Fprintf(w, "Not adopted yet:\t%d MACs carried without an entry (held all the same; the leader adopts them)\n", unadopted)
	}
	if err := peerStatus(ctx, c, namespace, w); err != nil {
		return err
	}
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

// ledgerAndCarriers lists the ledger's entries (and how many blocks hold
// them) and what every object carries, with claims judged by those entries.
func ledgerAndCarriers(ctx context.Context, c client.Client) ([]ledger.Entry, int, map[mac.MAC][]carriers.Carrier, error) {
	entries, blocks, err := ledgerEntries(ctx, c)
	if err != nil {
		return nil, 0, nil, err
	}
	byMAC := map[mac.MAC]*v1alpha1.MACBlockEntry{}
	for i := range entries {
		byMAC[entries[i].MAC] = &entries[i].MACBlockEntry
	}
	carried, err := carriedMACs(ctx, c, func(m mac.MAC) *v1alpha1.MACBlockEntry { return byMAC[m] })
	return entries, blocks, carried, err
}

// ledgerEntries lists every entry of every MAC block.
func ledgerEntries(ctx context.Context, c client.Client) ([]ledger.Entry, int, error) {
	list := &v1alpha1.MACBlockList{}
	if err := c.List(ctx, list); err != nil {
		return nil, 0, fmt.Errorf("listing MACBlocks: %w", err)
	}
	var out []ledger.Entry
	for i := range list.Items {
		start, ok := ledger.StartOf(&list.Items[i])
		if !ok {
			continue
		}
		for _, e := range list.Items[i].Spec.Entries {
			out = append(out, ledger.Entry{MAC: start + mac.MAC(e.Offset), MACBlockEntry: e})
		}
	}
	return out, len(list.Items), nil
}

// peerStatus prints each peer cluster: reachable from here with its
// Secret's kubeconfig, and how much its ledger holds; or why not.
func peerStatus(ctx context.Context, c client.Client, namespace string, w io.Writer) error {
	configs, refused, err := peers.ReadSecrets(ctx, c, namespace, "", false)
	if err != nil {
		return err
	}
	for _, p := range configs {
		name := p.Name
		if name == "" {
			name = "(unnamed)"
		}
		if err := refused[p.Secret]; err != nil {
			fmt.Fprintf(w, "Peer %s:\tREFUSED: Secret %s: %v\n", name, p.Secret, err)
			continue
		}
		entries, blocks, err := peerEntries(ctx, p, c.Scheme())
		if err != nil {
			fmt.Fprintf(w, "Peer %s:\tUNREACHABLE from here with Secret %s: %v (kubemacpool keeps what it last saw there held)\n", name, p.Secret, err)
			continue
		}
		fmt.Fprintf(w, "Peer %s:\t%d MACs held there, in %d MAC blocks (never handed out here; Secret %s)\n", name, len(entries), blocks, p.Secret)
	}
	return nil
}

// peerEntries lists a peer cluster's ledger.
func peerEntries(ctx context.Context, p peers.Config, scheme *runtime.Scheme) ([]ledger.Entry, int, error) {
	pc, err := p.Client(scheme)
	if err != nil {
		return nil, 0, err
	}
	return ledgerEntries(ctx, pc)
}

// peerHolders prints what each peer cluster's ledger holds for m.
func peerHolders(ctx context.Context, c client.Client, namespace string, m mac.MAC, w io.Writer) (held bool, err error) {
	configs, refused, err := peers.ReadSecrets(ctx, c, namespace, "", false)
	if err != nil {
		return false, err
	}
	for _, p := range configs {
		if refused[p.Secret] != nil {
			continue
		}
		pc, err := p.Client(c.Scheme())
		if err != nil {
			return held, err
		}
		e, err := ledger.ReadEntry(ctx, pc, m)
		if err != nil {
			fmt.Fprintf(w, "Peer %s:\tUNREACHABLE from here: %v\n", p.Name, err)
			continue
		}
		if e != nil {
			held = true
			fmt.Fprintf(w, "Held in cluster %s by:\t%s (never handed out here)\n", p.Name, holders.Describe(e))
		}
	}
	return held, nil
}

// Who prints the holder of a MAC, whatever its spelling: its ledger entry,
// or the objects carrying it, and what peer clusters hold for it.
func Who(ctx context.Context, c client.Client, namespace, spelled string, out io.Writer) error {
	m, err := mac.Parse(spelled)
	if err != nil {
		return err
	}
	var atPeers strings.Builder
	pw := tabwriter.NewWriter(&atPeers, 0, 4, 2, ' ', 0)
	heldAtPeers, err := peerHolders(ctx, c, namespace, m, pw)
	if err != nil {
		return err
	}
	pw.Flush()
	defer func() { fmt.Fprint(out, atPeers.String()) }()
	block := &v1alpha1.MACBlock{}
	var entry *v1alpha1.MACBlockEntry
	switch err := c.Get(ctx, client.ObjectKey{Name: ledger.BlockName(m)}, block); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	default:
		entry = ledger.Find(block, ledger.Offset(m))
	}
	// Only m's own entry decides whom its carriers carry it for.
	carried, err := carriedMACs(ctx, c, func(other mac.MAC) *v1alpha1.MACBlockEntry {
		if other == m {
			return entry
		}
		return nil
	})
	if err != nil {
		return err
	}
	found := carried[m]
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if entry == nil {
		if len(found) == 0 {
			if heldAtPeers {
				fmt.Fprintf(out, "%s is not held in this cluster (no entry in MACBlock %s, and no pod, VM or VMI carries it), but a peer cluster holds it:\n", m, ledger.BlockName(m))
				return nil
			}
			fmt.Fprintf(out, "%s is not held: no entry in MACBlock %s, and no pod, VM or VMI carries it\n", m, ledger.BlockName(m))
			return nil
		}
		fmt.Fprintf(w, "MAC:\t%s\n", m)
		printCarriers(w, found)
		fmt.Fprintf(w, "Phase:\tCarried, not in the ledger yet (kubemacpool adopts it; until then it is held all the same and never handed out)\n")
		return w.Flush()
	}
	o := entry.Owner
	if heartbeat.IsStock(o) {
		fmt.Fprintf(w, "MAC:\t%s\n", m)
		fmt.Fprintf(w, "Holder:\tthe stock of kubemacpool replica %s (incarnation %s), in namespace %s\n", o.Name, o.UID, o.Namespace)
		phase := "In stock: held for pods and VMs that ask for no MAC, or handed out to one whose object is not stored yet"
		if len(found) > 0 {
			phase = "Handed out: its object carries it; the replica passes the entry to it shortly"
		}
		fmt.Fprintf(w, "Phase:\t%s\n", phase)
		fmt.Fprintf(w, "Since:\t%s\n", entry.Reserved.UTC().Format("2006-01-02 15:04:05 MST"))
		fmt.Fprintf(w, "Block:\tMACBlock %s\n", block.Name)
		printCarriers(w, found)
		return w.Flush()
	}
	name := o.DisplayName()
	if o.Name == "" {
		name += " (generated name)"
	}
	fmt.Fprintf(w, "MAC:\t%s\n", m)
	fmt.Fprintf(w, "Holder:\t%s %s/%s\n", o.Kind, o.Namespace, name)
	if o.Kind == sticky.Kind {
		fmt.Fprintf(w, "For pod:\t%s (kept while it is away, as long as the StatefulSet keeps ordinal %d)\n", sticky.PodName(o.Name, o.Ordinal), o.Ordinal)
	}
	if o.UID != "" {
		fmt.Fprintf(w, "UID:\t%s\n", o.UID)
	}
	if entry.Network != "" {
		fmt.Fprintf(w, "Network:\t%s\n", entry.Network)
	}
	if entry.Interface != "" {
		fmt.Fprintf(w, "Interface:\t%s\n", entry.Interface)
	}
	phase := "Reserved (its owner is not seen carrying it yet; released if it is not within the grace period)"
	if holders.Bound(o, found) {
		phase = "Bound"
	}
	if entry.Adopted {
		phase += ", adopted"
	}
	fmt.Fprintf(w, "Phase:\t%s\n", phase)
	fmt.Fprintf(w, "Since:\t%s\n", entry.Reserved.UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "Block:\tMACBlock %s\n", block.Name)
	printCarriers(w, found)
	return w.Flush()
}

func printCarriers(w io.Writer, found []carriers.Carrier) {
	for _, f := range found {
		fmt.Fprintf(w, "Carried by:\t%s (network %s)\n", f.Object, f.Network)
		if f.For != f.Object {
			fmt.Fprintf(w, "For:\t%s\n", f.For)
		}
	}
}

// carriedMACs lists what every pod, VM and VMI carries, from live lists,
// with each object's claims (a VMI's VM, a launcher pod's VMI) checked as
// a replica checks them (carriers.Index.Resolve); entryOf gives the ledger
// entry of a MAC, if it has one.
func carriedMACs(ctx context.Context, c client.Client, entryOf func(mac.MAC) *v1alpha1.MACBlockEntry) (map[mac.MAC][]carriers.Carrier, error) {
	var objs []client.Object
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
	kinds := map[client.Object]string{}
	for i := range vms.Items {
		objs = append(objs, &vms.Items[i])
		kinds[&vms.Items[i]] = carriers.VirtualMachine
	}
	for i := range vmis.Items {
		objs = append(objs, &vmis.Items[i])
		kinds[&vmis.Items[i]] = carriers.VirtualMachineInstance
	}
	ix := carriers.NewIndex(nil)
	ix.CheckHeldWith(func(m mac.MAC, owner carriers.Ref) bool {
		e := entryOf(m)
		return e != nil && holders.OwnerIs(e.Owner, owner)
	})
	for _, o := range objs {
		kind, ok := kinds[o]
		if !ok {
			kind = carriers.Pod
		}
		ix.Set(kind, o.GetNamespace(), o.GetName(), carriers.Of(o))
	}
	out := map[mac.MAC][]carriers.Carrier{}
	for _, m := range ix.MACs() {
		out[m] = ix.Of(m)
	}
	return out, nil
}

// Collisions prints MACs that running pods and VMIs report at once, and
// MACs that objects here carry while a peer cluster holds them for another.
func Collisions(ctx context.Context, c client.Client, namespace string, out io.Writer) error {
	if err := running(ctx, c, out); err != nil {
		return err
	}
	return acrossClusters(ctx, c, namespace, out)
}

// acrossClusters prints the cross-cluster collisions: the holders' rule
// refuses the object here the MAC a peer's ledger holds.
func acrossClusters(ctx context.Context, c client.Client, namespace string, out io.Writer) error {
	configs, refused, err := peers.ReadSecrets(ctx, c, namespace, "", false)
	if err != nil || len(configs) == 0 {
		return err
	}
	_, _, carried, err := ledgerAndCarriers(ctx, c)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	n := 0
	for _, p := range configs {
		if refused[p.Secret] != nil {
			continue
		}
		held, _, err := peerEntries(ctx, p, c.Scheme())
		if err != nil {
			fmt.Fprintf(out, "Peer cluster %s is unreachable from here: %v\n", p.Name, err)
			continue
		}
		for _, e := range held {
			pe := holders.PeerEntry{Cluster: p.Name, Entry: e.MACBlockEntry}
			for _, carrier := range carried[e.MAC] {
				if !holders.CollidesAcross(carrier, pe) {
					continue
				}
				if n == 0 {
					fmt.Fprintln(w, "MAC\tCARRIED HERE BY\tHELD IN CLUSTER\tBY")
				}
				n++
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.MAC, carrier.Object, p.Name, holders.Describe(&pe.Entry))
			}
		}
	}
	if n == 0 {
		fmt.Fprintln(out, "No MAC carried here is held by a peer cluster for another object.")
		return nil
	}
	return w.Flush()
}

// running prints MACs that running pods and VMIs report at once.
func running(ctx context.Context, c client.Client, out io.Writer) error {
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

// NotApplied prints the pods whose network-status reports, for a network
// kubemacpool gave a MAC, another MAC or none.
func NotApplied(ctx context.Context, c client.Client, out io.Writer) error {
	entries, _, err := ledgerEntries(ctx, c)
	if err != nil {
		return err
	}
	held := map[mac.MAC]v1alpha1.Owner{}
	for _, e := range entries {
		held[e.MAC] = e.Owner
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods); err != nil {
		return fmt.Errorf("listing pods: %w", err)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	n := 0
	for i := range pods.Items {
		p := &pods.Items[i]
		ms := applied.Check(carriers.NetworkMACs(p), func(m mac.MAC) bool { return applied.GivenTo(held[m], p) })
		if len(ms) == 0 {
			continue
		}
		if n == 0 {
			fmt.Fprintln(w, "POD\tNETWORK\tGIVEN\tREPORTED")
		}
		n++
		for _, m := range ms {
			seen := "none"
			if m.Seen != 0 {
				seen = m.Seen.String()
			}
			fmt.Fprintf(w, "%s/%s\t%s\t%s\t%s\n", p.Namespace, p.Name, m.Network, m.Given, seen)
		}
	}
	if n == 0 {
		fmt.Fprintln(out, "Every pod's interfaces have the MACs kubemacpool gave them (or Multus has not reported yet).")
		return nil
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d pods; %s.\n", n, applied.Hint)
	return nil
}
