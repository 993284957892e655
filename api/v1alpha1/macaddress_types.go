package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Phase says how far a MACAddress has come in its life.
// +kubebuilder:validation:Enum=Reserved;Bound
type Phase string

const (
	// PhaseReserved: the webhook handed the MAC to an object that the API
	// server has not been seen to persist yet. A reservation that stays
	// Reserved past the grace period is deleted, so refused or abandoned
	// creates leak nothing.
	PhaseReserved Phase = "Reserved"
	// PhaseBound: the owner was seen carrying the MAC and its UID is recorded.
	// The MACAddress lives as long as that owner carries the MAC.
	PhaseBound Phase = "Bound"
)

// Owner names the object a MAC was handed to.
type Owner struct {
	// APIVersion of the owner, e.g. "v1" or "kubevirt.io/v1".
	APIVersion string `json:"apiVersion"`
	// Kind of the owner, e.g. "Pod" or "VirtualMachine".
	Kind string `json:"kind"`
	// Namespace of the owner.
	Namespace string `json:"namespace"`
	// Name of the owner. Empty while a Reserved MAC belongs to an object
	// created with generateName (pods of controllers have no name yet at
	// admission time); filled in when the MAC is bound.
	// +optional
	Name string `json:"name,omitempty"`
	// GenerateName of the owner when it had no name at admission time.
	// +optional
	GenerateName string `json:"generateName,omitempty"`
	// UID of the owner, recorded when the MAC is bound.
	// +optional
	UID types.UID `json:"uid,omitempty"`
}

// DisplayName is the owner's name, or its generateName followed by "*"
// while the generated name is not known yet.
func (o Owner) DisplayName() string {
	if o.Name != "" {
		return o.Name
	}
	return o.GenerateName + "*"
}

// MACAddressSpec describes who holds the MAC and what for.
type MACAddressSpec struct {
	// Address is the MAC in canonical lowercase colon form.
	// +kubebuilder:validation:Pattern=`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`
	Address string `json:"address"`
	// Owner is the object the MAC was handed to.
	Owner Owner `json:"owner"`
	// Network the MAC serves: "namespace/name" of the Multus network, or
	// the network name of a VirtualMachine interface.
	// +optional
	Network string `json:"network,omitempty"`
	// Interface the MAC serves, when known (a VM interface name, or the
	// "interface" a pod's network selection asks for).
	// +optional
	Interface string `json:"interface,omitempty"`
}

// MACAddressStatus is the observed state of the reservation.
type MACAddressStatus struct {
	// Phase is Reserved until the owner is seen carrying the MAC, then Bound.
	// An empty phase means Reserved.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// BoundTime is when the owner was first seen carrying the MAC.
	// +optional
	BoundTime *metav1.Time `json:"boundTime,omitempty"`
}

// MACAddress is one MAC address in use in the cluster. Its name is the MAC
// in object-name form (02-00-00-00-00-1a); the API server refuses a second
// object of the same name, which is what makes every MAC unique.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=mac;macs,categories=kubemacpool
// +kubebuilder:printcolumn:name="MAC",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Kind",type=string,JSONPath=`.spec.owner.kind`
// +kubebuilder:printcolumn:name="Namespace",type=string,JSONPath=`.spec.owner.namespace`
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner.name`
// +kubebuilder:printcolumn:name="Network",type=string,JSONPath=`.spec.network`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MACAddress struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   MACAddressSpec   `json:"spec"`
	Status MACAddressStatus `json:"status,omitempty"`
}

// IsBound reports whether the owner has been seen carrying the MAC.
func (m *MACAddress) IsBound() bool { return m.Status.Phase == PhaseBound }

// MACAddressList is a list of MACAddress objects.
//
// +kubebuilder:object:root=true
type MACAddressList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MACAddress `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MACAddress{}, &MACAddressList{})
}
