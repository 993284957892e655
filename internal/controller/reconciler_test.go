package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
	"github.com/kubemacpool/kubemacpool/internal/pool"
)

func TestReservedAt(t *testing.T) {
	created := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	at := func(annotation string) *v1alpha1.MACAddress {
		m := &v1alpha1.MACAddress{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}}
		if annotation != "" {
			m.Annotations = map[string]string{pool.RenewedAnnotation: annotation}
		}
		return m
	}
	cases := []struct {
		name       string
		annotation string
		want       time.Time
		renewed    bool
	}{
		{"never renewed: its creation", "", created, false},
		{"renewed later: the renewal", "2026-11-30T03:02:00.5Z", created.Add(2*time.Minute + 500*time.Millisecond), true},
		{"a renewal before creation (clock skew) does not move it back", "2026-11-30T02:59:00Z", created, true},
		{"garbage is ignored", "yesterday", created, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := at(c.annotation)
			if got := reservedAt(m); !got.Equal(c.want) {
				t.Errorf("reservedAt = %v, want %v", got, c.want)
			}
			if _, ok := renewedAt(m); ok != c.renewed {
				t.Errorf("renewedAt ok = %v, want %v", ok, c.renewed)
			}
		})
	}
}
