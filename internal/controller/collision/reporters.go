// Package collision finds MACs that two running objects use at once, from
// what the network reports (Multus network-status on pods, KubeVirt's
// status.interfaces on VMIs), whoever chose the MACs: kubemacpool, a user
// or another tool.
package collision

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"

	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// Multus reports the interfaces it set up in these pod annotations; the
// second is the older spelling, still written by some versions.
const (
	NetworkStatusAnnotation    = "k8s.v1.cni.cncf.io/network-status"
	OldNetworkStatusAnnotation = "k8s.v1.cni.cncf.io/networks-status"
)

// Reporter is a running object and the MACs it reports.
type Reporter struct {
	Kind      string
	Namespace string
	Name      string
	UID       types.UID
	MACs      []mac.MAC
	// MigrationUID and Peers tie together the two VMIs of one live
	// migration, which legitimately report the same MAC.
	MigrationUID types.UID
	Peers        []types.UID
	// Ignored is how many network-status entries of a pod were not read:
	// beyond one per network of its annotation, or beyond MaxReported.
	Ignored int
	// LauncherOf is the VMI a pod claims to be the virt-launcher pod of
	// (nil for other objects). The claim is checked per MAC (Colliding):
	// that VMI must report the same MAC.
	LauncherOf *LauncherClaim
}

// LauncherClaim names the VMI a virt-launcher pod says it runs.
type LauncherClaim struct {
	Name string
	UID  types.UID
}

func (r Reporter) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// MaxReported is the most MACs one pod's network-status is read for: the
// annotation is written by whoever may edit the pod, and must not be able
// to make a metric series, or an event on another pod, per MAC it lists.
const MaxReported = 32

// StatusEntry is one Multus network-status entry, as the Network Plumbing
// WG's types spell it.
type StatusEntry = nadv1.NetworkStatus

// NetworkStatus returns a pod's network-status entries (the older
// annotation when the newer is absent); false when there is none, or it is
// not a JSON list of entries.
func NetworkStatus(pod *corev1.Pod) ([]StatusEntry, bool) {
	status, ok := pod.Annotations[NetworkStatusAnnotation]
	if !ok {
		status, ok = pod.Annotations[OldNetworkStatusAnnotation]
	}
	if !ok {
		return nil, false
	}
	var entries []StatusEntry
	if err := json.Unmarshal([]byte(status), &entries); err != nil {
		return nil, false
	}
	return entries, true
}

// MatchStatus pairs each network element of a pod's annotation (the first
// MaxReported) with the network-status entry Multus wrote for it: the first
// entry not yet paired, not the cluster network's, of the same network and,
// when the element names one, the same interface. matched[i] is the index
// in entries of elems[i]'s, or -1.
func MatchStatus(elems []multus.Element, entries []StatusEntry) (matched []int) {
	if len(elems) > MaxReported {
		elems = elems[:MaxReported]
	}
	used := make([]bool, len(entries))
	matched = make([]int, len(elems))
	for i := range elems {
		matched[i] = -1
		for j, e := range entries {
			if used[j] || e.Default || e.Name != elems[i].NetworkKey() || (elems[i].Interface() != "" && e.Interface != elems[i].Interface()) {
				continue
			}
			used[j], matched[i] = true, j
			break
		}
	}
	return matched
}

