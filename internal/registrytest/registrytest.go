// Package registrytest runs a real image registry for tests: distribution's
// registry (built from tools/registry by scripts/ensure-deps.sh) on
// 127.0.0.1, over TLS with a CA made for the test and one htpasswd user. It
// also pushes images into it and offers a proxy that can stop forwarding,
// to make a pull stall.
package registrytest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"
)

// User is the registry's one user.
const User = "vigil"

// Registry is a running registry.
type Registry struct {
	Host     string // 127.0.0.1:port
	Password string // User's password, random per registry
	// CAFile is the PEM of the CA that signed the registry's certificate.
	CAFile string
	dir    string
	log    string
	pool   *x509.CertPool
}

// Binary is the registry program in the cache, named after the version
// tools/registry/go.mod pins, or an error saying how to build it.
func Binary() (string, error) {
	_, self, _, _ := goruntime.Caller(0)
	gomod := filepath.Join(filepath.Dir(self), "..", "..", "tools", "registry", "go.mod")
	data, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	var version string
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/distribution/distribution/v3" {
			version = strings.TrimPrefix(f[1], "v")
		}
	}
	if version == "" {
		return "", fmt.Errorf("%s: no github.com/distribution/distribution/v3 requirement", gomod)
	}
	dir := os.Getenv("VIGIL_BIN")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "vigil", "bin")
	}
	bin := filepath.Join(dir, "registry-"+version)
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("registry %s not built (%s missing); run make deps", version, bin)
	}
	return bin, nil
}

// Start runs a registry until the test ends. Without the binary the test
// is skipped, or fails under VIGIL_REQUIRE_INTEGRATION=1.
func Start(t testing.TB) *Registry {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("VIGIL_REQUIRE_INTEGRATION") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	r := &Registry{dir: dir, log: filepath.Join(dir, "registry.log"), Password: randomText()}
	cert, key := r.makeCerts(t)
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	must(t, os.WriteFile(htpasswd, []byte(User+":"+string(hash)+"\n"), 0o600))

	for attempt := 0; ; attempt++ {
		r.Host = freeAddr(t)
		config := filepath.Join(dir, "config.yml")
		must(t, os.WriteFile(config, []byte(fmt.Sprintf(`version: 0.1
log: {level: info, formatter: json}
storage: {filesystem: {rootdirectory: %q}, delete: {enabled: true}}
http: {addr: %q, tls: {certificate: %q, key: %q}}
auth: {htpasswd: {realm: vigil-test, path: %q}}
`, filepath.Join(dir, "data"), r.Host, cert, key, htpasswd)), 0o600))
		logFile, err := os.Create(r.log)
		must(t, err)
		cmd := exec.Command(bin, "serve", config)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		// Its tracing would otherwise export to an OTLP collector.
		cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
		must(t, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited); logFile.Close() }()
		if r.waitReady(exited) {
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			return r
		}
		_ = cmd.Process.Kill()
		<-exited
		if attempt == 2 { // e.g. the port was taken meanwhile
			out, _ := os.ReadFile(r.log)
			t.Fatalf("registry did not start on %s:\n%s", r.Host, out)
		}
	}
}

// waitReady waits until /v2/ asks for credentials.
func (r *Registry) waitReady(exited <-chan struct{}) bool {
	client := r.HTTPClient()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		default:
		}
		resp, err := client.Get("https://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode == http.StatusUnauthorized
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// HTTPClient trusts the registry's CA.
func (r *Registry) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: r.pool}
	tr.Proxy = nil
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// WriteDockerConfig writes a Docker-style config.json with User and
// password for each host (the registry's by default) and returns its path.
func (r *Registry) WriteDockerConfig(t testing.TB, password string, hosts ...string) string {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{r.Host}
	}
	auths := map[string]map[string]string{}
	for _, h := range hosts {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(User + ":" + password))}
	}
	data, err := json.Marshal(map[string]any{"auths": auths})
	must(t, err)
	path := filepath.Join(t.TempDir(), "config.json")
	must(t, os.WriteFile(path, data, 0o600))
	return path
}

// Push pushes the image in an OCI layout tar (testimage.Write's) to the
// registry as repo:tag (e.g. "demo/busybox:v1") and returns its manifest's
// digest.
func (r *Registry) Push(t testing.TB, name string, image []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	store, err := local.NewStore(t.TempDir())
	must(t, err)
	index, err := archive.ImportIndex(ctx, store, bytes.NewReader(image))
	must(t, err)
	data, err := content.ReadBlob(ctx, store, index)
	must(t, err)
	var idx struct {
		Manifests []struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int64         `json:"size"`
		} `json:"manifests"`
	}
	must(t, json.Unmarshal(data, &idx))
	if len(idx.Manifests) == 0 {
		t.Fatal("push: the image has no manifest")
	}
	m := idx.Manifests[0]
	desc := index
	desc.MediaType, desc.Digest, desc.Size = m.MediaType, m.Digest, m.Size

	r.push(t, name, store, desc)
	return desc.Digest
}

