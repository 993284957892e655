package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Provider serves the certificate the Secret holds now, read through the
// cache at each TLS handshake, so a rotated certificate is served by every
// replica as soon as its cache sees it, with no restart and no volume.
type Provider struct {
	Reader    client.Reader // a cache over Secrets in the namespace
	Namespace string
	Name      string

	mu      sync.Mutex
	version string
	current *tls.Certificate
}

// GetCertificate is for tls.Config.GetCertificate.
func (p *Provider) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.load(context.Background())
}

// Ready reports an error until a certificate can be served.
func (p *Provider) Ready() error {
	_, err := p.load(context.Background())
	return err
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
