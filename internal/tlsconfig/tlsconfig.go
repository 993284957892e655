// Package tlsconfig turns the TLS flags (minimum version, cipher suites)
// into what the webhook and metrics servers apply, refusing what would
// weaken them.
package tlsconfig

import (
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
)

// Versions are the minimum versions one may ask for.
var versions = map[string]uint16{"1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// Settings are the parsed flags.
type Settings struct {
	MinVersion uint16
	// CipherSuites for TLS 1.2 (Go's defaults when empty). TLS 1.3 suites
	// are not configurable in Go: all of them are secure.
	CipherSuites []uint16
}

// Parse reads --tls-min-version and --tls-cipher-suites (IANA names, as
// crypto/tls spells them). Only suites Go considers secure are accepted.
func Parse(minVersion string, cipherSuites []string) (Settings, error) {
	v, ok := versions[strings.TrimSpace(minVersion)]
	if !ok {
		return Settings{}, fmt.Errorf("--tls-min-version %q is not allowed: use 1.2 or 1.3", minVersion)
	}
	s := Settings{MinVersion: v}
	secure := map[string]uint16{}
	for _, c := range tls.CipherSuites() {
		secure[c.Name] = c.ID
	}
	for _, name := range cipherSuites {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		id, ok := secure[name]
		if !ok {
			return Settings{}, fmt.Errorf("--tls-cipher-suites: %q is not a secure TLS 1.2 cipher suite Go supports; choose from %s", name, strings.Join(names(secure), ", "))
		}
		s.CipherSuites = append(s.CipherSuites, id)
	}
	return s, nil
}

func names(m map[string]uint16) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Apply sets s on a server's TLS configuration.
func (s Settings) Apply(c *tls.Config) {
	c.MinVersion = s.MinVersion
	if len(s.CipherSuites) > 0 {
		c.CipherSuites = s.CipherSuites
	}
}
