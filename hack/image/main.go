// Command image builds the kubemacpool container image without a Docker
// daemon: it wraps an already built static binary into a one-layer image
// (the same contents as the Dockerfile's distroless/nonroot result, minus
// the parts of distroless a static Go binary never reads) and writes it as a
// tarball that `docker load`, `podman load` and `crane push` accept. Given
// binaries for several platforms, it also writes an OCI image layout (as a
// tar) whose index holds one image per platform: what a registry serves to
// mixed amd64/arm64 clusters.
//
//	go run ./hack/image -binary bin/kubemacpool-static -out bin/kubemacpool-image.tar \
//	    -platform linux/amd64=bin/kubemacpool-linux-amd64 -platform linux/arm64=bin/kubemacpool-linux-arm64 \
//	    -oci-out bin/kubemacpool-oci.tar
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
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
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

// platforms collects -platform os/arch=binary flags.
type platforms map[string]string

func (p platforms) String() string { return fmt.Sprint(map[string]string(p)) }

func (p platforms) Set(v string) error {
	platform, binary, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(platform, "linux/") || binary == "" {
		return fmt.Errorf("%q: want linux/ARCH=PATH", v)
	}
	p[platform] = binary
	return nil
}

func main() {
	binary := flag.String("binary", "", "path of the static kubemacpool binary for this machine's architecture (required)")
	out := flag.String("out", "bin/kubemacpool-image.tar", "path of the image tarball to write")
	tag := flag.String("tag", "kubemacpool:dev", "image reference recorded in the tarball (what `docker load` tags it as)")
	multi := platforms{}
	flag.Var(multi, "platform", "linux/ARCH=PATH of a static binary for that platform, for the OCI layout (repeat)")
	ociOut := flag.String("oci-out", "", "path of the OCI image layout tar to write, with one image per -platform")
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
	if *ociOut != "" {
		digest, err := buildLayout(multi, *ociOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, "image:", err)
			os.Exit(1)
		}
		fmt.Printf("wrote %s (%d platforms)\nindex digest %s\n", *ociOut, len(multi), digest)
	}
}

// build writes the image holding binary as /kubemacpool to out, tagged tag,
// and returns the image (manifest) digest. The binary is built for the
// machine running this, so the image claims its architecture.
func build(binary, out, tag string) (v1.Hash, error) {
	ref, err := name.NewTag(tag)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("tag %q: %w", tag, err)
	}
	img, err := imageOf(binary, runtime.GOARCH, false)
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

// imageOf is the one-layer image running binary, for linux/arch: with
// Docker's media types (what `docker load` expects), or the OCI ones.
func imageOf(binary, arch string, oci bool) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	layerTar, err := rootfs(bin)
	if err != nil {
		return nil, err
	}
	var opts []tarball.LayerOption
	base := empty.Image
	if oci {
		opts = append(opts, tarball.WithMediaType(types.OCILayer))
		base = mutate.ConfigMediaType(mutate.MediaType(base, types.OCIManifestSchema1), types.OCIConfigJSON)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, opts...)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = arch
	cfg.Config.User = user
	cfg.Config.Entrypoint = []string{entrypoint}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.title": "kubemacpool"}
	return mutate.ConfigFile(img, cfg)
}

// buildLayout writes an OCI image layout holding one image per platform
// (os/arch -> binary), as a tar at out, and returns the index digest.
func buildLayout(binaries platforms, out string) (v1.Hash, error) {
	if len(binaries) == 0 {
		return v1.Hash{}, fmt.Errorf("-oci-out needs at least one -platform")
	}
	keys := make([]string, 0, len(binaries))
	for k := range binaries {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the same binaries always give the same index
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, platform := range keys {
		arch := strings.TrimPrefix(platform, "linux/")
		img, err := imageOf(binaries[platform], arch, true)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("%s: %w", platform, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	dir, err := os.MkdirTemp("", "kubemacpool-oci-")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.RemoveAll(dir)
	if _, err := layout.Write(dir, idx); err != nil {
		return v1.Hash{}, fmt.Errorf("writing the OCI layout: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return v1.Hash{}, err
	}
	if err := tarDir(dir, out); err != nil {
		return v1.Hash{}, err
	}
	return digest, nil
}

// tarDir writes the files under dir to the tar out, in name order, with
// fixed times, so the same layout always gives the same tar.
func tarDir(dir, out string) error {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		return err
	}
	sort.Strings(files)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Close()
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(data); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
