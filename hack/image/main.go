// Command image builds the kubemacpool container image without a Docker
// daemon: it wraps an already built static binary into a one-layer image
// (the same contents as the Dockerfile's distroless/nonroot result, minus
// the parts of distroless a static Go binary never reads) and writes it as a
// tarball that `docker load`, `podman load` and `crane push` accept.
//
//	go run ./hack/image -binary bin/kubemacpool-static -out bin/kubemacpool-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image runs as the distroless "nonroot" user so that Pod Security
// "restricted" and runAsNonRoot admit it without a securityContext override.
const (
	nonrootID  = 65532
	user       = "65532:65532"
	entrypoint = "/kubemacpool"
)

// passwd and group name the nonroot user: some libraries (os/user, and
// anything reporting the user name) look it up rather than trusting the uid.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nonroot:x:65532:\n"
)

func main() {
	binary := flag.String("binary", "", "path of the static kubemacpool binary to put in the image (required)")
	out := flag.String("out", "bin/kubemacpool-image.tar", "path of the image tarball to write")
	tag := flag.String("tag", "kubemacpool:dev", "image reference recorded in the tarball (what `docker load` tags it as)")
	flag.Parse()
	if *binary == "" {
		fmt.Fprintln(os.Stderr, "image: -binary is required")
		flag.Usage()
		os.Exit(2)
	}
	digest, err := build(*binary, *out, *tag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s)\ndigest %s\n", *out, *tag, digest)
}

// build writes the image holding binary as /kubemacpool to out, tagged tag,
// and returns the image (manifest) digest.
func build(binary, out, tag string) (v1.Hash, error) {
	ref, err := name.NewTag(tag)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("tag %q: %w", tag, err)
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return v1.Hash{}, err
	}
	layerTar, err := rootfs(bin)
	if err != nil {
		return v1.Hash{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return v1.Hash{}, err
	}

	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return v1.Hash{}, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	cfg = cfg.DeepCopy()
	// The binary is built for the machine running this (make image does not
	// cross-compile), so the image claims that platform.
	cfg.OS = "linux"
	cfg.Architecture = runtime.GOARCH
	cfg.Config.User = user
	cfg.Config.Entrypoint = []string{entrypoint}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.title": "kubemacpool"}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return v1.Hash{}, err
	}

	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return v1.Hash{}, err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return v1.Hash{}, fmt.Errorf("write %s: %w", out, err)
	}
	return digest, nil
}

// rootfs returns the uncompressed tar of the image's only layer. Every
// header has a fixed time so that the same binary always gives the same
// layer and image digest.
func rootfs(bin []byte) ([]byte, error) {
	entries := []struct {
		name  string
		mode  int64
		owner int
		data  []byte // nil for a directory
	}{
		{"etc/", 0o755, 0, nil},
		{"etc/passwd", 0o644, 0, []byte(passwd)},
		{"etc/group", 0o644, 0, []byte(group)},
		{"home/", 0o755, 0, nil},
		{"home/nonroot/", 0o700, nonrootID, nil},
		// Distroless ships a sticky world-writable /tmp; keep it so code
		// using os.TempDir works as the nonroot user.
		{"tmp/", 0o1777, 0, nil},
		{"kubemacpool", 0o755, nonrootID, bin},
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     e.name,
			Mode:     e.mode,
			Uid:      e.owner,
			Gid:      e.owner,
			Size:     int64(len(e.data)),
			ModTime:  time.Unix(0, 0),
		}
		if e.data == nil {
			hdr.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}
