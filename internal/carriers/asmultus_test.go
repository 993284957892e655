package carriers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/internal/multus"
)

// A pod the webhook never saw carries what Multus applies: annotations that
// kubemacpool's parser refuses but Multus reads carry their MACs, and those
// Multus refuses as a whole (it then sets up no interface) carry nothing
// unless kubemacpool's parser reads them.
func TestOfPodReadsAsMultus(t *testing.T) {
	for _, tc := range asMultusCases {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u",
				Annotations: map[string]string{multus.NetworksAnnotation: tc.networks}}}
			var got []string
			for _, c := range OfPod(p) {
				got = append(got, c.MAC.String()+"@"+c.Network+"%"+c.Interface)
				if c.Object.String() != "Pod ns/p" || c.For != c.Object {
					t.Errorf("carrier %v: want it carried by and for Pod ns/p", c)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("carried %q, want %q", got, tc.want)
			}
			// The case is what it says: Multus's own parser accepts or
			// refuses the value, and so does kubemacpool's.
			if _, ok := multusReads(p); ok == tc.multusRefuses {
				t.Errorf("Multus's parser accepts the value: %v, want %v", ok, !tc.multusRefuses)
			}
			if _, err := multus.Parse(tc.networks, "ns"); (err == nil) != tc.kubemacpoolReads {
				t.Errorf("kubemacpool's parser: %v, want it to accept the value: %v", err, tc.kubemacpoolReads)
			}
		})
	}
}

