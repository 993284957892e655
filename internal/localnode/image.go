package localnode

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WriteImage writes a docker archive (what `ctr images import` and
// `docker load` read) of a one-layer image holding a static binary at
// entrypoint, tagged ref, for this machine's platform.
func WriteImage(archive, binary, entrypoint, ref string) error {
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(entrypoint, "/"), Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Config.Entrypoint = []string{entrypoint}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(archive, tag, img)
}

// ImageRefs returns the references a docker archive is tagged with, as
// containerd names them.
func ImageRefs(archive string) ([]string, error) {
	manifest, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, m := range manifest {
		for _, t := range m.RepoTags {
			refs = append(refs, normalize(t))
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s: no tagged image", archive)
	}
	return refs, nil
}

// normalize spells a reference in full, as containerd stores it
// (kubemacpool:e2e is docker.io/library/kubemacpool:e2e).
func normalize(ref string) string {
	t, err := name.NewTag(ref)
	if err != nil {
		return ref
	}
	registry := t.RegistryStr()
	if registry == name.DefaultRegistry { // index.docker.io
		registry = "docker.io"
	}
	return registry + "/" + t.RepositoryStr() + ":" + t.TagStr()
}
