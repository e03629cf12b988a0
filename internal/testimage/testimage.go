// Package testimage builds a small OCI image from the host's static busybox,
// without a registry, so that tests, benchmarks and `make run` have a real
// image on machines with no network.
//
// The tar is both an OCI image layout (index.json, read by containerd) and a
// docker-archive (manifest.json, read by `docker load`).
package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Ref is the reference the image is imported under.
const Ref = "docker.io/library/busybox:local"

// DefaultBusybox is where Debian's busybox-static installs the binary.
const DefaultBusybox = "/bin/busybox"

// Options say what goes into the image. The zero value builds Ref from DefaultBusybox.
type Options struct {
	Busybox string // path of a statically linked busybox
	Ref     string // full image reference, e.g. docker.io/library/busybox:local
}

// fallbackApplets are linked when `busybox --list` cannot be run.
var fallbackApplets = []string{
	"cat", "date", "echo", "env", "false", "grep", "head", "hostname", "httpd", "kill", "ls",
	"mkdir", "nc", "printf", "ps", "rm", "seq", "sh", "sleep", "tail", "touch", "true", "wget", "yes",
}

// epoch makes the image reproducible: the same busybox gives the same digest.
var epoch = time.Unix(0, 0).UTC()

// Write writes the image tar to w.
func Write(w io.Writer, opts Options) error {
	if opts.Busybox == "" {
		opts.Busybox = DefaultBusybox
	}
	if opts.Ref == "" {
		opts.Ref = Ref
	}
	busybox, err := os.ReadFile(opts.Busybox)
	if err != nil {
		return fmt.Errorf("read busybox: %w (install it: apt-get install busybox-static)", err)
	}
	layer, diffID, err := buildLayer(busybox, applets(opts.Busybox))
	if err != nil {
		return err
	}
	config, err := json.Marshal(imageConfig{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      epoch,
		Config: containerConfig{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:        []string{"sh"},
			WorkingDir: "/",
		},
		RootFS: rootFS{Type: "layers", DiffIDs: []string{diffID}},
	})
	if err != nil {
		return err
	}
	layerDesc := describe("application/vnd.oci.image.layer.v1.tar+gzip", layer)
	configDesc := describe("application/vnd.oci.image.config.v1+json", config)
	manifest, err := json.Marshal(ociManifest{
		SchemaVersion: 2,
		MediaType:     "application/vnd.oci.image.manifest.v1+json",
		Config:        configDesc,
		Layers:        []descriptor{layerDesc},
	})
	if err != nil {
		return err
	}
	manifestDesc := describe("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc.Platform = &platform{Architecture: runtime.GOARCH, OS: "linux"}
	manifestDesc.Annotations = map[string]string{
		"io.containerd.image.name":          opts.Ref,
		"org.opencontainers.image.ref.name": tagOf(opts.Ref),
	}
	index, err := json.Marshal(ociIndex{
		SchemaVersion: 2,
		MediaType:     "application/vnd.oci.image.index.v1+json",
		Manifests:     []descriptor{manifestDesc},
	})
	if err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]dockerArchiveEntry{{
		Config:   blobPath(configDesc),
		RepoTags: []string{dockerTag(opts.Ref)},
		Layers:   []string{blobPath(layerDesc)},
	}})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"manifest.json", dockerManifest},
		{blobPath(layerDesc), layer},
		{blobPath(configDesc), config},
		{blobPath(manifestDesc), manifest},
	}
	if err := writeDir(tw, "blobs/", 0o755); err != nil {
		return err
	}
	if err := writeDir(tw, "blobs/sha256/", 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

var (
	cacheOnce sync.Once
	cacheTar  []byte
	cacheErr  error
)

// Tar returns the default image tar, built once per process.
func Tar() ([]byte, error) {
	cacheOnce.Do(func() {
		var buf bytes.Buffer
		cacheErr = Write(&buf, Options{})
		cacheTar = buf.Bytes()
	})
	return cacheTar, cacheErr
}

// WriteFile writes the image tar to path.
func WriteFile(path string, opts Options) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, opts); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// buildLayer returns the gzipped layer and the digest of its uncompressed tar.
func buildLayer(busybox []byte, applets []string) (gz []byte, diffID string, err error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, dir := range []string{"bin/", "dev/", "etc/", "proc/", "root/", "sys/", "var/", "var/www/"} {
		if err := writeDir(tw, dir, 0o755); err != nil {
			return nil, "", err
		}
	}
	if err := writeDir(tw, "tmp/", 0o1777); err != nil {
		return nil, "", err
	}
	if err := writeFile(tw, "bin/busybox", 0o755, busybox); err != nil {
		return nil, "", err
	}
	for _, name := range applets {
		hdr := &tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + name, Linkname: "busybox", Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, "", err
		}
	}
	etc := map[string]string{
		"etc/passwd":         "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":          "root:x:0:\nnogroup:x:65534:\n",
		"var/www/index.html": "vigil test image\n",
	}
	for _, name := range sortedKeys(etc) {
		if err := writeFile(tw, name, 0o644, []byte(etc[name])); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(raw.Bytes())
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestSpeed)
	if err != nil {
		return nil, "", err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return out.Bytes(), "sha256:" + hex.EncodeToString(sum[:]), nil
}

// applets lists busybox's applets (as `busybox --install` would link them),
// or a fixed set when the binary cannot be run here.
func applets(busybox string) []string {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fallbackApplets
	}
	var names []string
	for _, name := range strings.Fields(string(out)) {
		if name != "busybox" && !strings.Contains(name, "/") {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return fallbackApplets
	}
	sort.Strings(names)
	return names
}

func writeDir(tw *tar.Writer, name string, mode int64) error {
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func describe(mediaType string, blob []byte) descriptor {
	sum := sha256.Sum256(blob)
	return descriptor{MediaType: mediaType, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(blob))}
}

func blobPath(d descriptor) string {
	return path.Join("blobs", strings.Replace(d.Digest, ":", "/", 1))
}

// tagOf is the tag of a full reference ("local" for docker.io/library/busybox:local).
func tagOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}

// dockerTag is the short form `docker load` shows (busybox:local).
func dockerTag(ref string) string {
	return strings.TrimPrefix(ref, "docker.io/library/")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type ociIndex struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type ociManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type imageConfig struct {
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Created      time.Time       `json:"created"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
}

type containerConfig struct {
	Env        []string `json:"Env,omitempty"`
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type dockerArchiveEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}
