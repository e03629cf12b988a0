package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

const secretKey = "sk-VERY-SECRET-api-key-0123456789"

func resolve(t *testing.T, args []string, env map[string]string) (*Connection, error) {
	t.Helper()
	var c Connection
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := c.Resolve(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return &c, err
}

func TestDefaultsEnvAndFlags(t *testing.T) {
	c, err := resolve(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Address != "127.0.0.1:7233" || c.Namespace != "default" || c.TaskQueue != "vigil" || c.TLSEnabled() {
		t.Errorf("defaults: %+v", c)
	}
	env := map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "prod", "VIGIL_TASK_QUEUE": "q"}
	c, err = resolve(t, []string{"--namespace", "flag-ns"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Address != "temporal:7233" || c.Namespace != "flag-ns" || c.TaskQueue != "q" {
		t.Errorf("flags must win over env, env over defaults: %+v", c)
	}
	opts, err := c.ClientOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "temporal:7233" || opts.Namespace != "flag-ns" || opts.ConnectionOptions.TLS != nil || opts.Credentials != nil {
		t.Errorf("options: %+v", opts)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--address", "nohost"}, nil, "--address"},
		{[]string{"--namespace", ""}, nil, "--namespace"},
		{nil, map[string]string{"VIGIL_TASK_QUEUE": ""}, ""},
		{[]string{"--tls-cert-file", "a.pem"}, nil, "--tls-cert-file and --tls-key-file"},
		{nil, map[string]string{"TEMPORAL_TLS": "maybe"}, "TEMPORAL_TLS"},
	} {
		_, err := resolve(t, tc.args, tc.env)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v %v: %v", tc.args, tc.env, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestAPIKeyImpliesTLSAndNeverPrinted(t *testing.T) {
	c, err := resolve(t, nil, map[string]string{"TEMPORAL_API_KEY": secretKey})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.ClientOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Credentials == nil || opts.ConnectionOptions.TLS == nil {
		t.Errorf("API key must set credentials and TLS: %+v", opts.ConnectionOptions)
	}
	if s := c.String(); strings.Contains(s, secretKey) || !strings.Contains(s, "api_key=set") {
		t.Errorf("String: %q", s)
	}
	// Explicit --tls=false (a plaintext dev server) keeps the key but disables TLS.
	c, err = resolve(t, []string{"--tls=false"}, map[string]string{"TEMPORAL_API_KEY": secretKey})
	if err != nil {
		t.Fatal(err)
	}
	opts, err = c.ClientOptions(nil)
	if err != nil || opts.ConnectionOptions.TLS != nil || !opts.ConnectionOptions.TLSDisabled || opts.Credentials == nil {
		t.Errorf("--tls=false: %v %+v", err, opts.ConnectionOptions)
	}
	// A bad key value is reported without echoing it.
	_, err = resolve(t, []string{"--api-key", secretKey + "\n"}, nil)
	if err == nil || strings.Contains(err.Error(), secretKey) {
		t.Errorf("bad key error: %v", err)
	}
}

// pki is a throwaway CA with a server and a client certificate.
type pki struct {
	dir                                 string
	caFile, certFile, keyFile, otherKey string
	server                              tls.Certificate
	pool                                *x509.CertPool
	keyPEM                              []byte
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			DNSNames: []string{cn}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := &pki{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.caFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	srvCert, srvKey := issue("temporal.test", x509.ExtKeyUsageServerAuth)
	if p.server, err = tls.X509KeyPair(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := issue("vigil-worker", x509.ExtKeyUsageClientAuth)
	p.certFile, p.keyFile, p.keyPEM = write("client.pem", cliCert), write("client-key.pem", cliKey), cliKey
	_, otherKey := issue("other", x509.ExtKeyUsageClientAuth)
	p.otherKey = write("other-key.pem", otherKey)
	return p
}

func TestMTLSHandshake(t *testing.T) {
	p := newPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{p.server}, ClientCAs: p.pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	c, err := resolve(t, []string{"--address", ln.Addr().String(), "--tls-ca-file", p.caFile,
		"--tls-cert-file", p.certFile, "--tls-key-file", p.keyFile, "--tls-server-name", "temporal.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.ClientOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", ln.Addr().String(), opts.ConnectionOptions.TLS)
	if err != nil {
		t.Fatalf("mTLS handshake with the built config failed: %v", err)
	}
	conn.Close()
	if strings.Contains(c.String(), "BEGIN") || !strings.Contains(c.String(), "mtls=true") {
		t.Errorf("String: %q", c.String())
	}
}

func TestTLSFileErrorsNameFileNotContents(t *testing.T) {
	p := newPKI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-ca-file", filepath.Join(p.dir, "missing.pem")}, "--tls-ca-file: cannot read"},
		{[]string{"--tls-ca-file", p.keyFile}, "--tls-ca-file: " + p.keyFile + " holds no PEM certificate"},
		{[]string{"--tls-cert-file", p.certFile, "--tls-key-file", p.otherKey}, "are not a matching PEM certificate and key"},
		{[]string{"--tls-cert-file", p.keyFile, "--tls-key-file", p.certFile}, "are not a matching PEM certificate and key"},
	} {
		c, err := resolve(t, tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ClientOptions(nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "PRIVATE KEY") || strings.Contains(err.Error(), string(p.keyPEM[30:60])) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error leaks key material or spans lines: %q", err)
		}
	}
}

func TestHelpShowsNoEnvSecret(t *testing.T) {
	t.Setenv("TEMPORAL_API_KEY", secretKey)
	var c Connection
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c.AddFlags(fs)
	if strings.Contains(fs.FlagUsages(), secretKey) {
		t.Error("help shows the API key from the environment")
	}
}
