package holders

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// Who an entry belongs to, and who may take it over.
func TestOwners(t *testing.T) {
	named := v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p"}
	generated := v1alpha1.Owner{Kind: "Pod", Namespace: "ns", GenerateName: "web-"}
	withUID := v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "u1"}
	cases := []struct {
		name                  string
		o                     v1alpha1.Owner
		kind, ns, objName, id string
		want                  bool
	}{
		{"the named object", named, "Pod", "ns", "p", "any", true},
		{"another name", named, "Pod", "ns", "q", "", false},
		{"another namespace", named, "Pod", "other", "p", "", false},
		{"another kind", named, "VirtualMachine", "ns", "p", "", false},
		{"a pod with the prefix", generated, "Pod", "ns", "web-x7k2p", "", true},
		{"the bare prefix is no generated name", generated, "Pod", "ns", "web-", "", false},
		{"no prefix", generated, "Pod", "ns", "db-1", "", false},
		{"the same UID", withUID, "VirtualMachine", "ns", "vm", "u1", true},
		{"a re-created object of the same name", withUID, "VirtualMachine", "ns", "vm", "u2", false},
	}
	for _, c := range cases {
		if got := OwnerIs(c.o, carriers.Ref{Kind: c.kind, Namespace: c.ns, Name: c.objName, UID: types.UID(c.id)}); got != c.want {
			t.Errorf("%s: OwnerIs = %v", c.name, got)
		}
	}
	if !SameOwner(named, named) || !SameOwner(withUID, v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm"}) {
		t.Error("the same named object asking again must be the same owner")
	}
	if SameOwner(generated, generated) {
		t.Error("two objects known only by generateName are never the same")
	}
	if SameOwner(withUID, v1alpha1.Owner{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "u2"}) {
		t.Error("another UID is another object")
	}
	vm := carriers.Ref{Kind: "VirtualMachine", Namespace: "ns", Name: "vm", UID: "u1"}
	vmi := carriers.Ref{Kind: "VirtualMachineInstance", Namespace: "ns", Name: "vm"}
	if !Bound(withUID, []carriers.Carrier{{Object: vmi, For: vm}}) {
		t.Error("a VM's entry is bound while its VMI carries the MAC")
	}
	if Bound(named, []carriers.Carrier{{Object: vmi, For: vm}}) {
		t.Error("a pod's entry is not bound by someone else's VMI")
	}
}

