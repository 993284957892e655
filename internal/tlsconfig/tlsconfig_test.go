package tlsconfig

import (
	"crypto/tls"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	s, err := Parse("1.2", nil)
	if err != nil || s.MinVersion != tls.VersionTLS12 || s.CipherSuites != nil {
		t.Fatalf("default: %+v, %v", s, err)
	}
	s, err = Parse("1.3", []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", " TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 "})
	if err != nil || s.MinVersion != tls.VersionTLS13 || len(s.CipherSuites) != 2 {
		t.Fatalf("1.3 with suites: %+v, %v", s, err)
	}
	for _, c := range []struct {
		version string
		suites  []string
		want    string
	}{
		{"1.1", nil, "use 1.2 or 1.3"},
		{"1.0", nil, "use 1.2 or 1.3"},
		{"", nil, "use 1.2 or 1.3"},
		{"1.2", []string{"TLS_RSA_WITH_RC4_128_SHA"}, "not a secure TLS 1.2 cipher suite"},
		{"1.2", []string{"nonsense"}, "choose from"},
	} {
		if _, err := Parse(c.version, c.suites); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q, %v) = %v, want an error containing %q", c.version, c.suites, err, c.want)
		}
	}
}
