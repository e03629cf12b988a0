package config

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-run/vigil/config/configtest"
)

// tlsProxy terminates (m)TLS in front of a plaintext dev server, which has
// no TLS of its own: the same shape as a TLS-terminating load balancer in
// front of a Temporal frontend.
func tlsProxy(t *testing.T, backend string, cfg *tls.Config) string {
	t.Helper()
	cfg.NextProtos = []string{"h2"} // gRPC requires ALPN h2
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			front, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer front.Close()
				if err := front.(*tls.Conn).Handshake(); err != nil {
					return
				}
				back, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer back.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(back, front); done <- struct{}{} }()
				go func() { _, _ = io.Copy(front, back); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

func TestDialDevServerThroughMTLS(t *testing.T) {
	srv := configtest.StartDevServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	p := newPKI(t)
	addr := tlsProxy(t, srv.FrontendHostPort(), &tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	base := []string{"--address", addr, "--tls-ca-file", p.caFile, "--tls-server-name", "temporal.test"}

	c, err := resolve(t, append(base, "--tls-cert-file", p.certFile, "--tls-key-file", p.keyFile), map[string]string{"TEMPORAL_API_KEY": secretKey})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	cl, err := c.Dial(dctx, nil)
	if err != nil {
		t.Fatalf("mTLS + API key dial through the proxy: %v", err)
	}
	defer cl.Close()
	// Registering search attributes goes through the operator service: it
	// must work over the secured connection, and twice (idempotent).
	for i := 0; i < 2; i++ {
		if err := EnsureSearchAttributes(dctx, cl, c.Namespace); err != nil {
			t.Fatalf("search attributes, round %d: %v", i+1, err)
		}
	}

	// Without a client certificate the proxy refuses the handshake.
	noCert, err := resolve(t, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	shortCtx, shortCancel := context.WithTimeout(ctx, 5*time.Second)
	defer shortCancel()
	if cl2, err := noCert.Dial(shortCtx, nil); err == nil {
		cl2.Close()
		t.Fatal("dial without a client certificate succeeded")
	} else if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), secretKey) {
		t.Errorf("error is not one clean line: %q", err)
	}

	// A plaintext client cannot talk to a TLS endpoint either.
	plain, err := resolve(t, []string{"--address", addr}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cl3, err := plain.Dial(shortCtx, nil); err == nil {
		cl3.Close()
		t.Fatal("plaintext dial to the TLS endpoint succeeded")
	}
}
