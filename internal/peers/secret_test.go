package peers

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: east, cluster: {server: "https://10.0.0.1:6443"}}]
users: [{name: reader, user: {token: abc}}]
contexts: [{name: east, context: {cluster: east, user: reader}}]
current-context: east
`

func secret(name, label, data string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{Label: label}}}
	if data != "" {
		s.Data = map[string][]byte{KubeconfigKey: []byte(data)}
	}
	return s
}

// A peer Secret is refused with what is wrong and what to do; its name
// still counts in the split when the label is a name.
func TestParseSecret(t *testing.T) {
	cases := []struct {
		name, label, data string
		wantName, wantErr string
	}{
		{"valid", "east", kubeconfig, "east", ""},
		{"not a DNS label", "East_1", kubeconfig, "", "is not a cluster name"},
		{"no kubeconfig", "east", "", "east", `has no key "kubeconfig"`},
		{"not a kubeconfig", "east", "::: not yaml", "east", "is not a usable kubeconfig"},
	}
	for _, c := range cases {
		got, err := ParseSecret(secret("s", c.label, c.data))
		if got.Name != c.wantName {
			t.Errorf("%s: name %q, want %q", c.name, got.Name, c.wantName)
		}
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.wantErr)
		case c.wantErr == "" && (got.Rest == nil || got.Rest.Host != "https://10.0.0.1:6443"):
			t.Errorf("%s: the peer's API server is not the kubeconfig's", c.name)
		}
	}
}

// Names that cannot give every cluster the same split are refused.
func TestCheckNames(t *testing.T) {
	configs := []Config{{Name: "east", Secret: "a"}, {Name: "east", Secret: "b"}, {Name: "west", Secret: "c"}, {Name: "north", Secret: "d"}}
	errs := map[string]error{}
	checkNames("west", configs, errs)
	if errs["a"] != nil || errs["d"] != nil {
		t.Errorf("valid peers refused: %v", errs)
	}
	if errs["b"] == nil || !strings.Contains(errs["b"].Error(), "Secret a already names peer cluster east") {
		t.Errorf("a second Secret for one peer: %v", errs["b"])
	}
	if errs["c"] == nil || !strings.Contains(errs["c"].Error(), "names this cluster") {
		t.Errorf("a Secret naming this cluster: %v", errs["c"])
	}
	errs = map[string]error{}
	checkNames("", configs[:1], errs)
	if errs["a"] == nil || !strings.Contains(errs["a"].Error(), "--cluster-name") {
		t.Errorf("peers without a cluster name: %v", errs["a"])
	}
}
