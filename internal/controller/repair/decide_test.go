package repair

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/carriers"
	"github.com/kubemacpool/kubemacpool/internal/heartbeat"
	"github.com/kubemacpool/kubemacpool/internal/mac"
	"github.com/kubemacpool/kubemacpool/internal/sticky"
)

// TestDecide walks every case of the table in Decide's doc comment, each
// with the facts that select it, on a fake clock: the same facts an instant
// before and after the grace ends decide differently.
func TestDecide(t *testing.T) {
	const grace = 3 * time.Minute
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	const m = mac.MAC(0x020000000105)

	ref := func(kind, name string) carriers.Ref {
		return carriers.Ref{Kind: kind, Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}
	}
	carrier := func(object, forRef carriers.Ref, created time.Time) carriers.Carrier {
		return carriers.Carrier{MAC: m, Object: object, For: forRef, Network: "ns/net-a", Created: created}
	}
	pod, other := ref(carriers.Pod, "p"), ref(carriers.Pod, "other")
	vm, vmi := ref(carriers.VirtualMachine, "vm"), ref(carriers.VirtualMachineInstance, "vm")
	launcher := ref(carriers.Pod, "virt-launcher-vm-x")
	entry := func(kind, name string, age time.Duration) *v1alpha1.MACBlockEntry {
		return &v1alpha1.MACBlockEntry{
			Offset: 5, MAC: m.String(), Network: "ns/net-a",
			Owner:    v1alpha1.Owner{Kind: kind, Namespace: "ns", Name: name},
			Reserved: metav1.NewMicroTime(clk.Now().Add(-age)),
		}
	}
	generated := entry(carriers.Pod, "", grace+time.Second)
	generated.Owner.GenerateName = "web-"
	young, old := grace-time.Second, grace+time.Second
	const maxHeld = 4
	longAfter := clk.Now().Add(-old).Add(RequestWindow + time.Second) // created well after the entry was reserved

	cases := []struct {
		name   string
		facts  Facts
		want   Action
		wantNo int
		bound  bool
	}{
		{"nothing held, nothing carried", Facts{}, Nothing, 1, false},
		{"carried without an entry: adopted for the oldest carrier",
			Facts{Carriers: []carriers.Carrier{carrier(pod, pod, clk.Now())}}, Adopt, 2, false},
		{"a VMI's MAC without an entry is adopted for its VM",
			Facts{Carriers: []carriers.Carrier{carrier(vmi, vm, clk.Now())}}, Adopt, 2, false},
		{"owner's kind not watched yet (KubeVirt not found): kept",
			Facts{Entry: entry(carriers.VirtualMachine, "vm", old)}, Wait, 3, false},
		{"kept in stock by a live replica: kept, even long after it was written",
			Facts{Entry: entry(heartbeat.Kind, "replica-a", 10*grace), OwnerKindWatched: true, Stock: true, StockExpires: clk.Now().Add(time.Second)}, Wait, 4, false},
		{"kept in stock by a live replica, carried: kept (the replica re-owns it)",
			Facts{Entry: entry(heartbeat.Kind, "replica-a", old), OwnerKindWatched: true, Stock: true, StockExpires: clk.Now().Add(time.Second), Carriers: []carriers.Carrier{carrier(pod, pod, clk.Now())}}, Wait, 4, false},
		{"a dead replica's stock, carried: re-owned to the carrier at once",
			Facts{Entry: entry(heartbeat.Kind, "replica-a", young), OwnerKindWatched: true, Stock: true, StockExpires: clk.Now(), Carriers: []carriers.Carrier{carrier(pod, pod, clk.Now())}}, Reown, 5, false},
		{"a dead replica's stock, heartbeat out less than the grace ago: waits (an object it handed the MAC to may be on its way)",
			Facts{Entry: entry(heartbeat.Kind, "replica-a", old), OwnerKindWatched: true, Stock: true, StockExpires: clk.Now().Add(-young)}, Wait, 6, false},
		{"a dead replica's stock, heartbeat out the grace ago: expired",
			Facts{Entry: entry(heartbeat.Kind, "replica-a", old), OwnerKindWatched: true, Stock: true, StockExpires: clk.Now().Add(-grace)}, Expire, 7, false},
		{"owner carries it: bound",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Carriers: []carriers.Carrier{carrier(pod, pod, clk.Now())}}, Keep, 8, true},
		{"a generateName entry is bound by a pod with that prefix",
			Facts{Entry: generated, OwnerKindWatched: true, Carriers: []carriers.Carrier{carrier(ref(carriers.Pod, "web-x7k2p"), ref(carriers.Pod, "web-x7k2p"), clk.Now())}}, Keep, 8, true},
		{"the owner read live carries it (the index lags): bound",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerCarries}, Keep, 8, true},
		{"a VM's MAC carried by its VMI after the VM dropped it: kept",
			Facts{Entry: entry(carriers.VirtualMachine, "vm", old), OwnerKindWatched: true, Carriers: []carriers.Carrier{carrier(vmi, vm, clk.Now())}}, Keep, 9, true},
		{"a VM's MAC carried by its launcher pod: kept",
			Facts{Entry: entry(carriers.VirtualMachine, "vm", old), OwnerKindWatched: true, Carriers: []carriers.Carrier{carrier(launcher, vm, clk.Now())}}, Keep, 9, true},
		{"reserved within the grace, not carried yet: waits",
			Facts{Entry: entry(carriers.Pod, "p", young), OwnerKindWatched: true}, Wait, 10, false},
		{"reserved within the grace, another carries it: still waits (the owner may be stored yet)",
			Facts{Entry: entry(carriers.Pod, "p", young), OwnerKindWatched: true, Carriers: []carriers.Carrier{carrier(other, other, clk.Now())}}, Wait, 10, false},
		{"past the grace, a named owner not looked up: look it up",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true}, LookUpOwner, 11, false},
		{"past the grace, the pod exists but dropped the network: kept until it is deleted",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerExists, SeenBound: true}, Keep, 12, false},
		{"past the grace, the pod it was made for exists (created within the request window), never seen bound: kept",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerExists, OwnerCreated: clk.Now().Add(-old).Add(time.Second)}, Keep, 12, false},
		{"past the grace, a later pod of the name exists (a create retried after a refusal), never seen bound: expired",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerExists, OwnerCreated: longAfter}, Expire, 16, false},
		{"a pod holding maxHeld newer MACs: its oldest dropped one is released",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerExists, SeenBound: true, DroppedNewer: maxHeld}, Release, 15, false},
		{"a pod holding fewer than maxHeld newer MACs keeps a dropped one",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerExists, SeenBound: true, DroppedNewer: maxHeld - 1}, Keep, 12, false},
		{"seen bound, within the grace, not carried any more: the owner is looked up at once",
			Facts{Entry: entry(carriers.Pod, "p", young), OwnerKindWatched: true, SeenBound: true}, LookUpOwner, 11, false},
		{"seen bound, within the grace, owner deleted: released at once",
			Facts{Entry: entry(carriers.Pod, "p", young), OwnerKindWatched: true, SeenBound: true, Owner: OwnerGone}, Release, 15, false},
		{"reserved long ago by a replica whose clock is behind, first seen just now: waits the whole grace",
			Facts{Entry: entry(carriers.Pod, "p", 10*grace), OwnerKindWatched: true, FirstSeen: clk.Now()}, Wait, 10, false},
		{"past the grace, a VM that exists but dropped the interface: released",
			Facts{Entry: entry(carriers.VirtualMachine, "vm", old), OwnerKindWatched: true, Owner: OwnerExists, SeenBound: true}, Release, 15, false},
		{"past the grace, owner gone, another object carries it: re-owned",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerGone, Carriers: []carriers.Carrier{carrier(other, other, clk.Now())}}, Reown, 14, false},
		{"past the grace, owner gone, seen bound: released",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerGone, SeenBound: true}, Release, 15, false},
		{"past the grace, owner gone, never seen bound: expired",
			Facts{Entry: entry(carriers.Pod, "p", old), OwnerKindWatched: true, Owner: OwnerGone}, Expire, 16, false},
		{"a StatefulSet's ordinal, its pod carries it: bound",
			Facts{Entry: entry(sticky.Kind, "web", old), OwnerKindWatched: true, Carriers: []carriers.Carrier{carrier(ref(carriers.Pod, "web-0"), ref(carriers.Pod, "web-0"), clk.Now())}}, Keep, 8, true},
		{"a StatefulSet's ordinal, its pod away, the StatefulSet keeps it: kept",
			Facts{Entry: entry(sticky.Kind, "web", old), OwnerKindWatched: true, Owner: OwnerExists, SeenBound: true}, Keep, 12, false},
		{"a StatefulSet's ordinal let go within the grace: waits",
			Facts{Entry: entry(sticky.Kind, "web", old), OwnerKindWatched: true, Owner: OwnerGone, SeenBound: true, OwnerGoneSince: clk.Now().Add(-young)}, Wait, 13, false},
		{"a StatefulSet's ordinal let go past the grace: released",
			Facts{Entry: entry(sticky.Kind, "web", old), OwnerKindWatched: true, Owner: OwnerGone, SeenBound: true, OwnerGoneSince: clk.Now().Add(-old)}, Release, 15, false},
		{"a generateName entry past the grace, nothing carries it: expired without a look-up",
			Facts{Entry: generated, OwnerKindWatched: true}, Expire, 16, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.facts.MAC = m
			if c.facts.Entry != nil && c.facts.FirstSeen.IsZero() {
				c.facts.FirstSeen = c.facts.Entry.Reserved.Time // seen as it was written
			}
			d := Decide(c.facts, clk.Now(), grace, maxHeld)
			if d.Action != c.want || d.Case != c.wantNo || d.Bound != c.bound {
				t.Fatalf("Decide = case %d %s (bound %v), want case %d %s (bound %v)", d.Case, d.Action, d.Bound, c.wantNo, c.want, c.bound)
			}
			switch d.Action {
			case Adopt, Reown:
				want := c.facts.Carriers[0].For
				if d.Carrier == nil || d.Entry.Owner.Name != want.Name || d.Entry.Owner.Kind != want.Kind || !d.Entry.Adopted || d.Entry.Offset != 5 {
					t.Fatalf("entry = %+v, want one adopted for %s at offset 5", d.Entry, want)
				}
			case Wait:
				if d.After <= 0 {
					t.Fatalf("waits %s", d.After)
				}
			}
		})
	}
}

