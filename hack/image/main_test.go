package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBuild builds an image around a tiny static program (standing in for
// the real binary, which takes minutes to link) and checks what a container
// runtime would see after loading the tarball.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	prog := "package main\n\nfunc main() { println(\"hello\") }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-o", bin, src)
	// The image has no libc, so the binary must be static like the real one.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "out", "image.tar")
	digest, err := build(bin, out, "kubemacpool:test")
	if err != nil {
		t.Fatal(err)
	}

	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := img.Digest(); err != nil || got != digest {
		t.Errorf("digest of written image = %v (err %v), build returned %v", got, err, digest)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("User = %q, want non-root 65532:65532", cfg.Config.User)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/kubemacpool"}) {
		t.Errorf("Entrypoint = %q, want [/kubemacpool]", cfg.Config.Entrypoint)
	}
	if cfg.OS != "linux" {
		t.Errorf("OS = %q, want linux", cfg.OS)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()

	var sawBinary, sawPasswd bool
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		switch hdr.Name {
		case "kubemacpool":
			sawBinary = true
			if hdr.Mode != 0o755 {
				t.Errorf("kubemacpool mode = %o, want 755", hdr.Mode)
			}
			if hdr.Uid != 65532 || hdr.Gid != 65532 {
				t.Errorf("kubemacpool owner = %d:%d, want 65532:65532", hdr.Uid, hdr.Gid)
			}
			if !bytes.Equal(data, want) {
				t.Errorf("kubemacpool in the layer (%d bytes) differs from the input binary (%d bytes)", len(data), len(want))
			}
		case "etc/passwd":
			sawPasswd = true
			if !strings.Contains(string(data), "nonroot:x:65532:65532:") {
				t.Errorf("/etc/passwd has no 65532 user:\n%s", data)
			}
		}
	}
	if !sawBinary {
		t.Error("layer has no kubemacpool")
	}
	if !sawPasswd {
		t.Error("layer has no etc/passwd")
	}

	// The same input must give the same image, so rebuilding an unchanged
	// binary does not produce a new digest to push.
	again, err := build(bin, filepath.Join(dir, "again.tar"), "kubemacpool:test")
	if err != nil {
		t.Fatal(err)
	}
	if again != digest {
		t.Errorf("rebuild digest %v differs from first build %v", again, digest)
	}
}
