package certs

import (
	"crypto/x509"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var hosts = []string{"kubemacpool-service.kubemacpool-system.svc", "127.0.0.1"}

func testAuthority() *Authority {
	return &Authority{Settings: Settings{
		Hosts:           hosts,
		CALifetime:      300 * 24 * time.Hour,
		ServingLifetime: 30 * 24 * time.Hour,
		Overlap:         10 * time.Minute,
	}}
}

// verify checks that the Secret's serving certificate is trusted through
// its CA bundle for every host at time now, as the API server would.
func verify(t *testing.T, s *corev1.Secret, now time.Time) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data[KeyCABundle]) {
		t.Fatal("CA bundle holds no certificate")
	}
	cert, _, err := keyPair{CertPEM: s.Data[corev1.TLSCertKey], KeyPEM: s.Data[corev1.TLSPrivateKeyKey]}.parse()
	if err != nil {
		t.Fatalf("serving certificate: %v", err)
	}
	for _, h := range hosts {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: h, Roots: pool, CurrentTime: now}); err != nil {
			t.Fatalf("serving certificate not trusted for %s at %s: %v", h, now, err)
		}
	}
	return cert
}

func renew(t *testing.T, a *Authority, s *corev1.Secret, now time.Time) bool {
	t.Helper()
	changed, err := a.renew(s, now)
	if err != nil {
		t.Fatal(err)
	}
	return changed
}

func publishAt(s *corev1.Secret, at time.Time) {
	metav1.SetMetaDataAnnotation(&s.ObjectMeta, PublishedAnnotation, at.UTC().Format(time.RFC3339))
}

func TestFirstIssueAndStableWhileValid(t *testing.T) {
	a, s, now := testAuthority(), &corev1.Secret{}, time.Now()
	if !renew(t, a, s, now) {
		t.Fatal("an empty Secret must be filled")
	}
	verify(t, s, now)
	publishAt(s, now)
	if renew(t, a, s, now.Add(time.Hour)) {
		t.Fatal("nothing to renew an hour later")
	}
}

func TestServingRenewedBeforeExpiry(t *testing.T) {
	a, s, now := testAuthority(), &corev1.Secret{}, time.Now()
	renew(t, a, s, now)
	publishAt(s, now)
	before := verify(t, s, now)
	later := now.Add(21 * 24 * time.Hour) // past two thirds of 30 days
	if !renew(t, a, s, later) {
		t.Fatal("serving certificate must be renewed with a third of its life left")
	}
	after := verify(t, s, later)
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Fatal("serving certificate unchanged")
	}
}

func TestHostsChangeReissues(t *testing.T) {
	a, s, now := testAuthority(), &corev1.Secret{}, time.Now()
	a.Hosts = hosts[:1]
	renew(t, a, s, now)
	a.Hosts = hosts
	if !renew(t, a, s, now) {
		t.Fatal("a new host must reissue the serving certificate")
	}
	verify(t, s, now)
}

// CA rotation: the new CA is trusted alongside the old one; the serving
// certificate moves to the new CA only after the overlap; the old CA
// leaves the bundle once expired. At no step is the serving certificate
// untrusted.
func TestCARotationWithOverlap(t *testing.T) {
	a, s, now := testAuthority(), &corev1.Secret{}, time.Now()
	renew(t, a, s, now)
	publishAt(s, now)
	oldCA := string(s.Data[KeyCA])
	// The serving certificate is renewed as usual, well before the CA is.
	t0 := now.Add(199 * 24 * time.Hour)
	renew(t, a, s, t0)
	if string(s.Data[KeyCA]) != oldCA {
		t.Fatal("CA rotated too early")
	}

	t1 := now.Add(201 * 24 * time.Hour) // past two thirds of 300 days
	renew(t, a, s, t1)
	if string(s.Data[KeyCA]) == oldCA {
		t.Fatal("CA must be rotated with a third of its life left")
	}
	cas, _ := parseCerts(s.Data[KeyCABundle])
	if len(cas) != 2 {
		t.Fatalf("bundle must trust new and old CA during the overlap, has %d", len(cas))
	}
	served := verify(t, s, t1)
	newCA, _, _ := keyPair{CertPEM: s.Data[KeyCA], KeyPEM: s.Data[KeyCAKey]}.parse()
	if served.CheckSignatureFrom(newCA) == nil {
		t.Fatal("serving certificate must not move to a CA the API server may not trust yet")
	}

	publishAt(s, t1)
	renew(t, a, s, t1.Add(5*time.Minute))
	if verify(t, s, t1.Add(5*time.Minute)).CheckSignatureFrom(newCA) == nil {
		t.Fatal("still within the overlap: serving certificate must stay on the old CA")
	}
	t2 := t1.Add(11 * time.Minute)
	renew(t, a, s, t2)
	if verify(t, s, t2).CheckSignatureFrom(newCA) != nil {
		t.Fatal("after the overlap the serving certificate must come from the new CA")
	}

	t3 := now.Add(301 * 24 * time.Hour) // the old CA expired
	renew(t, a, s, t3)
	cas, _ = parseCerts(s.Data[KeyCABundle])
	if len(cas) != 1 {
		t.Fatalf("expired CA must leave the bundle, %d left", len(cas))
	}
	verify(t, s, t3)
}

func TestBrokenSecretRegenerated(t *testing.T) {
	a, now := testAuthority(), time.Now()
	s := &corev1.Secret{Data: map[string][]byte{KeyCA: []byte("garbage"), corev1.TLSCertKey: []byte("garbage")}}
	if !renew(t, a, s, now) {
		t.Fatal("a broken Secret must be repaired")
	}
	verify(t, s, now)
}