// TestDecideGraceOnTheFakeClock: an unbound entry waits exactly until its
// grace ends, counted from when the repair first saw it as reserved or last
// renewed, and not a moment longer.
func TestDecideGraceOnTheFakeClock(t *testing.T) {
	const grace = time.Minute
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC))
	e := &v1alpha1.MACBlockEntry{
		Owner:    v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", GenerateName: "web-"},
		Reserved: metav1.NewMicroTime(clk.Now()),
	}
	f := Facts{MAC: 0x020000000001, Entry: e, OwnerKindWatched: true, FirstSeen: clk.Now()}
	clk.Step(20 * time.Second)
	if d := Decide(f, clk.Now(), grace, 32); d.Action != Wait || d.After != 40*time.Second {
		t.Fatalf("after 20s: %s after %s, want wait 40s", d.Action, d.After)
	}
	clk.Step(40*time.Second - time.Microsecond)
	if d := Decide(f, clk.Now(), grace, 32); d.Action != Wait || d.After != time.Microsecond {
		t.Fatalf("just before the end: %s after %s", d.Action, d.After)
	}
	clk.Step(time.Microsecond)
	if d := Decide(f, clk.Now(), grace, 32); d.Action != Expire {
		t.Fatalf("at the end of the grace: %s, want expire", d.Action)
	}
	// A request renews it: the grace starts again, from when the repair
	// sees the renewed entry.
	e.Reserved = metav1.NewMicroTime(clk.Now())
	f.FirstSeen = clk.Now()
	if d := Decide(f, clk.Now(), grace, 32); d.Action != Wait || d.After != grace {
		t.Fatalf("renewed: %s after %s", d.Action, d.After)
	}
}

