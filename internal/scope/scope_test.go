package scope

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func runLevel(name, level string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{RunLevelLabel: level, PodsLabel: Allocate}}}
}

func TestManages(t *testing.T) {
	ns := func(name, value string) *corev1.Namespace {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if value != "" {
			n.Labels = map[string]string{PodsLabel: value}
		}
		return n
	}
	cases := []struct {
		mode Mode
		ns   *corev1.Namespace
		want bool
	}{
		{OptOut, ns("default", ""), true},
		{OptOut, ns("default", Ignore), false},
		{OptOut, ns("default", Allocate), true},
		{OptIn, ns("default", ""), false},
		{OptIn, ns("default", Allocate), true},
		{OptIn, ns("default", Ignore), false},
		{OptOut, ns("kube-system", Allocate), false},
		{OptIn, ns("kubemacpool-system", Allocate), false},
		{OptOut, runLevel("openshift-etcd", "0"), false},
		{OptIn, runLevel("openshift-kube-apiserver", "1"), false},
		{OptOut, runLevel("workload", "2"), true},
	}
	for _, c := range cases {
		s := New(PodsLabel, c.mode, "kubemacpool-system")
		if got := s.Manages(c.ns); got != c.want {
			t.Errorf("%s, namespace %s labelled %q: Manages = %v, want %v", c.mode, c.ns.Name, c.ns.Labels[PodsLabel], got, c.want)
		}
	}
}

func TestParseMode(t *testing.T) {
	if _, err := ParseMode("sometimes"); err == nil {
		t.Fatal("ParseMode accepted an invalid mode")
	}
	if m, err := ParseMode("opt-in"); err != nil || m != OptIn {
		t.Fatalf("ParseMode(opt-in) = %v, %v", m, err)
	}
}
