// Package v1alpha1 holds the kubemacpool.io/v1alpha1 API: the ledger of
// MACs kubemacpool holds, as MACBlock objects that each cover 64
// consecutive MACs. An update carrying the block's resourceVersion is the
// allocation lock.
//
// +kubebuilder:object:generate=true
// +groupName=kubemacpool.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "kubemacpool.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
