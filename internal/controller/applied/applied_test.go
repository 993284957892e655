package applied

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

func TestCheck(t *testing.T) {
	a, b := mac.MAC(0x020000000001), mac.MAC(0x020000000002)
	gave := func(m mac.MAC) bool { return m == a || m == b }
	pod := func(networks, status string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: map[string]string{
			"k8s.v1.cni.cncf.io/networks": networks}}}
		if status != "" {
			p.Annotations["k8s.v1.cni.cncf.io/network-status"] = status
		}
		return p
	}
	twice := `[{"name":"n","mac":"02:00:00:00:00:01"},{"name":"n","mac":"02:00:00:00:00:02"}]`
	cases := []struct {
		name, networks, status string
		want                   []Mismatch
	}{
		{"no status yet: no verdict", twice, "", nil},
		{"both applied, in order", twice, `[{"name":"ns/n","interface":"net1","mac":"02:00:00:00:00:01"},{"name":"ns/n","interface":"net2","mac":"02-00-00-00-00-02"}]`, nil},
		{"the second not applied", twice, `[{"name":"ns/n","interface":"net1","mac":"02:00:00:00:00:01"},{"name":"ns/n","interface":"net2","mac":"0a:58:00:00:00:09"}]`,
			[]Mismatch{{Network: "ns/n", Given: b, Seen: 0x0a5800000009}}},
		{"an interface missing from the status", twice, `[{"name":"ns/n","interface":"net1","mac":"02:00:00:00:00:01"}]`,
			[]Mismatch{{Network: "ns/n", Given: b}}},
		{"matched by interface name", `[{"name":"n","interface":"net2","mac":"02:00:00:00:00:02"}]`,
			`[{"name":"ns/n","interface":"net1","mac":"0a:58:00:00:00:09"},{"name":"ns/n","interface":"net2","mac":"02:00:00:00:00:02"}]`, nil},
		{"a MAC kubemacpool did not give is not judged", `[{"name":"n","mac":"02:00:00:00:00:07"}]`, `[{"name":"ns/n","mac":"0a:58:00:00:00:09"}]`, nil},
		{"an unreadable status: no verdict", twice, `not json`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Check(carriers.NetworkMACs(pod(c.networks, c.status)), gave)
			if len(got) != len(c.want) {
				t.Fatalf("Check = %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("Check = %v, want %v", got, c.want)
				}
			}
		})
	}
}

// A MAC counts as given to a pod when its entry names the pod, or is still
// a replica's stock (handed out, not yet re-owned): otherwise a pod that
// Multus reports on before the re-own would never be checked.
func TestGivenTo(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-p"}}
	for _, tc := range []struct {
		name  string
		owner v1alpha1.Owner
		want  bool
	}{
		{"the pod", v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p", UID: "uid-p"}, true},
		{"another pod", v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "q", UID: "uid-q"}, false},
		{"a replica's stock", v1alpha1.Owner{Kind: heartbeat.Kind, Namespace: "kubemacpool-system", Name: "replica-a", UID: "inc-1"}, true},
		{"a VM", v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "p"}, false},
	} {
		if got := GivenTo(tc.owner, pod); got != tc.want {
			t.Errorf("%s: GivenTo = %v, want %v", tc.name, got, tc.want)
		}
	}
}
