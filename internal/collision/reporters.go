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

	"github.com/kubemacpool/kubemacpool/internal/kubevirt"
	"github.com/kubemacpool/kubemacpool/internal/mac"
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
}

func (r Reporter) String() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// FromPod returns what a running pod reports. virt-launcher pods are left
// out: they report their VMI's MACs, which the VMI reports itself.
func FromPod(pod *corev1.Pod) (Reporter, bool) {
	if pod.Status.Phase != corev1.PodRunning || kubevirt.IsVirtLauncher(pod) {
		return Reporter{}, false
	}
	r := Reporter{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	status := pod.Annotations[NetworkStatusAnnotation]
	if status == "" {
		status = pod.Annotations[OldNetworkStatusAnnotation]
	}
	var entries []struct {
		MAC     string `json:"mac"`
		Default bool   `json:"default"`
	}
	if err := json.Unmarshal([]byte(status), &entries); err != nil {
		return r, len(r.MACs) > 0
	}
	for _, e := range entries {
		// The default (cluster) network's MAC belongs to the pod network
		// and may legitimately repeat across nodes' bridges; secondary
		// networks are the shared L2 segments kubemacpool guards.
		if e.Default {
			continue
		}
		if m, err := mac.Parse(e.MAC); err == nil {
			r.MACs = append(r.MACs, m)
		}
	}
	return r, len(r.MACs) > 0
}

// FromVMI returns what a running VMI reports.
func FromVMI(vmi *kubevirtv1.VirtualMachineInstance) (Reporter, bool) {
	if vmi.Status.Phase != kubevirtv1.Running {
		return Reporter{}, false
	}
	r := Reporter{Kind: "VirtualMachineInstance", Namespace: vmi.Namespace, Name: vmi.Name, UID: vmi.UID}
	for _, i := range vmi.Status.Interfaces {
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
// except those whose only company is their migration peer. Fewer than two
// means no collision.
func Colliding(reporters []Reporter) []Reporter {
	var out []Reporter
	for i, r := range reporters {
		for j, other := range reporters {
			if i != j && r.UID != other.UID && !migrationPair(r, other) {
				out = append(out, r)
				break
			}
		}
	}
	return out
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
