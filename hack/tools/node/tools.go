//go:build tools

// The node's Kubernetes parts, built from source by
// `hack/control-plane.sh node` (no release download is reachable here);
// this file only records the packages for go mod tidy.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
