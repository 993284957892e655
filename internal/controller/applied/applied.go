// Package applied tells whether the MACs kubemacpool gave a pod are the MACs
// its interfaces got. kubemacpool only writes a MAC into the networks
// annotation; the CNI plugin applies it only when the
// NetworkAttachmentDefinition has the tuning plugin or another plugin that
// takes a "mac". Multus reports the MAC it configured in the pod's
// network-status annotation, so the two can be compared.
package applied

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/holders"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Hint is what the events and the CLI tell the user to check.
const Hint = "the MAC is applied only when the NetworkAttachmentDefinition has the tuning plugin (or another plugin that takes a \"mac\")"

// Mismatch is one network whose interface does not have the MAC given.
type Mismatch struct {
	Network   string
	Interface string
	Given     mac.MAC
	// Seen is what Multus reports; zero when it reports no MAC, or no
	// interface, for the network.
	Seen mac.MAC
}

func (m Mismatch) String() string {
	seen := "no MAC"
	if m.Seen != 0 {
		seen = m.Seen.String()
	}
	network := "network " + m.Network
	if m.Interface != "" {
		network += " (interface " + m.Interface + ")"
	}
	return fmt.Sprintf("%s: kubemacpool gave %s, Multus reports %s", network, m.Given, seen)
}

// Describe is the note of a MACNotApplied event for ms.
func Describe(ms []Mismatch) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return strings.Join(parts, "; ") + "; " + Hint
}

// GivenTo reports whether an entry held for owner was given to a pod that
// carries its MAC: the ledger names the pod (an entry made for a
// generateName prefix matches the pod's name), or the entry is still a
// replica's stock. A MAC handed out of the stock stays the replica's entry
// until the keeper re-owns it (every 2 s), and on a node Multus reports
// within a second of the create: the checker judges the pod then, and is
// not called again when the entry changes. Nothing else puts a stock MAC
// in a pod's annotation (an explicit request for one is refused).
func GivenTo(owner v1alpha1.Owner, pod metav1.Object) bool {
	return heartbeat.IsStock(owner) ||
		holders.OwnerIs(owner, carriers.Ref{Kind: carriers.Pod, Namespace: pod.GetNamespace(), Name: pod.GetName(), UID: pod.GetUID()})
}

// Check compares what the networks annotation of a pod asks for with what
// Multus reports (carriers.NetworkMACs), for the networks whose MAC gave(m)
// says kubemacpool gave this pod. It returns nil when they agree, and also
// when Multus has reported nothing yet.
func Check(networks []carriers.NetworkMAC, gave func(mac.MAC) bool) []Mismatch {
	var out []Mismatch
	for _, n := range networks {
		if n.Seen != n.Given && gave(n.Given) {
			out = append(out, Mismatch{Network: n.Network, Interface: n.Interface, Given: n.Given, Seen: n.Seen})
		}
	}
	return out
}
