package certs

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Keys of the certificate Secret.
const (
	KeyCA       = "ca.crt"
	KeyCAKey    = "ca.key"
	KeyCABundle = "ca-bundle.crt" // every CA the API server must trust now
	// PublishedAnnotation records when the current CA first reached the
	// webhook configuration: serving certificates are issued from a new CA
	// only once API servers have had time to trust it.
	PublishedAnnotation = "kubemacpool.io/ca-published"
)

// Settings say what to issue and how long it lives.
type Settings struct {
	Namespace     string
	SecretName    string
	WebhookConfig string   // the MutatingWebhookConfiguration whose caBundle we own
	Hosts         []string // names the API server dials, e.g. the Service's DNS names

	CALifetime      time.Duration
	ServingLifetime time.Duration
	// Overlap is how long a new CA is trusted before serving certificates
	// are issued from it.
	Overlap time.Duration
	// Check is how often the certificates are looked at without an event.
	Check time.Duration
}

// Authority keeps the Secret and the caBundle current. It runs on the
// leader only; every replica serves what the Secret holds (Provider).
type Authority struct {
	Settings
	Client client.Client // writes
	Live   client.Reader // uncached reads: decisions about keys must not be stale
	Cache  cache.Cache   // events that call for a check
	Log    logr.Logger
	Now    func() time.Time
}

// Start checks at once, on every change of the Secret or the webhook
// configuration (someone deleted the Secret or wiped the caBundle), and
// periodically.
func (a *Authority) Start(ctx context.Context) error {
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	for _, obj := range []client.Object{&corev1.Secret{}, &admissionregistrationv1.MutatingWebhookConfiguration{}} {
		informer, err := a.Cache.GetInformer(ctx, obj)
		if err != nil {
			return err
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
		}); err != nil {
			return err
		}
	}
	ticker := time.NewTicker(a.Check)
	defer ticker.Stop()
	for {
		if err := a.Ensure(ctx); err != nil {
			a.Log.Error(err, "keeping the webhook certificates current; retrying")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-kick:
		}
	}
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Ensure brings the Secret and the caBundle in step, once.
func (a *Authority) Ensure(ctx context.Context) error {
	now := a.now()
	secret := &corev1.Secret{}
	err := a.Live.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.SecretName}, secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.Namespace, Name: a.SecretName},
			Type:       corev1.SecretTypeTLS,
		}
	case err != nil:
		return err
	}
	changed, err := a.renew(secret, now)
	if err != nil {
		return err
	}
	if changed {
		if secret.ResourceVersion == "" {
			err = a.Client.Create(ctx, secret)
		} else {
			err = a.Client.Update(ctx, secret)
		}
		if err != nil {
			return fmt.Errorf("writing Secret %s/%s: %w", a.Namespace, a.SecretName, err)
		}
		a.Log.Info("webhook certificates written", "secret", a.Namespace+"/"+a.SecretName)
	}
	published, err := a.publish(ctx, secret.Data[KeyCABundle])
	if err != nil {
		return err
	}
	if published && secret.Annotations[PublishedAnnotation] == "" {
		metav1.SetMetaDataAnnotation(&secret.ObjectMeta, PublishedAnnotation, now.UTC().Format(time.RFC3339))
		if err := a.Client.Update(ctx, secret); err != nil {
			return fmt.Errorf("recording CA publication: %w", err)
		}
	}
	return nil
}

// renew updates the certificates in secret as needed and reports a change.
func (a *Authority) renew(secret *corev1.Secret, now time.Time) (bool, error) {
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	d := secret.Data
	changed := false
	ca := keyPair{CertPEM: d[KeyCA], KeyPEM: d[KeyCAKey]}
	caCert, _, err := ca.parse()
	if err != nil || needsRenewal(caCert, now) {
		fresh, err := newCA(now, a.CALifetime)
		if err != nil {
			return false, err
		}
		bundle := fresh.CertPEM
		if caCert != nil && now.Before(caCert.NotAfter) {
			// Keep trusting the old CA: the serving certificate in use
			// was issued by it, and stays in use until the new CA is
			// trusted everywhere.
			bundle = append(append([]byte{}, fresh.CertPEM...), ca.CertPEM...)
		}
		ca, d[KeyCA], d[KeyCAKey], d[KeyCABundle] = fresh, fresh.CertPEM, fresh.KeyPEM, bundle
		delete(secret.Annotations, PublishedAnnotation)
		caCert, _, _ = ca.parse()
		changed = true
	}
	if pruned := pruneExpired(d[KeyCABundle], now); !bytes.Equal(pruned, d[KeyCABundle]) {
		d[KeyCABundle] = pruned
		changed = true
	}

	serving := keyPair{CertPEM: d[corev1.TLSCertKey], KeyPEM: d[corev1.TLSPrivateKeyKey]}
	cert, _, err := serving.parse()
	trusted := err == nil && trustedBy(cert, d[KeyCABundle])
	fromCurrent := err == nil && cert.CheckSignatureFrom(caCert) == nil
	caSettled := a.settled(secret, now)
	reissue := err != nil || !trusted || needsRenewal(cert, now) || !covers(cert, a.Hosts) ||
		(!fromCurrent && caSettled)
	if reissue {
		fresh, err := newServing(ca, a.Hosts, now, a.ServingLifetime)
		if err != nil {
			return false, err
		}
		d[corev1.TLSCertKey], d[corev1.TLSPrivateKeyKey] = fresh.CertPEM, fresh.KeyPEM
		changed = true
	}
	if len(d[KeyCABundle]) == 0 {
		d[KeyCABundle] = d[KeyCA]
		changed = true
	}
	return changed, nil
}

// settled reports whether the current CA has been published long enough
// for every API server to trust it.
func (a *Authority) settled(secret *corev1.Secret, now time.Time) bool {
	at, err := time.Parse(time.RFC3339, secret.Annotations[PublishedAnnotation])
	return err == nil && now.Sub(at) >= a.Overlap
}

func trustedBy(cert *x509.Certificate, bundle []byte) bool {
	cas, err := parseCerts(bundle)
	if err != nil {
		return false
	}
	for _, ca := range cas {
		if cert.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

func pruneExpired(bundle []byte, now time.Time) []byte {
	cas, err := parseCerts(bundle)
	if err != nil {
		return bundle
	}
	var out []byte
	for _, ca := range cas {
		if now.Before(ca.NotAfter) {
			out = append(out, pemCert(ca)...)
		}
	}
	if out == nil {
		return bundle
	}
	if bytes.Equal(out, bundle) {
		return bundle
	}
	return out
}

// publish writes bundle into every webhook of the configuration and
// reports whether all of them carry it now.
func (a *Authority) publish(ctx context.Context, bundle []byte) (bool, error) {
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := a.Live.Get(ctx, client.ObjectKey{Name: a.WebhookConfig}, cfg); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil // not installed (yet): nothing to publish to
		}
		return false, err
	}
	dirty := false
	for i := range cfg.Webhooks {
		if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
			cfg.Webhooks[i].ClientConfig.CABundle = bundle
			dirty = true
		}
	}
	if dirty {
		if err := a.Client.Update(ctx, cfg); err != nil {
			return false, fmt.Errorf("writing caBundle of %s: %w", a.WebhookConfig, err)
		}
		a.Log.Info("webhook CA bundle published", "webhookConfiguration", a.WebhookConfig)
	}
	return true, nil
}