// FromPod returns what a running pod reports: the MAC Multus reports for
// each network of its networks annotation (one per network element, the
// first MaxReported), the secondary networks kubemacpool manages. The
// cluster network's interface, and any network the pod did not ask for by
// that annotation (a primary user-defined network, say), belong to the pod
// network, whose MACs may repeat legitimately. Ignored counts the
// network-status entries left unread.
func FromPod(pod *corev1.Pod) (Reporter, bool) {
	if pod.Status.Phase != corev1.PodRunning {
		return Reporter{}, false
	}
	r := Reporter{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	if ref, ok := kubevirt.LauncherOf(pod); ok {
		r.LauncherOf = &LauncherClaim{Name: ref.Name, UID: ref.UID}
	}
	entries, ok := NetworkStatus(pod)
	if !ok {
		return r, false
	}
	elems, err := multus.Parse(pod.Annotations[multus.NetworksAnnotation], pod.Namespace)
	if err != nil {
		elems = nil
	}
	read := 0
	for _, j := range MatchStatus(elems, entries) {
		if j < 0 {
			continue
		}
		read++
		if m, err := mac.Parse(entries[j].Mac); err == nil {
			r.MACs = append(r.MACs, m)
		}
	}
	for _, e := range entries {
		if !e.Default {
			r.Ignored++
		}
	}
	r.Ignored -= read
	return r, len(r.MACs) > 0 || r.Ignored > 0
}

// FromVMI returns what a running VMI reports for the interfaces kubemacpool
// manages (Multus networks, the masqueraded pod network). Others, such as a
// pod network bound by a plugin (OVN's 0a:58:... on a primary
// user-defined network), take their MAC from the pod network.
func FromVMI(vmi *kubevirtv1.VirtualMachineInstance) (Reporter, bool) {
	if vmi.Status.Phase != kubevirtv1.Running {
		return Reporter{}, false
	}
	r := Reporter{Kind: "VirtualMachineInstance", Namespace: vmi.Namespace, Name: vmi.Name, UID: vmi.UID}
	managed := map[string]bool{}
	for _, m := range kubevirt.ManagedInterfaces(&vmi.Spec) {
		managed[m.Interface] = true
	}
	for _, i := range vmi.Status.Interfaces {
		if !managed[i.Name] {
			continue
		}
		if m, err := mac.Parse(i.MAC); err == nil {
			r.MACs = append(r.MACs, m)
		}
	}
	if ms := vmi.Status.MigrationState; ms != nil {
		r.MigrationUID = ms.MigrationUID
		for _, side := range []*kubevirtv1.VirtualMachineInstanceCommonMigrationState{sourceOf(ms), targetOf(ms)} {
			if side != nil && side.VirtualMachineInstanceUID != nil {
				r.Peers = append(r.Peers, *side.VirtualMachineInstanceUID)
			}
		}
	}
	return r, len(r.MACs) > 0
}

func sourceOf(ms *kubevirtv1.VirtualMachineInstanceMigrationState) *kubevirtv1.VirtualMachineInstanceCommonMigrationState {
	if ms.SourceState == nil {
		return nil
	}
	return &ms.SourceState.VirtualMachineInstanceCommonMigrationState
}

func targetOf(ms *kubevirtv1.VirtualMachineInstanceMigrationState) *kubevirtv1.VirtualMachineInstanceCommonMigrationState {
	if ms.TargetState == nil {
		return nil
	}
	return &ms.TargetState.VirtualMachineInstanceCommonMigrationState
}

// migrationPair reports whether a and b are the two VMIs of one migration.
func migrationPair(a, b Reporter) bool {
	if a.Kind != "VirtualMachineInstance" || b.Kind != "VirtualMachineInstance" {
		return false
	}
	if a.MigrationUID != "" && a.MigrationUID == b.MigrationUID {
		return true
	}
	for _, p := range a.Peers {
		if p == b.UID {
			return true
		}
	}
	for _, p := range b.Peers {
		if p == a.UID {
			return true
		}
	}
	return false
}

// Colliding returns the reporters of one MAC that collide: every reporter
// except those whose only company is their own workload (a VMI and its
// virt-launcher pods) or their migration peer. Fewer than two means no
// collision.
func Colliding(reporters []Reporter) []Reporter {
	// Judge each launcher pod as the VMI it runs, when that VMI reports
	// this MAC too; a pod whose claim does not hold is judged as itself.
	as := make([]Reporter, len(reporters))
	for i, r := range reporters {
		as[i] = r
		if r.LauncherOf == nil {
			continue
		}
		for _, o := range reporters {
			if o.Kind == "VirtualMachineInstance" && o.Namespace == r.Namespace && o.Name == r.LauncherOf.Name && o.UID == r.LauncherOf.UID {
				as[i] = o
				break
			}
		}
	}
	var out []Reporter
	for i, r := range as {
		for j, other := range as {
			if i != j && r.UID != other.UID && !migrationPair(r, other) && !sameLauncherClaim(reporters[i], reporters[j]) {
				out = append(out, reporters[i])
				break
			}
		}
	}
	return out
}

// sameLauncherClaim reports whether a and b are virt-launcher pods of the
// same VMI (the source and target pods of a migration), which share its
// MACs while the VMI does not report them yet.
func sameLauncherClaim(a, b Reporter) bool {
	return a.LauncherOf != nil && b.LauncherOf != nil && a.Namespace == b.Namespace && *a.LauncherOf == *b.LauncherOf
}

// Find groups reporters by MAC and returns the colliding ones per MAC.
func Find(reporters []Reporter) map[mac.MAC][]Reporter {
	byMAC := map[mac.MAC][]Reporter{}
	for _, r := range reporters {
		for _, m := range r.MACs {
			byMAC[m] = append(byMAC[m], r)
		}
	}
	out := map[mac.MAC][]Reporter{}
	for m, rs := range byMAC {
		if c := Colliding(rs); len(c) > 1 {
			out[m] = c
		}
	}
	return out
}
