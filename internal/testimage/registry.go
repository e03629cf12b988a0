package testimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// Registry serves the test image over the registry HTTP API (the read-only
// part a pull uses), so tests can exercise pulls without a network. Serve it
// with httptest on 127.0.0.1: containerd talks plain HTTP to localhost.
// Every repository name serves the same image, under any tag.
type Registry struct {
	blobs    map[string][]byte // by digest
	manifest []byte
	digest   string
	pulls    atomic.Int32
}

// Pulls counts the manifests served so far.
func (r *Registry) Pulls() int { return int(r.pulls.Load()) }

// NewRegistry serves the image in an OCI layout tar written by Write.
func NewRegistry(image []byte) (*Registry, error) {
	r := &Registry{blobs: map[string][]byte{}}
	var index ociIndex
	tr := tar.NewReader(bytes.NewReader(image))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		if digest, ok := strings.CutPrefix(hdr.Name, "blobs/sha256/"); ok && digest != "" {
			r.blobs["sha256:"+digest] = data
		}
		if hdr.Name == "index.json" {
			if err := json.Unmarshal(data, &index); err != nil {
				return nil, err
			}
		}
	}
	r.digest = index.Manifests[0].Digest
	r.manifest = r.blobs[r.digest]
	return r, nil
}

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	path := req.URL.Path
	switch {
	case path == "/v2/" || path == "/v2":
		w.WriteHeader(http.StatusOK)
	case strings.Contains(path, "/manifests/"):
		ref := path[strings.LastIndex(path, "/")+1:]
		repo := strings.TrimPrefix(path[:strings.Index(path, "/manifests/")], "/v2/")
		if strings.HasPrefix(repo, "missing") || (strings.HasPrefix(ref, "sha256:") && ref != r.digest) {
			registryError(w, "MANIFEST_UNKNOWN")
			return
		}
		r.pulls.Add(1)
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", r.digest)
		r.write(w, req, r.manifest)
	case strings.Contains(path, "/blobs/"):
		blob, ok := r.blobs[path[strings.LastIndex(path, "/")+1:]]
		if !ok {
			registryError(w, "BLOB_UNKNOWN")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		r.write(w, req, blob)
	default:
		http.NotFound(w, req)
	}
}

func (r *Registry) write(w http.ResponseWriter, req *http.Request, body []byte) {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

func registryError(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, `{"errors":[{"code":"`+code+`","message":"not found"}]}`)
}
