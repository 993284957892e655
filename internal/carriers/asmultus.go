package carriers

import (
	"encoding/json"
	"net"
	"strings"

	multustypes "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/types"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// request is one MAC that a pod's networks annotation asks Multus to give
// the interface of one network.
type request struct {
	network string // "namespace/name"
	iface   string // "" when the annotation names none
	mac     mac.MAC
	// viaArgs says the MAC is given in the element's "cni-args", not by
	// its "mac" (see cniArgsMAC).
	viaArgs bool
}

// requests lists the MACs a networks annotation value asks for, read the
// way Multus reads it, never more strictly than kubemacpool's own parser.
//
// kubemacpool's parser (internal/multus) is strict on purpose: it decides
// what the webhook admits and rewrites. But a pod in a namespace the webhook
// does not serve keeps whatever its author wrote, and Multus sets up its
// interfaces all the same, applying each MAC it reads. What Multus applies
// is on the network, so it must be carried. So the value is read as Multus
// reads it (asMultus). When Multus refuses the value it sets up no
// interfaces at all; the value is then read as kubemacpool's parser reads
// it, so nothing that parser accepts is ever carried less (holding the MACs
// of a pod that never got them costs a MAC each; another CNI reading the
// annotation may still apply them).
func requests(value, podNamespace string) []request {
	if rs, ok := asMultus(value, podNamespace); ok {
		return rs
	}
	return asKubemacpool(value, podNamespace)
}

// asMultus reads value as Multus v4 reads it before setting up a pod's
// networks (k8sclient.GetPodNetwork, in the multus-cni module go.mod pins),
// and lists the 48-bit MACs it would apply. ok is false when Multus refuses
// the value: then it sets up no interface of the pod.
//
// Multus picks the form by whether the value contains any of `[{"`. The
// short form ("ns/net@iface", comma-separated) cannot name a MAC, so it asks
// for none whether Multus accepts its names or not. The JSON form is decoded
// with encoding/json into Multus's own NetworkSelectionElement, so the
// element is what Multus sees: keys match their fields whatever their letter
// case, the last of duplicate keys wins, unknown keys are ignored, null
// leaves a field empty, and a value of the wrong type for any field (ips,
// default-route, cni-args, ...) refuses the whole value. Multus then checks
// every element, refusing the whole value when one fails: the MAC and the
// InfiniBand GUID must parse with net.ParseMAC as written (no spaces), each
// IP with net.ParseIP or net.ParseCIDR. A null element makes Multus fail
// too (it dereferences every element). An element without a namespace is in
// the pod's; "interfaceRequest" (Multus's name before 3.2) names the
// interface when "interface" does not. A "mac" in an element's "cni-args"
// is listed too (see cniArgsMAC).
//
// A MAC that net.ParseMAC accepts but that is not 48 bits (an 8-octet
// EUI-64, a 20-octet InfiniBand address) is not an Ethernet MAC: no 48-bit
// MAC can collide with it, so it is not listed.
func asMultus(value, podNamespace string) (rs []request, ok bool) {
	if !strings.ContainsAny(value, `[{"`) {
		return nil, true
	}
	var elems []*multustypes.NetworkSelectionElement
	if err := json.Unmarshal([]byte(value), &elems); err != nil {
		return nil, false
	}
	for _, e := range elems {
		if e == nil || !multusAccepts(e) {
			return nil, false
		}
		ns := e.Namespace
		if ns == "" {
			ns = podNamespace
		}
		iface := e.InterfaceRequest
		if iface == "" {
			iface = e.DeprecatedInterfaceRequest
		}
		// An EUI-64 or InfiniBand address fails mac.Parse (net.ParseMAC
		// took it above): it is not listed.
		if m, err := mac.Parse(e.MacRequest); e.MacRequest != "" && err == nil {
			rs = append(rs, request{network: ns + "/" + e.Name, iface: iface, mac: m})
		}
		if m, ok := cniArgsMAC(e.CNIArgs); ok {
			rs = append(rs, request{network: ns + "/" + e.Name, iface: iface, mac: m, viaArgs: true})
		}
	}
	return rs, true
}

// cniArgsMAC is the MAC that an element's "cni-args" give its interface.
// Multus passes cni-args to every plugin of the network's configuration as
// args.cni, re-encoded with encoding/json (keys sorted), and plugins that
// set MACs read a "mac" there: bridge when the element names none, tuning
// even over the element's. They decode it with encoding/json too (any
// letter case, the last key winning) and parse it with net.ParseMAC. The
// "mac" is decoded alone, so a plugin refusing another of its args (and
// failing the pod) does not hide it. A network whose plugins read no such
// key never applies it; carrying it anyway costs one MAC of the pool, while
// an applied MAC that is not carried may be handed out again.
func cniArgsMAC(args *map[string]any) (mac.MAC, bool) {
	if args == nil || len(*args) == 0 {
		return 0, false
	}
	encoded, err := json.Marshal(*args)
	if err != nil {
		return 0, false
	}
	var read struct {
		MAC *string `json:"mac"`
	}
	if json.Unmarshal(encoded, &read) != nil || read.MAC == nil {
		return 0, false
	}
	if _, err := net.ParseMAC(*read.MAC); err != nil { // the plugin fails
		return 0, false
	}
	m, err := mac.Parse(*read.MAC)
	return m, err == nil
}

// multusAccepts makes the checks Multus makes of each decoded element.
func multusAccepts(e *multustypes.NetworkSelectionElement) bool {
	if e.MacRequest != "" {
		if _, err := net.ParseMAC(e.MacRequest); err != nil {
			return false
		}
	}
	if e.InfinibandGUIDRequest != "" {
		if _, err := net.ParseMAC(e.InfinibandGUIDRequest); err != nil {
			return false
		}
	}
	for _, ip := range e.IPRequest {
		if strings.Contains(ip, "/") {
			if _, _, err := net.ParseCIDR(ip); err != nil {
				return false
			}
		} else if net.ParseIP(ip) == nil {
			return false
		}
	}
	return true
}

// asKubemacpool reads value with kubemacpool's own parser, skipping
// values that are not MACs; nothing when the parser refuses it.
func asKubemacpool(value, podNamespace string) []request {
	elems, err := multus.Parse(value, podNamespace)
	if err != nil {
		return nil
	}
	var rs []request
	for i := range elems {
		m, err := mac.Parse(elems[i].MAC())
		if err != nil {
			continue
		}
		rs = append(rs, request{network: elems[i].NetworkKey(), iface: elems[i].Interface(), mac: m})
	}
	return rs
}
