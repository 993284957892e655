package ledger

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/mac"
)

// Batches made only of the repair's changes go through the repair's
// client, everything else through the admissions': each has its own rate
// limiter, so a long repair pass never queues admissions behind it. (What
// is counted here is which client carries a write; the writes themselves
// are tested against the real API server.)
func TestRepairBatchesUseTheRepairClient(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	store := fake.NewClientBuilder().WithScheme(scheme).Build()
	counting := func(n *int) client.Client {
		return interceptor.NewClient(store, interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				*n++
				return c.Create(ctx, obj, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				*n++
				return c.Update(ctx, obj, opts...)
			},
		})
	}
	var admissions, repairs int
	a, r := counting(&admissions), counting(&repairs)
	l := &Ledger{Writer: a, Live: a, RepairWriter: r, RepairLive: r}
	l.init()
	add := func(m mac.MAC) Change {
		return func(b *v1alpha1.MACBlock) (bool, error) {
			Put(b, v1alpha1.MACBlockEntry{Offset: Offset(m), MAC: m.String(), Owner: v1alpha1.Owner{Kind: "Pod", Namespace: "ns", Name: "p"}})
			return true, nil
		}
	}
	ctx := context.Background()
	if err := l.Update(ctx, 0x020000000001, add(0x020000000001)); err != nil {
		t.Fatal(err)
	}
	if err := l.UpdateAndPrune(ctx, 0x020000000101, add(0x020000000101)); err != nil {
		t.Fatal(err)
	}
	if admissions != 1 || repairs != 1 {
		t.Fatalf("admission writes %d, repair writes %d; want 1 each", admissions, repairs)
	}
}
