// Package scope decides which namespaces kubemacpool manages, from a
// namespace label and a mode, the same way for the webhook and for the
// controllers that adopt MACs.
package scope

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels a namespace may carry, with the values "allocate" or "ignore".
const (
	PodsLabel            = "mutatepods.kubemacpool.io"
	VirtualMachinesLabel = "mutatevirtualmachines.kubemacpool.io"

	Allocate = "allocate"
	Ignore   = "ignore"
)

// Mode says what an unlabelled namespace gets.
type Mode string

const (
	// OptOut manages every namespace but those labelled "ignore".
	OptOut Mode = "opt-out"
	// OptIn manages only namespaces labelled "allocate".
	OptIn Mode = "opt-in"
)

// ParseMode accepts "opt-out" or "opt-in".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case OptOut, OptIn:
		return m, nil
	}
	return "", fmt.Errorf("namespace mode %q is not valid: use %q or %q", s, OptOut, OptIn)
}

// AlwaysExcluded are namespaces kubemacpool never touches whatever their
// labels: the control plane's, so kubemacpool can never block its recovery.
// The manager's own namespace is added by NewScope.
var AlwaysExcluded = []string{"kube-system", "kube-public", "kube-node-lease"}

// Scope is one resource's namespace policy.
type Scope struct {
	Label    string
	Mode     Mode
	excluded map[string]bool
}

// New returns the policy for label in mode, never managing ownNamespace or
// the control-plane namespaces.
func New(label string, mode Mode, ownNamespace string) Scope {
	s := Scope{Label: label, Mode: mode, excluded: map[string]bool{ownNamespace: true}}
	for _, ns := range AlwaysExcluded {
		s.excluded[ns] = true
	}
	return s
}

// RunLevelLabel marks OpenShift's run-level namespaces; those at run
// level 0 or 1 hold the platform's own components, which must never wait
// on kubemacpool.
const RunLevelLabel = "openshift.io/run-level"

// Manages reports whether objects in ns get MACs.
func (s Scope) Manages(ns *corev1.Namespace) bool {
	if s.excluded[ns.Name] {
		return false
	}
	if level := ns.Labels[RunLevelLabel]; level == "0" || level == "1" {
		return false
	}
	switch ns.Labels[s.Label] {
	case Allocate:
		return true
	case Ignore:
		return false
	}
	return s.Mode == OptOut
}

// ManagesName looks the namespace up through cached (the replica's cache)
// and applies Manages. A namespace the cache does not have yet is read
// through live: judged by its name alone, a namespace just labelled
// allocate (opt-in) or ignore (opt-out) would get the wrong answer.
func (s Scope) ManagesName(ctx context.Context, cached, live client.Reader, name string) (bool, error) {
	ns := &corev1.Namespace{}
	err := cached.Get(ctx, client.ObjectKey{Name: name}, ns)
	if apierrors.IsNotFound(err) && live != nil {
		err = live.Get(ctx, client.ObjectKey{Name: name}, ns)
	}
	if apierrors.IsNotFound(err) {
		// Gone, or never was: nothing in it can be admitted anyway.
		ns.Name = name
		return s.Manages(ns), nil
	}
	if err != nil {
		return false, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return s.Manages(ns), nil
}
