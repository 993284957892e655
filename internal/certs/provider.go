package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Provider serves the certificate the Secret holds now, read through the
// cache at each TLS handshake, so a rotated certificate is served by every
// replica as soon as its cache sees it, with no restart and no volume.
type Provider struct {
	Reader    client.Reader // a cache over Secrets in the namespace and the webhook configuration
	Namespace string
	Name      string
	// WebhookConfig is the MutatingWebhookConfiguration whose caBundle must
	// trust the serving certificate before the replica is ready.
	WebhookConfig string

	mu      sync.Mutex
	version string
	current *tls.Certificate
}

// GetCertificate is for tls.Config.GetCertificate.
func (p *Provider) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.load(context.Background())
}

// Ready reports an error until a certificate can be served that the API
// server trusts: until the leader has published its CA in the webhook
// configuration, every admission sent here would fail the TLS handshake,
// and a replica that says it is ready should be able to admit.
func (p *Provider) Ready() error {
	ctx := context.Background()
	pair, err := p.load(ctx)
	if err != nil || p.WebhookConfig == "" {
		return err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("serving certificate in Secret %s/%s is invalid: %w", p.Namespace, p.Name, err)
	}
	config := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := p.Reader.Get(ctx, client.ObjectKey{Name: p.WebhookConfig}, config); err != nil {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", p.WebhookConfig, err)
	}
	for _, w := range config.Webhooks {
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(w.ClientConfig.CABundle) {
			return fmt.Errorf("webhook %s of MutatingWebhookConfiguration %s has no caBundle yet (the leader publishes it)", w.Name, p.WebhookConfig)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("the caBundle of webhook %s does not trust the serving certificate yet (the leader publishes it): %w", w.Name, err)
		}
	}
	return nil
}

func (p *Provider) load(ctx context.Context) (*tls.Certificate, error) {
	secret := &corev1.Secret{}
	if err := p.Reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: p.Name}, secret); err != nil {
		return nil, fmt.Errorf("no serving certificate yet (Secret %s/%s): %w", p.Namespace, p.Name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != nil && secret.ResourceVersion == p.version {
		return p.current, nil
	}
	pair, err := tls.X509KeyPair(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return nil, fmt.Errorf("serving certificate in Secret %s/%s is invalid: %w", p.Namespace, p.Name, err)
	}
	p.current, p.version = &pair, secret.ResourceVersion
	return p.current, nil
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