// Two objects carrying one MAC for different owners are a collision to
// report, whether the MAC has an entry or is being adopted; a VM's own VMI
// and launcher pod are not.
func TestDecideReportsCollisions(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	const m = mac.MAC(0x020000000001)
	ref := func(kind, name string) carriers.Ref { return carriers.Ref{Kind: kind, Namespace: "ns", Name: name} }
	pod, other, vm, vmi := ref(carriers.Pod, "p"), ref(carriers.Pod, "other"), ref(carriers.VirtualMachine, "vm"), ref(carriers.VirtualMachineInstance, "vm")
	carry := func(object, forRef carriers.Ref) carriers.Carrier {
		return carriers.Carrier{MAC: m, Object: object, For: forRef}
	}
	entry := func(o carriers.Ref) *v1alpha1.MACBlockEntry {
		return &v1alpha1.MACBlockEntry{Owner: v1alpha1.Owner{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name}, Reserved: metav1.NewMicroTime(now.Add(-time.Hour))}
	}
	d := Decide(Facts{MAC: m, Entry: entry(pod), OwnerKindWatched: true, Carriers: []carriers.Carrier{carry(other, other), carry(pod, pod)}}, now, time.Minute, 32)
	if d.Case != 8 || d.Holder == nil || d.Holder.Object != pod || len(d.Collisions) != 1 || d.Collisions[0].Object != other {
		t.Fatalf("held by p, carried by other too: %+v", d)
	}
	d = Decide(Facts{MAC: m, Carriers: []carriers.Carrier{carry(pod, pod), carry(other, other)}}, now, time.Minute, 32)
	if d.Case != 2 || d.Holder.Object != pod || len(d.Collisions) != 1 {
		t.Fatalf("adopted for p, carried by other too: %+v", d)
	}
	d = Decide(Facts{MAC: m, Entry: entry(vm), OwnerKindWatched: true, Carriers: []carriers.Carrier{carry(vm, vm), carry(vmi, vm)}}, now, time.Minute, 32)
	if d.Case != 8 || len(d.Collisions) != 0 {
		t.Fatalf("a VM and its VMI: %+v", d)
	}
	// A migration receiver (another namespace) carrying its source's MACs
	// is no collision, whichever of the two holds the entry; a pod
	// carrying the same MAC still is.
	receiver := carriers.Ref{Kind: carriers.VirtualMachine, Namespace: "target", Name: "vm", UID: "r"}
	recv := carriers.Carrier{MAC: m, Object: receiver, For: receiver, ForReceiver: true}
	d = Decide(Facts{MAC: m, Entry: entry(vm), OwnerKindWatched: true, Carriers: []carriers.Carrier{carry(vm, vm), recv}}, now, time.Minute, 32)
	if d.Case != 8 || len(d.Collisions) != 0 {
		t.Fatalf("a VM and its migration receiver: %+v", d)
	}
	d = Decide(Facts{MAC: m, Entry: entry(receiver), OwnerKindWatched: true, Carriers: []carriers.Carrier{recv, carry(vm, vm), carry(pod, pod)}}, now, time.Minute, 32)
	if d.Case != 8 || len(d.Collisions) != 1 || d.Collisions[0].Object != pod {
		t.Fatalf("held by the receiver, carried by its source and a pod: %+v", d)
	}
	// The source gone, the entry passes to the receiver.
	d = Decide(Facts{MAC: m, Entry: entry(vm), OwnerKindWatched: true, Owner: OwnerGone, Carriers: []carriers.Carrier{recv}, FirstSeen: now.Add(-time.Hour)}, now, time.Minute, 32)
	if d.Action != Reown || d.Entry.Owner.Namespace != "target" || d.Entry.Owner.Name != "vm" {
		t.Fatalf("source gone: %+v", d)
	}
}

