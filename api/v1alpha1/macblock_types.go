package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Owner names the object a MAC was handed to.
type Owner struct {
	// Kind of the owner: Pod, VirtualMachine, VirtualMachineInstance, or
	// StatefulSet for the pods of a StatefulSet, whose MACs follow the pod's
	// name (Ordinal) across deletions.
	Kind string `json:"kind"`
	// Namespace of the owner.
	Namespace string `json:"namespace"`
	// Name of the owner. Empty when the owner had no name at admission
	// (pods of controllers are created with generateName): the entry then
	// belongs to the object in Namespace, named GenerateName plus a suffix,
	// that carries the MAC.
	// +optional
	Name string `json:"name,omitempty"`
	// GenerateName of the owner when it had no name at admission.
	// +optional
	GenerateName string `json:"generateName,omitempty"`
	// UID of the owner, when known at admission (updates) or adoption.
	// +optional
	UID types.UID `json:"uid,omitempty"`
	// Ordinal of the pod, for a StatefulSet owner: the entry is held for
	// the pod named Name-Ordinal (absent: 0).
	// +kubebuilder:validation:Minimum=0
	// +optional
	Ordinal int32 `json:"ordinal,omitempty"`
}

// DisplayName is the owner's name, or its generateName followed by "*"
// while the generated name is not known.
func (o Owner) DisplayName() string {
	if o.Name != "" {
		return o.Name
	}
	return o.GenerateName + "*"
}

// MACBlockEntry is one MAC of a block that kubemacpool holds for an owner.
type MACBlockEntry struct {
	// Offset of the MAC from the block's first MAC.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=63
	Offset int32 `json:"offset"`
	// MAC is the address, in canonical lowercase colon form, for people
	// reading the block; Offset is what counts.
	MAC string `json:"mac"`
	// Owner is the object the MAC is held for.
	Owner Owner `json:"owner"`
	// Network the MAC serves: "namespace/name" of a Multus network, or the
	// network name of a VirtualMachine interface.
	// +optional
	Network string `json:"network,omitempty"`
	// Interface the MAC serves, when known.
	// +optional
	Interface string `json:"interface,omitempty"`
	// Reserved is when the entry was written, adopted, or last accepted by
	// a request for the same owner. An entry whose owner is not seen
	// carrying the MAC within the grace period from then is removed.
	Reserved metav1.MicroTime `json:"reserved"`
	// Adopted says the entry was added for a MAC that an object already
	// carried, rather than handed out by the webhook.
	// +optional
	Adopted bool `json:"adopted,omitempty"`
}

// MACBlockSpec lists what is held in the block.
type MACBlockSpec struct {
	// First is the block's first MAC.
	// +kubebuilder:validation:Pattern=`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`
	First string `json:"first"`
	// Last is the block's last MAC.
	// +kubebuilder:validation:Pattern=`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`
	Last string `json:"last"`
	// Held is the number of entries, kept with every write for kubectl.
	Held int32 `json:"held"`
	// Entries held in the block, by offset. The list is atomic: every write
	// replaces it whole, and the API server tracks it as one field rather
	// than one per entry (a list-map made each update of a full block cost
	// some 20 ms of field tracking).
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Entries []MACBlockEntry `json:"entries,omitempty"`
}

// MACBlock is kubemacpool's ledger for one aligned run of 64 consecutive
// MACs, named after the first (02-00-00-00-01-40 covers
// 02:00:00:00:01:40 to 02:00:00:00:01:7f). Every write carries the
// resourceVersion it read, so two replicas can never add the same entry:
// the loser retries against the fresh block.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=macblock,categories=kubemacpool
// +kubebuilder:printcolumn:name="First",type=string,JSONPath=`.spec.first`
// +kubebuilder:printcolumn:name="Last",type=string,JSONPath=`.spec.last`
// +kubebuilder:printcolumn:name="Held",type=integer,JSONPath=`.spec.held`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MACBlock struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MACBlockSpec `json:"spec"`
}

// MACBlockList is a list of MACBlock objects.
//
// +kubebuilder:object:root=true
type MACBlockList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MACBlock `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MACBlock{}, &MACBlockList{})
}
