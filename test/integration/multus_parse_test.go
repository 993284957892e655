package integration

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	"gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/k8sclient"
	multustypes "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/types"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// Multus reads what kubemacpool writes: the annotation of each stored pod
// is parsed with Multus's own parser (k8sclient.GetPodNetwork, what the
// Multus CNI plugin runs at pod setup), and Multus must request exactly the
// MAC kubemacpool reserved for each network, with the namespace and the
// interface the user wrote, and every other key kept.
func TestMultusReadsWhatKubemacpoolWrites(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	type want struct{ name, namespace, iface string }
	cases := []struct {
		name, networks string
		want           []want
		check          func(g Gomega, elems []*multusElement)
	}{
		{"short form", "net-a, other-ns/net-b@eth2", []want{{"net-a", ns, ""}, {"net-b", "other-ns", "eth2"}}, nil},
		{"JSON with the keys kubemacpool does not own",
			`[{"name":"net-a","interface":"net1","ips":["10.1.0.5/24"],"cni-args":{"vlan":"7"}}]`,
			[]want{{"net-a", ns, "net1"}},
			func(g Gomega, elems []*multusElement) {
				g.Expect(elems[0].IPRequest).To(Equal([]string{"10.1.0.5/24"}))
				g.Expect(elems[0].CNIArgs).NotTo(BeNil())
				g.Expect(*elems[0].CNIArgs).To(HaveKeyWithValue("vlan", "7"))
			}},
		{"the same network twice, and a namespace written out",
			`[{"name":"net-a"},{"name":"net-a","interface":"net9"},{"name":"net-c","namespace":"` + ns + `"}]`,
			[]want{{"net-a", ns, ""}, {"net-a", ns, "net9"}, {"net-c", ns, ""}}, nil},
		{"a MAC the user wrote, in another spelling", `[{"name":"net-a","mac":"02-5A-00-00-00-01"}]`, []want{{"net-a", ns, ""}}, nil},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			p := createPod(t, pod(ns, "p"+string(rune('a'+i)), c.networks))
			got := multusRequests(g, p)
			g.Expect(got).To(HaveLen(len(c.want)))
			ours := macsOf(t, p)
			for j, w := range c.want {
				g.Expect(got[j].Name).To(Equal(w.name))
				g.Expect(got[j].Namespace).To(Equal(w.namespace))
				g.Expect(got[j].InterfaceRequest).To(Equal(w.iface))
				requested, err := mac.Parse(got[j].MacRequest)
				g.Expect(err).NotTo(HaveOccurred(), "Multus requests %q", got[j].MacRequest)
				g.Expect(requested).To(Equal(ours[j]), "network %d", j)
				expectBound(t, requested, p)
			}
			if c.check != nil {
				c.check(g, got)
			}
		})
	}

	// An edit adding a network: Multus (the dynamic networks controller
	// reads the same annotation) sees the old MAC kept and the new one.
	p := createPod(t, pod(ns, "edited", `[{"name":"net-a","interface":"net1"}]`))
	before := macsOf(t, p)[0]
	cur := &corev1.Pod{}
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(p), cur)).To(Succeed())
	cur.Annotations[multus.NetworksAnnotation] = `[{"name":"net-a","interface":"net1"},{"name":"net-b","interface":"net2"}]`
	g.Expect(env.Client.Update(ctx, cur)).To(Succeed())
	got := multusRequests(g, cur)
	g.Expect(got).To(HaveLen(2))
	g.Expect(mac.Parse(got[0].MacRequest)).To(Equal(before))
	added, err := mac.Parse(got[1].MacRequest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(added).NotTo(Equal(before))
	expectBound(t, added, cur)
}

// multusElement is Multus's own reading of one network.
type multusElement = multustypes.NetworkSelectionElement

// multusRequests parses a stored pod's networks annotation as Multus does.
func multusRequests(g Gomega, p *corev1.Pod) []*multusElement {
	elems, err := k8sclient.GetPodNetwork(p)
	g.Expect(err).NotTo(HaveOccurred(), "Multus cannot parse %q", p.Annotations[multus.NetworksAnnotation])
	return elems
}
