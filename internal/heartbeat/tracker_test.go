package heartbeat

import (
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// A heartbeat runs out its duration after this replica last saw its Lease
// change, on this replica's clock, whatever time the Lease says; one never
// seen runs out a duration after it was first asked about; before the
// Leases are listed nothing runs out.
func TestTrackerExpires(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	tr := &Tracker{Clock: clk, Duration: 30 * time.Second}
	lease := func(inc types.UID, rv string) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LeaseName(inc), ResourceVersion: rv, Labels: map[string]string{Label: "replica-a"}},
			// A renew time far in the past: another clock; it is not read.
			Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To(int32(20)), RenewTime: ptr.To(metav1.NewMicroTime(clk.Now().Add(-time.Hour)))},
		}
	}
	if got := tr.Expires("a"); !got.Equal(clk.Now().Add(30 * time.Second)) {
		t.Fatalf("before sync: Expires = %s, want a duration from now", got)
	}
	tr.synced = true
	tr.observe(lease("a", "1"))
	start := clk.Now()
	if got := tr.Expires("a"); !got.Equal(start.Add(20 * time.Second)) {
		t.Fatalf("seen now with a 20s lease: Expires = %s, want %s", got, start.Add(20*time.Second))
	}
	clk.Step(15 * time.Second)
	tr.observe(lease("a", "1")) // the same version again (a resync): no renewal
	if got := tr.Expires("a"); !got.Equal(start.Add(20 * time.Second)) {
		t.Fatalf("a resync moved the heartbeat: %s", got)
	}
	tr.observe(lease("a", "2"))
	if got := tr.Expires("a"); !got.Equal(clk.Now().Add(20 * time.Second)) {
		t.Fatalf("renewed: Expires = %s, want 20s from now", got)
	}
	asked := clk.Now()
	clk.Step(time.Minute)
	if got := tr.Expires("never-seen"); !got.Equal(clk.Now().Add(30 * time.Second)) {
		t.Fatalf("first asked about a missing Lease: Expires = %s", got)
	}
	clk.Step(time.Minute)
	if got := tr.Expires("never-seen"); !got.Equal(asked.Add(time.Minute).Add(30 * time.Second)) {
		t.Fatalf("a missing Lease runs out from when it was first asked about: %s", got)
	}
	tr.observe(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "kubemacpool-controllers", ResourceVersion: "9"}})
	if len(tr.seen) != 1 {
		t.Fatalf("a Lease that is not a heartbeat was tracked: %v", tr.seen)
	}
}
