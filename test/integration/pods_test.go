package integration

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// The seed's example: a pod asking for one network gets a MAC from the
// default range, written into the annotation with the pod's namespace, and
// the MAC is held by a MACAddress bound to the pod.
func TestPodGetsMACFromDefaultRange(t *testing.T) {
	g := NewWithT(t)
	startManager(t, testOptions(t))
	ns := newNamespace(t, nil)

	p := createPod(t, pod(ns, "samplepod", `[{ "name": "ovs-conf"}]`))

	elems := networksOf(t, p)
	g.Expect(elems).To(HaveLen(1))
	g.Expect(elems[0].Name()).To(Equal("ovs-conf"))
	g.Expect(elems[0].Namespace()).To(Equal(ns))
	m := macsOf(t, p)[0]
	g.Expect(mac.DefaultRange.Contains(m)).To(BeTrue(), "MAC %s outside the default range", m)
	g.Expect(m.IsMulticast()).To(BeFalse())
	g.Expect(m.IsUniversal()).To(BeFalse(), "a universally administered MAC may clash with a real NIC")
	g.Expect(p.Annotations["k8s.v1.cni.cncf.io/networks"]).To(Equal(
		`[{"name":"ovs-conf","namespace":"` + ns + `","mac":"` + m.String() + `"}]`))

	expectBound(t, m, p)

	g.Expect(env.Client.Delete(context.Background(), p)).To(Succeed())
	expectReleased(t, m)
}
