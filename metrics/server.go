package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyCheckTimeout bounds one /readyz check of a dependency.
const readyCheckTimeout = 2 * time.Second

// Check reports why the worker is not ready, or nil.
type Check func(ctx context.Context) error

// Readiness is the worker's /readyz: ready once every named condition was
// set and every check passes.
type Readiness struct {
	mu      sync.Mutex
	pending []string // conditions not yet met, in the order they were named
	checks  []namedCheck
}

type namedCheck struct {
	name  string
	check Check
}

// NewReadiness waits for each named condition (e.g. "workflow queue vigil
// polled") until Set is called for it.
func NewReadiness(conditions ...string) *Readiness {
	return &Readiness{pending: append([]string(nil), conditions...)}
}

// Set marks a condition met.
func (r *Readiness) Set(condition string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.pending {
		if c == condition {
			r.pending = append(r.pending[:i], r.pending[i+1:]...)
			return
		}
	}
}

// AddCheck adds a dependency checked on every /readyz (e.g. containerd).
func (r *Readiness) AddCheck(name string, check Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, namedCheck{name, check})
}

// Ready returns nil when ready, else the first reason it is not.
func (r *Readiness) Ready(ctx context.Context) error {
	r.mu.Lock()
	pending := append([]string(nil), r.pending...)
	checks := append([]namedCheck(nil), r.checks...)
	r.mu.Unlock()
	if len(pending) > 0 {
		return fmt.Errorf("waiting for: %s", pending[0])
	}
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
		err := c.check(cctx)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %v", c.name, err)
		}
	}
	return nil
}

// Server serves /metrics, /healthz and /readyz.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr (e.g. 127.0.0.1:9464; port 0 picks a free one).
func Listen(addr string, m *Metrics, ready *Readiness) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-address %s: %w; give a free host:port, e.g. 127.0.0.1:9464", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		if err := ready.Ready(req.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = fmt.Fprintln(w, "ready")
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