var asMultusCases = []struct {
	name     string
	networks string
	want     []string // MAC@network%interface
	// multusRefuses says Multus's own parser refuses the value;
	// kubemacpoolReads that kubemacpool's accepts it.
	multusRefuses, kubemacpoolReads bool
}{
	// Refused by kubemacpool's parser, applied by Multus.
	{name: "MAC key in upper case", networks: `[{"name":"a","MAC":"02:00:00:00:00:01"}]`,
		want: []string{"02:00:00:00:00:01@ns/a%"}},
	{name: "Mac key in mixed case", networks: `[{"name":"a","Mac":"02:00:00:00:00:01"}]`,
		want: []string{"02:00:00:00:00:01@ns/a%"}},
	{name: "every key in another case", networks: `[{"NAME":"a","NameSpace":"o","Interface":"net1","mAc":"02:00:00:00:00:01"}]`,
		want: []string{"02:00:00:00:00:01@o/a%net1"}},
	{name: "a key matched by Unicode case folding (ſ folds to s)", networks: `[{"name":"a","nameſpace":"o","mac":"02:00:00:00:00:01"}]`,
		want: []string{"02:00:00:00:00:01@o/a%"}},
	{name: "duplicate mac keys: the last wins", networks: `[{"name":"a","mac":"02:00:00:00:00:01","mac":"02:00:00:00:00:02"}]`,
		want: []string{"02:00:00:00:00:02@ns/a%"}},
	{name: "duplicate mac keys in two cases: the last wins", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","mac":"02:00:00:00:00:02"}]`,
		want: []string{"02:00:00:00:00:02@ns/a%"}},
	{name: "a refused first value overwritten by a valid one", networks: `[{"name":"a","mac":"nope","Mac":"02:00:00:00:00:03"}]`,
		want: []string{"02:00:00:00:00:03@ns/a%"}},
	{name: "duplicate name keys", networks: `[{"name":"a","name":"b","mac":"02:00:00:00:00:01"}]`,
		want: []string{"02:00:00:00:00:01@ns/b%"}},
	{name: "null namespace is the pod's", networks: `[{"name":"a","namespace":null,"interface":null,"mac":"02:00:00:00:00:01"}]`,
		want: []string{"02:00:00:00:00:01@ns/a%"}},
	{name: "interfaceRequest, Multus's name before 3.2", networks: `[{"name":"a","interfaceRequest":"net7","MAC":"02:00:00:00:00:01"},{"name":"b","interface":"net8","interfaceRequest":"x","MAC":"02:00:00:00:00:02"}]`,
		want: []string{"02:00:00:00:00:01@ns/a%net7", "02:00:00:00:00:02@ns/b%net8"}},
	{name: "upper case, hyphens and dots", networks: `[{"name":"a","MAC":"02-AB-CD-EF-00-01"},{"name":"b","MAC":"02AB.CDEF.0002"}]`,
		want: []string{"02:ab:cd:ef:00:01@ns/a%", "02:ab:cd:ef:00:02@ns/b%"}},
	{name: "unknown keys and Multus's other fields", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","ips":["10.1.1.1/24","fd00::1"],"infiniband-guid":"00:00:00:00:00:00:00:01","default-route":["10.1.1.254"],"cni-args":{"x":1},"portMappings":[{"hostPort":80}],"bandwidth":{"ingressRate":1},"deviceID":"d","whatever":{"k":[1,2]}}]`,
		want: []string{"02:00:00:00:00:01@ns/a%"}},
	{name: "an EUI-64 or InfiniBand address is no 48-bit MAC", networks: `[{"name":"a","MAC":"02:00:00:00:00:00:00:01"},{"name":"b","MAC":"00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:01"},{"name":"c","MAC":"02:00:00:00:00:03"}]`,
		want: []string{"02:00:00:00:00:03@ns/c%"}},
	{name: "an empty MAC asks for none", networks: `[{"name":"a","MAC":""},{"name":"b","MAC":"02:00:00:00:00:02"}]`,
		want: []string{"02:00:00:00:00:02@ns/b%"}},
	{name: "surrounding whitespace and a network listed twice", networks: " \n[ {\"name\":\"a\",\"MAC\":\"02:00:00:00:00:01\"} , {\"name\":\"a\",\"MAC\":\"02:00:00:00:00:02\"} ]\t",
		want: []string{"02:00:00:00:00:01@ns/a%", "02:00:00:00:00:02@ns/a%"}},

	// Plugins that set MACs (bridge, tuning) read a "mac" in cni-args.
	{name: "a MAC in cni-args", networks: `[{"name":"a","cni-args":{"mac":"02:00:00:00:00:05","vlan":7}}]`,
		want: []string{"02:00:00:00:00:05@ns/a%"}, kubemacpoolReads: true},
	{name: "a MAC in cni-args and one of the element", networks: `[{"name":"a","interface":"net1","mac":"02:00:00:00:00:01","cni-args":{"mac":"02-00-00-00-00-05"}}]`,
		want: []string{"02:00:00:00:00:01@ns/a%net1", "02:00:00:00:00:05@ns/a%net1"}, kubemacpoolReads: true},
	{name: "cni-args keys in several cases: the last in encoding order", networks: `[{"name":"a","cni-args":{"mac":"02:00:00:00:00:06","MAC":"02:00:00:00:00:05"}}]`,
		want: []string{"02:00:00:00:00:06@ns/a%"}, kubemacpoolReads: true},
	{name: "cni-args MACs the plugins refuse", networks: `[{"name":"a","cni-args":{"mac":7}},{"name":"b","cni-args":{"mac":"nope"}},{"name":"c","cni-args":{"mac":null}},{"name":"d","cni-args":null}]`,
		kubemacpoolReads: true},

	// Refused by both: Multus sets up no interface of the pod.
	{name: "Multus refuses a MAC with spaces", networks: `[{"name":"a","MAC":" 02:00:00:00:00:01"}]`, multusRefuses: true},
	{name: "Multus refuses one bad MAC for all", networks: `[{"name":"a","MAC":"02:00:00:00:00:01"},{"name":"b","mac":"nope"}]`, multusRefuses: true},
	{name: "Multus refuses a bad IP", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","ips":["10.0.0.300"]}]`, multusRefuses: true},
	{name: "Multus refuses a bad CIDR", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","ips":["10.0.0.1/33"]}]`, multusRefuses: true},
	{name: "Multus refuses a bad InfiniBand GUID", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","infiniband-guid":"guid"}]`, multusRefuses: true},
	{name: "Multus refuses a bad default route", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","default-route":["gw"]}]`, multusRefuses: true},
	{name: "Multus refuses a field of the wrong type", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","ips":"10.0.0.1"}]`, multusRefuses: true},
	{name: "Multus refuses a MAC that is not a string", networks: `[{"name":"a","mac":2}]`, multusRefuses: true},
	{name: "Multus refuses cni-args that are not an object", networks: `[{"name":"a","MAC":"02:00:00:00:00:01","cni-args":[1]}]`, multusRefuses: true},
	{name: "Multus fails on a null element", networks: `[{"name":"a","MAC":"02:00:00:00:00:01"},null]`, multusRefuses: true},
	{name: "Multus refuses a single object", networks: `{"name":"a","mac":"02:00:00:00:00:01"}`, multusRefuses: true},
	{name: "Multus refuses invalid JSON", networks: `[{"name":"a","MAC":"02:00:00:00:00:01"}`, multusRefuses: true},
	{name: "the short form names no MAC", networks: `a,o/b@net1`, kubemacpoolReads: true},

	// Refused by Multus, read by kubemacpool's parser: never fewer
	// than that parser reads.
	{name: "kubemacpool's reading when Multus refuses", networks: `[{"name":"a","mac":" 02:00:00:00:00:01"},{"name":"b","mac":"02:00:00:00:00:02","ips":["x"]}]`,
		want: []string{"02:00:00:00:00:01@ns/a%", "02:00:00:00:00:02@ns/b%"}, multusRefuses: true, kubemacpoolReads: true},
}
