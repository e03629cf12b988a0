package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
)

func TestImageLayoutIsConsistent(t *testing.T) {
	if _, err := os.Stat(DefaultBusybox); err != nil {
		if os.Getenv("VIGIL_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("no busybox-static (VIGIL_REQUIRE_INTEGRATION=1): %v", err)
		}
		t.Skip("no busybox-static: ", err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, Options{}); err != nil {
		t.Fatal(err)
	}
	files := untar(t, buf.Bytes())
	for name, data := range files {
		if hexDigest, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && hexDigest != "" {
			sum := sha256.Sum256(data)
			if hex.EncodeToString(sum[:]) != hexDigest {
				t.Errorf("blob %s does not match its digest", name)
			}
		}
	}
	var index ociIndex
	mustJSON(t, files["index.json"], &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != Ref {
		t.Fatalf("index = %+v", index)
	}
	var manifest ociManifest
	mustJSON(t, files[blobPath(index.Manifests[0])], &manifest)
	var config imageConfig
	mustJSON(t, files[blobPath(manifest.Config)], &config)

	zr, err := gzip.NewReader(bytes.NewReader(files[blobPath(manifest.Layers[0])]))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	sum := sha256.Sum256(raw)
	if config.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatal("diff_id does not match the uncompressed layer")
	}
	layer := untar(t, raw)
	for _, want := range []string{"bin/busybox", "bin/sh", "bin/sleep", "bin/httpd", "etc/passwd", "tmp/"} {
		if _, ok := layer[want]; !ok {
			t.Errorf("layer lacks %s", want)
		}
	}

	var docker []dockerArchiveEntry
	mustJSON(t, files["manifest.json"], &docker)
	if len(docker) != 1 || docker[0].RepoTags[0] != "busybox:local" {
		t.Fatalf("docker manifest = %+v", docker)
	}

	var again bytes.Buffer
	if err := Write(&again, Options{}); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Fatal("the image is not reproducible")
	}
}

func untar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[hdr.Name] = data
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}
