package carriers

import (
	"strings"
	"testing"

	"gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/k8sclient"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// FuzzCarriedAsMultus: whatever a pod's networks annotation holds, reading
// what it carries never panics; it carries every MAC that Multus's own
// parser (k8sclient.GetPodNetwork) would apply, decides as Multus does
// whether the JSON form is refused, reads the same "mac" of each element
// (cni-args are the plugins' to read), and never carries less than
// kubemacpool's own parser reads.
func FuzzCarriedAsMultus(f *testing.F) {
	for _, tc := range asMultusCases {
		f.Add(tc.networks, "ns")
	}
	for _, s := range []struct{ value, namespace string }{
		{"", "default"},
		{"net1,other-ns/net2@eth1", "default"},
		{`[{"name":"net1","mac":"02:00:00:00:00:01"}]`, ""},
		{`[{"name":"net1","mac":"a","mac":"b"}]`, "default"},
		{`[{"name":"n\u0061me","m\u0041c":"02:00:00:00:00:01"}]`, "default"},
		{`[null, 1, "x"]`, "default"},
		{`[]`, "default"},
		{`null`, "default"},
		{`"[{"`, "default"},
		{`[{"name":"net1","cni-args":{"MAC":"02:00:00:00:00:01","mac":"02:00:00:00:00:02","x":[1]}}]`, "default"},
	} {
		f.Add(s.value, s.namespace)
	}
	f.Fuzz(func(t *testing.T, value, namespace string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "p",
			Annotations: map[string]string{multus.NetworksAnnotation: value}}}
		carried := map[request]bool{}
		onNetwork := map[request]bool{} // the interface left out
		for _, c := range ofPod(p).List() {
			carried[request{network: c.Network, iface: c.Interface, mac: c.MAC}] = true
			onNetwork[request{network: c.Network, mac: c.MAC}] = true
		}

		// Never more strictly than kubemacpool's own parser: the same MACs
		// on the same networks. (Its interface may differ: it does not
		// read Multus's old "interfaceRequest" key.)
		elems, err := multus.Parse(value, namespace)
		for i := range elems {
			m, perr := mac.Parse(elems[i].MAC())
			if err == nil && perr == nil && !onNetwork[request{network: elems[i].NetworkKey(), mac: m}] {
				t.Errorf("kubemacpool's parser reads %s on %s, not carried\nvalue = %q", m, elems[i].NetworkKey(), value)
			}
		}

		// What Multus applies is carried.
		applied, multusOK := multusReads(p)
		for _, r := range applied {
			if !carried[r] {
				t.Errorf("Multus applies %s on %s (interface %q), not carried\nvalue = %q", r.mac, r.network, r.iface, value)
			}
		}
		// The JSON form is read exactly as Multus reads it. (The short form
		// names no MAC, so whether Multus accepts its names does not matter.)
		if value == "" || !strings.ContainsAny(value, `[{"`) {
			return
		}
		read, ok := asMultus(value, namespace)
		var ours []request // those of "mac": Multus's parser does not look into cni-args
		for _, r := range read {
			if !r.viaArgs {
				ours = append(ours, r)
			}
		}
		if ok != multusOK {
			t.Fatalf("Multus accepts the value: %v, asMultus: %v\nvalue = %q", multusOK, ok, value)
		}
		if len(ours) != len(applied) {
			t.Fatalf("Multus applies %v, asMultus reads %v\nvalue = %q", applied, ours, value)
		}
		for i := range ours {
			if ours[i] != applied[i] {
				t.Errorf("request %d: Multus applies %+v, asMultus reads %+v\nvalue = %q", i, applied[i], ours[i], value)
			}
		}
	})
}

// multusReads is what Multus's own parser reads of p's networks
// annotation: the 48-bit MACs it would apply, and whether it accepts the
// annotation at all. A panic in it (it dereferences a null element) is a
// failure of the pod's setup, as in Multus.
func multusReads(p *corev1.Pod) (rs []request, ok bool) {
	defer func() {
		if recover() != nil {
			rs, ok = nil, false
		}
	}()
	elems, err := k8sclient.GetPodNetwork(p)
	if err != nil {
		return nil, false
	}
	for _, e := range elems {
		if e.MacRequest == "" {
			continue
		}
		m, err := mac.Parse(e.MacRequest)
		if err != nil {
			continue
		}
		rs = append(rs, request{network: e.Namespace + "/" + e.Name, iface: e.InterfaceRequest, mac: m})
	}
	return rs, true
}
