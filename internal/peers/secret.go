package peers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kubemacpool/kubemacpool/api/v1alpha1"
)

const (
	// Label marks a Secret in kubemacpool's namespace as a peer cluster;
	// its value is the peer's name (the one it runs with --cluster-name).
	Label = "kubemacpool.io/peer"
	// KubeconfigKey is the Secret's key holding the kubeconfig kubemacpool
	// reads the peer's MAC blocks with.
	KubeconfigKey = "kubeconfig"
)

// Config is one peer cluster, read from its Secret.
type Config struct {
	// Name is the peer's cluster name, the Secret's label value.
	Name string
	// Secret is the Secret's name, in kubemacpool's namespace.
	Secret string
	// Rest reaches the peer's API server.
	Rest *rest.Config
	// kubeconfig is the Secret's kubeconfig: a rotation restarts the peer.
	kubeconfig string
}

// ParseSecret reads a peer Secret. The name is returned whenever the label
// is a valid cluster name, even when the rest is refused: the split of the
// blocks counts the peer all the same (it picks in its own blocks whether
// or not this cluster can read its ledger).
func ParseSecret(s *corev1.Secret) (Config, error) {
	c := Config{Secret: s.Name}
	name := s.Labels[Label]
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return c, fmt.Errorf("label %s=%q is not a cluster name (%s): set it to the name the peer cluster runs kubemacpool with (--cluster-name, Helm value clusterName)",
			Label, name, strings.Join(errs, "; "))
	}
	c.Name = name
	data := s.Data[KubeconfigKey]
	if len(data) == 0 {
		return c, fmt.Errorf("it has no key %q: put there the kubeconfig of a user that cluster %s lets get, list and watch macblocks (and nothing else, see config/peer-reader)",
			KubeconfigKey, name)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		return c, fmt.Errorf("key %q is not a usable kubeconfig: %v", KubeconfigKey, err)
	}
	cfg.UserAgent = "kubemacpool-peer"
	c.Rest, c.kubeconfig = cfg, string(data)
	return c, nil
}

// checkNames refuses configurations that cannot give every cluster the
// same split: this cluster has no name, a Secret names this cluster, or
// two Secrets name one peer. It returns the refusal of each Secret by name.
func checkNames(self string, configs []Config, errs map[string]error) {
	seen := map[string]string{}
	for _, c := range configs {
		switch {
		case c.Name == "":
		case self == "":
			errs[c.Secret] = errors.Join(errs[c.Secret], errors.New("this cluster has no name: set --cluster-name (Helm value clusterName) to the name its peers know it by; without it no peer is used"))
		case c.Name == self:
			errs[c.Secret] = errors.Join(errs[c.Secret], fmt.Errorf("it names this cluster (%s) as its own peer", self))
		case seen[c.Name] != "":
			errs[c.Secret] = errors.Join(errs[c.Secret], fmt.Errorf("Secret %s already names peer cluster %s", seen[c.Name], c.Name))
		default:
			seen[c.Name] = c.Secret
		}
	}
}

// ReadSecrets reads every peer Secret of namespace, sorted by name, with
// the refusal of each invalid one (by Secret name). With checkSelf, the
// names are checked against self, this cluster's name, and each other
// (checkNames); the kubemacpool CLI, which does not know self, reads
// without.
func ReadSecrets(ctx context.Context, r client.Reader, namespace, self string, checkSelf bool) ([]Config, map[string]error, error) {
	list := &corev1.SecretList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.HasLabels{Label}); err != nil {
		return nil, nil, fmt.Errorf("listing peer Secrets: %w", err)
	}
	slices.SortFunc(list.Items, func(a, b corev1.Secret) int { return strings.Compare(a.Name, b.Name) })
	errs := map[string]error{}
	var configs []Config
	for i := range list.Items {
		c, err := ParseSecret(&list.Items[i])
		if err != nil {
			errs[c.Secret] = err
		}
		configs = append(configs, c)
	}
	if checkSelf {
		checkNames(self, configs, errs)
	}
	return configs, errs, nil
}

// blockMapper maps the one kind read from peers: their API servers'
// discovery is not needed (nor granted) to read it.
func blockMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper(nil)
	m.Add(v1alpha1.GroupVersion.WithKind("MACBlock"), meta.RESTScopeRoot)
	return m
}

// Client reads the peer's MAC blocks, and nothing else.
func (c Config) Client(scheme *runtime.Scheme) (client.Client, error) {
	return client.New(c.Rest, client.Options{Scheme: scheme, Mapper: blockMapper()})
}