// Renewals keep an unbound entry waiting at most twice the grace, counted
// from when it was first seen unbound: a create re-sent in a loop, refused
// by a later admission step each time, cannot hold a MAC forever.
func TestDecideRenewalsAreBounded(t *testing.T) {
	const grace = time.Minute
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	e := &v1alpha1.MACBlockEntry{
		Owner:    v1alpha1.Owner{Kind: carriers.Pod, Namespace: "ns", Name: "squatter"},
		Reserved: metav1.NewMicroTime(now.Add(-10 * time.Second)), // just renewed
	}
	f := Facts{MAC: 0x020000000001, Entry: e, OwnerKindWatched: true, UnboundSince: now.Add(-90 * time.Second), FirstSeen: e.Reserved.Time}
	if d := Decide(f, now, grace, 32); d.Action != Wait || d.After != 30*time.Second {
		t.Fatalf("unbound for 1.5 grace, renewed: %s after %s, want wait 30s (until 2x grace)", d.Action, d.After)
	}
	f.UnboundSince = now.Add(-2 * grace)
	if d := Decide(f, now, grace, 32); d.Action != LookUpOwner {
		t.Fatalf("unbound for 2x grace, renewed 10s ago: %s, want the owner looked up", d.Action)
	}
	e.Reserved = metav1.NewMicroTime(now.Add(-time.Millisecond))
	f.FirstSeen = e.Reserved.Time
	if d := Decide(f, now, grace, 32); d.Action != LookUpOwner {
		t.Fatalf("unbound for 2x grace, renewed just now: %s, want the owner looked up", d.Action)
	}
	f.Owner = OwnerGone
	if d := Decide(f, now, grace, 32); d.Action != Expire {
		t.Fatalf("no such pod: %s, want expire", d.Action)
	}
}
