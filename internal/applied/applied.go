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

	corev1 "k8s.io/api/core/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/collision"
	"github.com/kubemacpool/kubemacpool/internal/ledger"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
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

// GivenTo reports whether an entry held for owner was given to pod: the
// ledger names the pod (an entry made for a generateName prefix matches
// the pod's name).
func GivenTo(owner v1alpha1.Owner, pod *corev1.Pod) bool {
	return ledger.OwnerMatches(owner, "Pod", pod.Namespace, pod.Name, string(pod.UID))
}

// Check compares what the networks annotation asks for with what Multus
// reports, for the networks whose MAC gave(m) says kubemacpool gave this
// pod. It returns nil when they agree, and also when Multus has reported
// nothing yet (no network-status: the pod's sandbox is not set up).
func Check(pod *corev1.Pod, gave func(mac.MAC) bool) []Mismatch {
	reported, ok := collision.NetworkStatus(pod)
	if !ok {
		return nil
	}
	elems, err := multus.Parse(pod.Annotations[multus.NetworksAnnotation], pod.Namespace)
	if err != nil {
		return nil
	}
	// A network listed twice has two status entries, in order; an element
	// naming its interface is matched by it (the first 32 elements, as the
	// collision detector reads them).
	var out []Mismatch
	for i, j := range collision.MatchStatus(elems, reported) {
		e := &elems[i]
		given, err := mac.Parse(e.MAC())
		if err != nil || !gave(given) {
			continue
		}
		var seen mac.MAC
		if j >= 0 {
			seen, _ = mac.Parse(reported[j].Mac) // unparsable: reported as no MAC
		}
		if seen != given {
			out = append(out, Mismatch{Network: e.NetworkKey(), Interface: e.Interface(), Given: given, Seen: seen})
		}
	}
	return out
}
