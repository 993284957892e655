package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/internal/certs"
	"github.com/kubemacpool/kubemacpool/internal/manager"
	"github.com/kubemacpool/kubemacpool/internal/testenv"
)

// With its own certificates, kubemacpool creates its CA and serving
// certificate, publishes the CA in the webhook configuration, and the API
// server calls it. Deleting the Secret or wiping the caBundle is repaired
// with admission working again.
func TestSelfManagedCertificates(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	e := ownControlPlane(t, testenv.Options{}, managerNamespace, "certs")

	o := optionsFor(t, e)
	o.CertMode = manager.CertModeSelf
	o.CertHosts = []string{e.WebhookHost}
	o.CertCheck = time.Minute // repairs below must come from watching, not polling
	startManagerOn(t, e, o)

	secretKey := client.ObjectKey{Namespace: managerNamespace, Name: o.CertSecret}
	caBundle := func(g Gomega) [][]byte {
		cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
		g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: o.WebhookConfig}, cfg)).To(Succeed())
		var out [][]byte
		for _, w := range cfg.Webhooks {
			out = append(out, w.ClientConfig.CABundle)
		}
		return out
	}
	published := func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(e.Client.Get(ctx, secretKey, s)).To(Succeed())
		for _, b := range caBundle(g) {
			g.Expect(bytes.Equal(b, s.Data[certs.KeyCABundle])).To(BeTrue(), "caBundle must be kubemacpool's CA")
		}
	}
	n := 0
	admits := func(g Gomega) {
		n++
		p := pod("certs", "", `[{"name":"a"}]`)
		p.GenerateName = "p-"
		g.Expect(e.Client.Create(ctx, p)).To(Succeed())
		g.Expect(p.Annotations["k8s.v1.cni.cncf.io/networks"]).To(ContainSubstring(`"mac":`))
	}

	g.Eventually(published).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(admits).WithTimeout(30 * time.Second).Should(Succeed())

	// The Secret is deleted: a new CA and certificate appear, are published,
	// and served.
	old := &corev1.Secret{}
	g.Expect(e.Client.Get(ctx, secretKey, old)).To(Succeed())
	g.Expect(e.Client.Delete(ctx, old)).To(Succeed())
	g.Eventually(func(g Gomega) {
		s := &corev1.Secret{}
		g.Expect(e.Client.Get(ctx, secretKey, s)).To(Succeed())
		g.Expect(s.UID).NotTo(Equal(old.UID))
		published(g)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(admits).WithTimeout(30 * time.Second).Should(Succeed())

	// The caBundle is wiped: it is restored.
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
	g.Expect(e.Client.Get(ctx, client.ObjectKey{Name: o.WebhookConfig}, cfg)).To(Succeed())
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig.CABundle = nil
	}
	g.Expect(e.Client.Update(ctx, cfg)).To(Succeed())
	g.Eventually(published).WithTimeout(30 * time.Second).Should(Succeed())
	g.Eventually(admits).WithTimeout(30 * time.Second).Should(Succeed())
}
