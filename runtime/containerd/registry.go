package containerd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"

	"github.com/vigil-run/vigil/runtime"
)

// DefaultPullStallTimeout is RegistryConfig.StallTimeout's default.
const DefaultPullStallTimeout = 60 * time.Second

// RegistryConfig says how the node pulls from image registries.
type RegistryConfig struct {
	// ConfigFile is a Docker-style config.json whose "auths" hold the
	// credentials per registry host; read at each pull. None when empty.
	ConfigFile string
	// CAFile is a PEM bundle of CAs trusted besides the system's.
	CAFile string
	// StallTimeout fails a pull that receives no byte for this long
	// (default DefaultPullStallTimeout).
	StallTimeout time.Duration
}

// CheckRegistryConfig reads the files of c once, so a bad one fails the
// worker's start with a line naming the flag rather than every pull.
func CheckRegistryConfig(c RegistryConfig) error {
	if _, err := readCredentials(c.ConfigFile); err != nil {
		return err
	}
	_, err := tlsConfig(c.CAFile)
	return err
}

// credentials are a config.json's basic-auth credentials by registry host.
type credentials map[string][2]string

// readCredentials reads the "auths" of a Docker-style config.json. Only
// what `docker login` writes there is understood: "auth" (base64 of
// user:password) or "username" and "password".
func readCredentials(path string) (credentials, error) {
	creds := credentials{}
	if path == "" {
		return creds, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--registry-config: %w; give the path of a Docker config.json", err)
	}
	var file struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
		CredsStore  string            `json:"credsStore"`
		CredHelpers map[string]string `json:"credHelpers"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		// Not err's text: it may quote the file's content.
		return nil, fmt.Errorf("--registry-config %s: not a JSON object with \"auths\"; write it as docker login does", path)
	}
	if file.CredsStore != "" || len(file.CredHelpers) > 0 {
		// Their credentials are elsewhere: every pull would be refused.
		return nil, fmt.Errorf("--registry-config %s: credsStore and credHelpers are not read; write the credentials into \"auths\" (docker --config DIR login with no helper)", path)
	}
	for host, a := range file.Auths {
		user, pass := a.Username, a.Password
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			u, p, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				return nil, fmt.Errorf("--registry-config %s: auths[%q].auth is not base64 of user:password", path, host)
			}
			user, pass = u, p
		}
		creds[registryHost(host)] = [2]string{user, pass}
	}
	return creds, nil
}

// registryHost turns a config.json key ("https://index.docker.io/v1/",
// "registry.example:5000") into the host containerd asks credentials for.
func registryHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	key, _, _ = strings.Cut(key, "/")
	switch key {
	case "index.docker.io", "docker.io":
		return "registry-1.docker.io"
	}
	return key
}

// tlsConfig trusts the system's CAs and those in caFile.
func tlsConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--registry-ca-file: %w; give a PEM file of CA certificates", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--registry-ca-file %s: no PEM certificate in it; give a PEM file of CA certificates", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// resolver resolves and fetches over verified TLS (also on localhost, where
// containerd's default skips verification; plain HTTP stays possible
// there) with the credentials of the registry config, counting the bytes
// received into got.
func (r *Runtime) resolver(ctx context.Context, got *atomic.Int64) (remotes.Resolver, error) {
	creds, err := readCredentials(r.cfg.Registry.ConfigFile)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := tlsConfig(r.cfg.Registry.CAFile)
	if err != nil {
		return nil, err
	}
	hosts := dockerconfig.ConfigureHosts(ctx, dockerconfig.HostOptions{
		DefaultScheme: "https",
		DefaultTLS:    tlsCfg,
		Credentials: func(host string) (string, string, error) {
			c := creds[host]
			return c[0], c[1], nil
		},
		UpdateClient: func(c *http.Client) error {
			c.Transport = &countingTransport{next: c.Transport, got: got}
			return nil
		},
	})
	return docker.NewResolver(docker.ResolverOptions{Hosts: func(host string) ([]docker.RegistryHost, error) {
		rhosts, err := hosts(host)
		if err != nil || !docker.IsLocalhost(host) {
			return rhosts, err
		}
		for i := range rhosts {
			c := *rhosts[i].Client
			c.Transport = docker.NewHTTPFallback(c.Transport)
			rhosts[i].Client = &c
		}
		return rhosts, nil
	}}), nil
}

// countingTransport adds the bytes of each response body read to got.
type countingTransport struct {
	next http.RoundTripper
	got  *atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.Body != nil {
		t.got.Add(1) // headers are progress too
		resp.Body = &countingBody{ReadCloser: resp.Body, got: t.got}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	got *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.got.Add(int64(n))
	return n, err
}

// errStalled is the cause a stalled pull is cancelled with.
var errStalled = errors.New("stalled")

// watchStall cancels ctx with errStalled once got stays the same for
// timeout; stop ends the watch.
func watchStall(ctx context.Context, got *atomic.Int64, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(min(timeout/4, time.Second))
		defer tick.Stop()
		last, since := got.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if n := got.Load(); n != last {
					last, since = n, now
				} else if now.Sub(since) >= timeout {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// pullError types a failed pull: stalled, refused credentials, or as wrap says.
func (r *Runtime) pullError(ctx context.Context, ref string, err error) error {
	if errors.Is(context.Cause(ctx), errStalled) {
		return &runtime.PullFailed{Kind: runtime.ErrImagePullStalled, Image: ref,
			Why: fmt.Sprintf("no data from the registry for %s; check the node's way to it (--pull-stall-timeout sets the limit)", r.cfg.Registry.StallTimeout)}
	}
	var status remoteerrors.ErrUnexpectedStatus
	if errors.Is(err, docker.ErrInvalidAuthorization) ||
		(errors.As(err, &status) && (status.StatusCode == http.StatusUnauthorized || status.StatusCode == http.StatusForbidden)) {
		host, _, _ := strings.Cut(ref, "/")
		return &runtime.PullFailed{Kind: runtime.ErrImagePullUnauthorized, Image: ref,
			Why: fmt.Sprintf("%s refused the node's credentials; set them for %s in the worker's --registry-config", host, host)}
	}
	return wrap("pull", ref, err, runtime.ErrImageNotFound)
}

// pulls are the pulls in progress by image reference, each with the bytes
// received so far. Two starts of one image share the count of the first.
type pulls struct {
	mu sync.Mutex
	m  map[string]*pullCount
}

type pullCount struct {
	got  atomic.Int64
	refs int
}

func (p *pulls) start(ref string) *atomic.Int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*pullCount{}
	}
	c := p.m[ref]
	if c == nil {
		c = &pullCount{}
		p.m[ref] = c
	}
	c.refs++
	return &c.got
}

func (p *pulls) done(ref string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.m[ref]; c != nil {
		if c.refs--; c.refs == 0 {
			delete(p.m, ref)
		}
	}
}

// PullProgress reports the bytes received so far by a pull of image (as a
// spec names it) in progress, and whether one is.
func (r *Runtime) PullProgress(image string) (int64, bool) {
	ref, err := NormalizeImage(image)
	if err != nil {
		return 0, false
	}
	r.pulls.mu.Lock()
	defer r.pulls.mu.Unlock()
	if c := r.pulls.m[ref]; c != nil {
		return c.got.Load(), true
	}
	return 0, false
}