// Every row of MayTake's table, with the verdict it must give.
func TestMayTake(t *testing.T) {
	const m = mac.MAC(0x0a0000000001)
	ref := func(kind, ns, name string) carriers.Ref {
		return carriers.Ref{Kind: kind, Namespace: ns, Name: name, UID: types.UID(ns + "/" + name)}
	}
	pod, otherPod := ref(carriers.Pod, "ns", "p"), ref(carriers.Pod, "ns", "q")
	vm, sourceVM := ref(carriers.VirtualMachine, "ns", "vm"), ref(carriers.VirtualMachine, "src", "vm")
	vmi := ref(carriers.VirtualMachineInstance, "ns", "vm")
	carries := func(obj, forRef carriers.Ref) carriers.Carrier {
		return carriers.Carrier{MAC: m, Object: obj, For: forRef}
	}
	entry := func(o v1alpha1.Owner) *v1alpha1.MACBlockEntry {
		return &v1alpha1.MACBlockEntry{MAC: m.String(), Owner: o, Network: "ns/net"}
	}
	set := v1alpha1.Owner{Kind: sticky.Kind, Namespace: "ns", Name: "web", UID: "set", Ordinal: 2}
	receiver := Request{Owner: OwnerOf(vm), Receiver: true}
	receiverCarrier := carries(vm, vm)
	receiverCarrier.ForReceiver = true
	peer := func(o v1alpha1.Owner) PeerEntry { return PeerEntry{Cluster: "east", Entry: *entry(o)} }

	cases := []struct {
		name string
		r    Request
		f    Facts
		want Verdict // Entry and Carrier: only whether set
	}{
		{"9: nothing holds it", Request{Owner: OwnerOf(pod)}, Facts{}, Verdict{Case: 9, Allowed: true}},
		{"1: its own entry, asked again", Request{Owner: v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", Name: "p"}},
			Facts{Entry: entry(OwnerOf(pod))}, Verdict{Case: 9, Allowed: true, Own: true}},
		{"1: generateName objects are never the same", Request{Owner: v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", GenerateName: "p-"}},
			Facts{Entry: entry(v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", GenerateName: "p-"})}, Verdict{Case: 3}},
		{"2: a receiver shares its source VM's entry", receiver, Facts{Entry: entry(OwnerOf(sourceVM))},
			Verdict{Case: 9, Allowed: true, Shared: true}},
		{"3: a receiver may not share a pod's entry", receiver, Facts{Entry: entry(OwnerOf(pod))}, Verdict{Case: 3}},
		{"3: held for another object", Request{Owner: OwnerOf(otherPod)}, Facts{Entry: entry(OwnerOf(pod))}, Verdict{Case: 3}},
		{"3: another object of the same name (UID)", Request{Owner: v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", Name: "p", UID: "new"}},
			Facts{Entry: entry(OwnerOf(pod))}, Verdict{Case: 3}},
		{"4: the VM's own VMI carries it", Request{Owner: OwnerOf(vm)},
			Facts{Entry: entry(OwnerOf(vm)), Carriers: []carriers.Carrier{carries(vmi, vm)}}, Verdict{Case: 9, Allowed: true, Own: true}},
		{"4: the object itself, re-applied", Request{Owner: OwnerOf(pod)},
			Facts{Carriers: []carriers.Carrier{carries(pod, pod)}}, Verdict{Case: 9, Allowed: true}},
		{"5: a StatefulSet ordinal's pod, going", Request{Owner: set},
			Facts{Entry: entry(set), Carriers: []carriers.Carrier{carries(ref(carriers.Pod, "ns", "web-2"), ref(carriers.Pod, "ns", "web-2"))}},
			Verdict{Case: 9, Allowed: true, Own: true}},
		{"5: another ordinal's pod is an obstacle", Request{Owner: set},
			Facts{Carriers: []carriers.Carrier{carries(ref(carriers.Pod, "ns", "web-1"), ref(carriers.Pod, "ns", "web-1"))}}, Verdict{Case: 8}},
		{"6: a receiver and its source's VMI", receiver,
			Facts{Entry: entry(OwnerOf(sourceVM)), Carriers: []carriers.Carrier{carries(ref(carriers.VirtualMachineInstance, "src", "vm"), sourceVM)}},
			Verdict{Case: 9, Allowed: true, Shared: true}},
		{"7: the source keeps its MAC while its copy waits", Request{Owner: OwnerOf(sourceVM)},
			Facts{Entry: entry(OwnerOf(sourceVM)), Carriers: []carriers.Carrier{receiverCarrier}}, Verdict{Case: 9, Allowed: true, Own: true}},
		{"7: not without holding the entry", Request{Owner: OwnerOf(sourceVM)},
			Facts{Carriers: []carriers.Carrier{receiverCarrier}}, Verdict{Case: 8}},
		{"8: carried by another pod", Request{Owner: OwnerOf(otherPod)},
			Facts{Carriers: []carriers.Carrier{carries(pod, pod)}}, Verdict{Case: 8}},
		{"8: a receiver may not take a pod's carried MAC", receiver,
			Facts{Carriers: []carriers.Carrier{carries(pod, pod)}}, Verdict{Case: 8}},
		{"10: a receiver takes the MAC a peer cluster holds for its source VM", receiver,
			Facts{Peers: []PeerEntry{peer(OwnerOf(sourceVM))}}, Verdict{Case: 9, Allowed: true}},
		{"11: held in a peer cluster", Request{Owner: OwnerOf(pod)},
			Facts{Peers: []PeerEntry{peer(OwnerOf(otherPod))}}, Verdict{Case: 11}},
		{"11: a receiver may not take a peer's pod's MAC", receiver,
			Facts{Peers: []PeerEntry{peer(OwnerOf(otherPod))}}, Verdict{Case: 11}},
		{"11: a VM that is no receiver may not take a peer's VM's MAC", Request{Owner: OwnerOf(vm)},
			Facts{Peers: []PeerEntry{peer(OwnerOf(sourceVM))}}, Verdict{Case: 11}},
		{"11: after this cluster's entry and carriers", Request{Owner: OwnerOf(otherPod)},
			Facts{Entry: entry(OwnerOf(pod)), Peers: []PeerEntry{peer(OwnerOf(otherPod))}}, Verdict{Case: 3}},
		{"1 before 11: an object keeps the MAC its entry holds here", Request{Owner: OwnerOf(pod)},
			Facts{Entry: entry(OwnerOf(pod)), Peers: []PeerEntry{peer(OwnerOf(otherPod))}}, Verdict{Case: 9, Allowed: true, Own: true}},
		{"4 before 11: an object re-applied keeps the MAC it carries", Request{Owner: OwnerOf(pod)},
			Facts{Carriers: []carriers.Carrier{carries(pod, pod)}, Peers: []PeerEntry{peer(OwnerOf(otherPod))}}, Verdict{Case: 9, Allowed: true}},
	}
	for _, c := range cases {
		c.f.MAC = m
		got := MayTake(c.r, c.f)
		if got.Case != c.want.Case || got.Allowed != c.want.Allowed || got.Own != c.want.Own || got.Shared != c.want.Shared {
			t.Errorf("%s: verdict %+v, want %+v", c.name, got, c.want)
		}
		switch err := got.Err(m); {
		case got.Allowed && err != nil:
			t.Errorf("%s: allowed, yet refused: %v", c.name, err)
		case !got.Allowed && (err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), " by ")):
			t.Errorf("%s: refused without naming the holder: %v", c.name, err)
		case got.Case == 11 && !strings.Contains(err.Error(), "already in use in cluster east by "+Describe(got.Entry)):
			t.Errorf("%s: refused without naming the peer cluster and its holder: %v", c.name, err)
		}
	}
}

// Collisions are what the rule refuses either way.
func TestCollides(t *testing.T) {
	const m = mac.MAC(0x0a0000000001)
	vm := carriers.Ref{Kind: carriers.VirtualMachine, Namespace: "ns", Name: "vm", UID: "u"}
	vmi := carriers.Ref{Kind: carriers.VirtualMachineInstance, Namespace: "ns", Name: "vm", UID: "i"}
	pod := carriers.Ref{Kind: carriers.Pod, Namespace: "ns", Name: "p", UID: "p"}
	receiver := carriers.Carrier{MAC: m, Object: carriers.Ref{Kind: carriers.VirtualMachine, Namespace: "dst", Name: "vm", UID: "r"}, ForReceiver: true}
	receiver.For = receiver.Object
	source := carriers.Carrier{MAC: m, Object: vm, For: vm}
	e := &v1alpha1.MACBlockEntry{Owner: OwnerOf(vm)}
	if Collides(carriers.Carrier{MAC: m, Object: vmi, For: vm}, source, e) {
		t.Error("a VM and its VMI collide")
	}
	if !Collides(carriers.Carrier{MAC: m, Object: pod, For: pod}, source, e) {
		t.Error("a pod carrying a VM's MAC does not collide")
	}
	if Collides(receiver, source, e) || Collides(source, receiver, nil) {
		t.Error("a migration's receiver collides with its source")
	}
	// Across clusters: this cluster's carrier against a peer's entry.
	atPeer := func(o v1alpha1.Owner) PeerEntry {
		return PeerEntry{Cluster: "east", Entry: v1alpha1.MACBlockEntry{Owner: o}}
	}
	if !CollidesAcross(carriers.Carrier{MAC: m, Object: pod, For: pod}, atPeer(OwnerOf(pod))) {
		t.Error("a pod carrying what a peer holds for its own pod of the same name does not collide")
	}
	if !CollidesAcross(carriers.Carrier{MAC: m, Object: vmi, For: vm}, atPeer(OwnerOf(vm))) {
		t.Error("a VM here carrying what a peer holds for a VM does not collide")
	}
	if CollidesAcross(receiver, atPeer(OwnerOf(vm))) {
		t.Error("a receiver here collides with its source VM in a peer cluster")
	}
}

// A VM that no longer waits as a receiver shares its source's MAC only
// while a migration pairs the two.
func TestMayTakePairedWith(t *testing.T) {
	const m = mac.MAC(0x0a0000000001)
	source := carriers.Ref{Kind: carriers.VirtualMachine, Namespace: "src", Name: "vm", UID: "s"}
	other := carriers.Ref{Kind: carriers.VirtualMachine, Namespace: "src", Name: "other", UID: "o"}
	e := &v1alpha1.MACBlockEntry{Owner: OwnerOf(source)}
	r := Request{Owner: v1alpha1.Owner{Kind: carriers.VirtualMachine, Namespace: "dst", Name: "vm", UID: "r"}}
	if v := MayTake(r, Facts{MAC: m, Entry: e}); v.Allowed || v.Case != 3 {
		t.Fatalf("unpaired: %+v", v)
	}
	r.PairedWith = []carriers.Ref{other}
	if v := MayTake(r, Facts{MAC: m, Entry: e}); v.Allowed {
		t.Fatalf("paired with another VM: %+v", v)
	}
	r.PairedWith = []carriers.Ref{source}
	if v := MayTake(r, Facts{MAC: m, Entry: e}); !v.Allowed || !v.Shared {
		t.Fatalf("paired with its source: %+v", v)
	}
}
