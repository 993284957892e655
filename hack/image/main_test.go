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

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// TestBuildLayout writes the OCI layout for two platforms (binaries that
// stand in for the cross-compiled ones) and opens it as a registry client
// would: an index with one linux/amd64 and one linux/arm64 image, each
// running its own binary as the nonroot user.
func TestBuildLayout(t *testing.T) {
	dir := t.TempDir()
	binaries := platforms{}
	for _, arch := range []string{"amd64", "arm64"} {
		path := filepath.Join(dir, "kubemacpool-"+arch)
		if err := os.WriteFile(path, []byte("binary for "+arch), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := binaries.Set("linux/" + arch + "=" + path); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "oci.tar")
	digest, err := buildLayout(binaries, out)
	if err != nil {
		t.Fatal(err)
	}
	again, err := buildLayout(binaries, filepath.Join(dir, "again.tar"))
	if err != nil || again != digest {
		t.Fatalf("the same binaries gave index %s, then %s (%v)", digest, again, err)
	}

	// Unpack the tar as a layout directory.
	unpacked := filepath.Join(dir, "layout")
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(unpacked, hdr.Name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	multi, err := layout.ImageIndexFromPath(unpacked)
	if err != nil {
		t.Fatal(err)
	}
	// The layout's index.json is the image index built.
	if got, _ := multi.Digest(); got != digest {
		t.Fatalf("layout holds index %s, built %s", got, digest)
	}
	m, err := multi.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", m.MediaType)
	}
	var seen []string
	for _, d := range m.Manifests {
		img, err := multi.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		platform := d.Platform.OS + "/" + d.Platform.Architecture
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %s, want OCI", platform, d.MediaType)
		}
		seen = append(seen, platform)
		if cfg.OS+"/"+cfg.Architecture != platform || cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/kubemacpool"}) {
			t.Errorf("%s: config %s/%s, user %q, entrypoint %v", platform, cfg.OS, cfg.Architecture, cfg.Config.User, cfg.Config.Entrypoint)
		}
		files := filesOf(t, img)
		if string(files["kubemacpool"]) != "binary for "+d.Platform.Architecture {
			t.Errorf("%s runs %q", platform, files["kubemacpool"])
		}
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("platforms %v", seen)
	}
}

// filesOf returns the regular files of an image's only layer, by name.
func filesOf(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			out[hdr.Name] = data
		}
	}
}
