// Command krew packs the kubectl plugin (kubectl macpool) for krew: one
// archive per platform holding the binary as kubectl-macpool, and the
// plugin manifest that describes them, its checksums computed from the
// archives written, never typed.
//
//	go run ./hack/krew -version v0.3.0 -url https://example.com/releases/v0.3.0 \
//	    -out bin/dist linux/amd64=bin/kubemacpool-linux-amd64 linux/arm64=bin/kubemacpool-linux-arm64
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// PluginBinary is the name kubectl looks for on the PATH.
const PluginBinary = "kubectl-macpool"

// Manifest is krew's plugin manifest (krew.googlecontainertools.github.com/v1alpha2).
type Manifest struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       Spec     `json:"spec"`
}

type Metadata struct {
	Name string `json:"name"`
}

type Spec struct {
	Version          string     `json:"version"`
	Homepage         string     `json:"homepage"`
	ShortDescription string     `json:"shortDescription"`
	Description      string     `json:"description"`
	Platforms        []Platform `json:"platforms"`
}

type Platform struct {
	Selector Selector `json:"selector"`
	URI      string   `json:"uri"`
	Sha256   string   `json:"sha256"`
	Bin      string   `json:"bin"`
}

type Selector struct {
	MatchLabels map[string]string `json:"matchLabels"`
}

func main() {
	version := flag.String("version", "", "plugin version, a semantic version with a leading v (required)")
	url := flag.String("url", "", "URL the archives will be downloadable under (required)")
	homepage := flag.String("homepage", "https://github.com/kubemacpool/kubemacpool", "plugin homepage")
	out := flag.String("out", "bin/dist", "directory to write the archives and macpool.yaml to")
	flag.Parse()
	if *version == "" || *url == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "krew: -version, -url and at least one os/arch=BINARY are required")
		flag.Usage()
		os.Exit(2)
	}
	binaries := map[string]string{}
	for _, arg := range flag.Args() {
		platform, path, ok := strings.Cut(arg, "=")
		if !ok || strings.Count(platform, "/") != 1 {
			fmt.Fprintf(os.Stderr, "krew: %q: want os/arch=BINARY\n", arg)
			os.Exit(2)
		}
		binaries[platform] = path
	}
	m, err := pack(binaries, *version, *url, *homepage, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "krew:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s and %d archives\n", filepath.Join(*out, "macpool.yaml"), len(m.Spec.Platforms))
}

// pack writes one archive per platform and the manifest describing them
// into out, and returns the manifest.
func pack(binaries map[string]string, version, url, homepage, out string) (Manifest, error) {
	if !strings.HasPrefix(version, "v") {
		return Manifest{}, fmt.Errorf("version %q must start with v (krew wants a semantic version)", version)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return Manifest{}, err
	}
	m := Manifest{
		APIVersion: "krew.googlecontainertools.github.com/v1alpha2",
		Kind:       "Plugin",
		Metadata:   Metadata{Name: "macpool"},
		Spec: Spec{
			Version:          version,
			Homepage:         homepage,
			ShortDescription: "Inspect kubemacpool's MAC pool: status, holders, collisions",
			Description: "kubectl macpool shows the MAC pool kubemacpool keeps: the range and how full it is (status),\n" +
				"who holds or carries a MAC (who MAC), MACs two running objects use (collisions), and pods\n" +
				"whose interfaces did not get the MAC they were given (not-applied).\n",
		},
	}
	platforms := make([]string, 0, len(binaries))
	for p := range binaries {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		archive := fmt.Sprintf("%s_%s_%s.tar.gz", PluginBinary, osName, arch)
		sum, err := writeArchive(binaries[p], filepath.Join(out, archive))
		if err != nil {
			return Manifest{}, fmt.Errorf("%s: %w", p, err)
		}
		m.Spec.Platforms = append(m.Spec.Platforms, Platform{
			Selector: Selector{MatchLabels: map[string]string{"os": osName, "arch": arch}},
			URI:      strings.TrimSuffix(url, "/") + "/" + archive,
			Sha256:   sum,
			Bin:      PluginBinary,
		})
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		return Manifest{}, err
	}
	return m, os.WriteFile(filepath.Join(out, "macpool.yaml"), data, 0o644)
}

// writeArchive writes a gzipped tar holding binary as kubectl-macpool,
// with fixed times (the same binary gives the same archive), and returns
// the archive's SHA-256.
func writeArchive(binary, path string) (string, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return "", err
	}
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	gz := gzip.NewWriter(io.MultiWriter(f, h))
	gz.ModTime = time.Unix(0, 0)
	tw := tar.NewWriter(gz)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: PluginBinary, Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		f.Close()
		return "", err
	}
	if _, err := tw.Write(bin); err != nil {
		f.Close()
		return "", err
	}
	for _, c := range []interface{ Close() error }{tw, gz, f} {
		if err := c.Close(); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