// PushRandom pushes an image of one layer of size random bytes as name
// (repo:tag) and returns its manifest's digest. Its blobs are new to any
// containerd, so a pull of it fetches them all (it does not run).
func (r *Registry) PushRandom(t testing.TB, name string, size int) digest.Digest {
	t.Helper()
	ctx := context.Background()
	store := ok(local.NewStore(t.TempDir()))(t)
	write := func(mediaType string, data []byte) ocispec.Descriptor {
		desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		must(t, content.WriteBlob(ctx, store, desc.Digest.String(), bytes.NewReader(data), desc))
		return desc
	}
	layer := make([]byte, size)
	_, _ = rand.Read(layer)
	layerDesc := write(ocispec.MediaTypeImageLayer, layer)
	config := write(ocispec.MediaTypeImageConfig, ok(json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	}))(t))
	manifest := write(ocispec.MediaTypeImageManifest, ok(json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: config, Layers: []ocispec.Descriptor{layerDesc},
	}))(t))
	r.push(t, name, store, manifest)
	return manifest.Digest
}

// push pushes desc and what it refers to from store as name, with
// containerd's own pusher and the registry's credentials.
func (r *Registry) push(t testing.TB, name string, store content.Provider, desc ocispec.Descriptor) {
	t.Helper()
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithClient(r.HTTPClient()),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(func(string) (string, string, error) {
			return User, r.Password, nil
		}))),
	)})
	ref := r.Host + "/" + name
	pusher, err := resolver.Pusher(context.Background(), ref)
	must(t, err)
	if err := remotes.PushContent(context.Background(), pusher, desc, store, nil, platforms.All, nil); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// ManifestRequests counts the manifest requests (HEAD or GET) the registry
// has answered so far, from its access log: a pull makes at least one.
func (r *Registry) ManifestRequests(t testing.TB) int {
	t.Helper()
	f, err := os.Open(r.log)
	must(t, err)
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg    string `json:"msg"`
			URI    string `json:"http.request.uri"`
			Method string `json:"http.request.method"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "response completed" {
			continue
		}
		if strings.Contains(line.URI, "/manifests/") && line.Method != http.MethodPut {
			n++
		}
	}
	return n
}

// Log is the registry's log so far (for a failing test's message).
func (r *Registry) Log() string {
	out, _ := os.ReadFile(r.log)
	return string(out)
}

// makeCerts makes a CA (written to CAFile) and a certificate for 127.0.0.1
// it signed, and returns the certificate's and key's files.
func (r *Registry) makeCerts(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	caKey := ok(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER := ok(x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey))(t)
	ca := ok(x509.ParseCertificate(caDER))(t)
	key := ok(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der := ok(x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey))(t)
	keyDER := ok(x509.MarshalECPrivateKey(key))(t)
	r.CAFile = filepath.Join(r.dir, "ca.pem")
	certFile, keyFile = filepath.Join(r.dir, "cert.pem"), filepath.Join(r.dir, "key.pem")
	must(t, os.WriteFile(r.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644))
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	r.pool = x509.NewCertPool()
	r.pool.AddCert(ca)
	return certFile, keyFile
}

// Proxy forwards TCP connections on 127.0.0.1 to a target until Stall:
// from then on it keeps every connection open but forwards nothing more.
type Proxy struct {
	Addr    string
	target  string
	ln      net.Listener
	mu      sync.Mutex
	stalled bool
	stall   chan struct{}
	// after, when positive, is how many bytes from the target are
	// forwarded before the proxy stalls by itself.
	after, forwarded int64
}

// NewProxy forwards to target (host:port) until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln := ok(net.Listen("tcp", "127.0.0.1:0"))(t)
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, stall: make(chan struct{})}
	done := make(chan struct{})
	var conns sync.WaitGroup
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() { defer conns.Done(); p.serve(c, done) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		conns.Wait()
	})
	return p
}

// StallAfter makes the proxy stall once it has forwarded n bytes from the
// target: a pull then stops in the middle of a blob.
func (p *Proxy) StallAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.after = n
}

// fromTarget counts n bytes forwarded from the target, and stalls when
// StallAfter's count is reached.
func (p *Proxy) fromTarget(n int) {
	p.mu.Lock()
	p.forwarded += int64(n)
	reached := p.after > 0 && p.forwarded >= p.after
	p.mu.Unlock()
	if reached {
		p.Stall()
	}
}

// Stall stops forwarding; connections stay open.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stalled {
		p.stalled = true
		close(p.stall)
	}
}

func (p *Proxy) serve(c net.Conn, done <-chan struct{}) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	finished := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, fromTarget bool) {
		defer func() { finished <- struct{}{} }()
		buf := make([]byte, 4096) // small: a stall cuts a body short
		for {
			n, err := src.Read(buf)
			select {
			case <-p.stall:
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
				if fromTarget {
					p.fromTarget(n)
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pipe(up, c, false)
	go pipe(c, up, true)
	select {
	case <-finished:
	case <-p.stall:
		<-done // hold the connection open, silent, until the proxy closes
	}
}

func freeAddr(t testing.TB) string {
	ln := ok(net.Listen("tcp", "127.0.0.1:0"))(t)
	defer ln.Close()
	return ln.Addr().String()
}

func randomText() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ok(f())(t) is f's value, or t fails with its error.
func ok[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		must(t, err)
		return v
	}
}
