package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// The manifest written describes the archives written: for each platform
// its URI names an archive in the output, whose SHA-256 is the one listed,
// and which holds the platform's binary as kubectl-macpool.
func TestPackDescribesTheArchives(t *testing.T) {
	dir := t.TempDir()
	binaries := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		p := filepath.Join(dir, "kubemacpool-"+arch)
		if err := os.WriteFile(p, []byte("plugin for "+arch), 0o755); err != nil {
			t.Fatal(err)
		}
		binaries["linux/"+arch] = p
	}
	out := filepath.Join(dir, "dist")
	if _, err := pack(binaries, "v0.3.0", "https://example.com/v0.3.0/", "https://example.com", out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(out, "macpool.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != "Plugin" || m.Metadata.Name != "macpool" || m.Spec.Version != "v0.3.0" || len(m.Spec.Platforms) != 2 {
		t.Fatalf("manifest %+v", m)
	}
	for _, p := range m.Spec.Platforms {
		arch := p.Selector.MatchLabels["arch"]
		archive := filepath.Join(out, path.Base(p.URI))
		raw, err := os.ReadFile(archive)
		if err != nil {
			t.Fatalf("%s: the URI names no archive written: %v", p.URI, err)
		}
		sum := sha256.Sum256(raw)
		if hex.EncodeToString(sum[:]) != p.Sha256 {
			t.Errorf("%s: sha256 %s listed, archive has %x", arch, p.Sha256, sum)
		}
		if p.URI != "https://example.com/v0.3.0/kubectl-macpool_linux_"+arch+".tar.gz" || p.Bin != "kubectl-macpool" || p.Selector.MatchLabels["os"] != "linux" {
			t.Errorf("%s: %+v", arch, p)
		}
		gz, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(gz)
		hdr, err := tr.Next()
		if err != nil {
			t.Fatal(err)
		}
		content, _ := io.ReadAll(tr)
		if hdr.Name != "kubectl-macpool" || hdr.Mode != 0o755 || string(content) != "plugin for "+arch {
			t.Errorf("%s: archive holds %s (%o): %q", arch, hdr.Name, hdr.Mode, content)
		}
	}
	if _, err := pack(binaries, "0.3.0", "https://example.com", "", out); err == nil {
		t.Error("a version without a leading v was accepted")
	}
}
