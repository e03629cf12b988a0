package ctrlog

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The worker serves its node's logs over HTTPS: the node's workflow
// advertises the address and the certificate's fingerprint (nothing
// secret); a caller shows the node's token (a file only the operator
// reads). Log bytes never pass through Temporal.

// ErrNotFound: no such container's log on the node (the server's 404).
var ErrNotFound = errors.New("no log on this node")

// ErrEnded: a follow's stream broke off (the worker stopped).
var ErrEnded = errors.New("the stream ended")

// ErrRefused: the server answered, and refused the request (e.g. a wrong
// token); asking again will not help.
var ErrRefused = errors.New("refused")

// tokenBytes is the token's length before hex encoding.
const tokenBytes = 32

// LoadOrCreateToken reads the token at path, making one (mode 0600) if
// the file does not exist.
func LoadOrCreateToken(path string) (string, error) {
	tok, err := ReadToken(path)
	if !errors.Is(err, os.ErrNotExist) {
		return tok, err
	}
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok = hex.EncodeToString(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return ReadToken(path) // another worker made it meanwhile
	}
	if err != nil {
		return "", fmt.Errorf("logs token file %s: %w; make its directory writable or give another file", path, err)
	}
	_, err = f.WriteString(tok + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return tok, err
}

// ReadToken reads the token file at path.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("logs token file %s: holds %d characters; want a token of at least 16 (delete the file and the worker makes one)", path, len(tok))
	}
	return tok, nil
}

// Server serves logs on one listener.
type Server struct {
	srv         *http.Server
	ln          net.Listener
	fingerprint string
}

// Resolve finds the log of the replica ref names; an error is the
// caller's (a malformed ref).
type Resolve func(ref string) (Log, error)

// Serve serves the logs resolve finds on listen (host:port) to callers
// with token, until Close.
func Serve(listen, token string, resolve Resolve) (*Server, error) {
	cert, fp, err := selfSigned()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("logs endpoint %s: %w; give a free host:port with --logs-listen", listen, err)
	}
	s := &Server{ln: ln, fingerprint: fp}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/logs", func(w http.ResponseWriter, req *http.Request) {
		got := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			httpError(w, http.StatusUnauthorized, "the logs token is missing or wrong; give the node's token file (vigil logs --logs-token-file)")
			return
		}
		serveLogs(w, req, resolve)
	})
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A reader that goes away mid-handshake is not the operator's concern.
		ErrorLog:  log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
	}
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Fingerprint is the hex SHA-256 of the server's certificate (DER), which
// the node advertises: a reader trusts that certificate alone.
func (s *Server) Fingerprint() string { return s.fingerprint }

// Advertised is the address to advertise for a server listening on listen
// at addr: advertise if given, else the host's name when it listens on
// every address, else addr.
func Advertised(advertise, addr string) string {
	if advertise != "" {
		return advertise
	}
	host, port, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			return net.JoinHostPort(name, port)
		}
	}
	return addr
}

// Close stops serving, ending follows.
func (s *Server) Close() error { return s.srv.Close() }

func serveLogs(w http.ResponseWriter, req *http.Request, resolve Resolve) {
	v := req.URL.Query()
	var q Query
	var err error
	if t := v.Get("tail"); t != "" {
		if q.Tail, err = strconv.Atoi(t); err != nil || q.Tail < 0 {
			httpError(w, http.StatusBadRequest, "tail: want a number of lines, 0 for all")
			return
		}
	}
	if s := v.Get("since"); s != "" {
		if q.Since, err = time.Parse(time.RFC3339Nano, s); err != nil {
			httpError(w, http.StatusBadRequest, "since: want an RFC 3339 time")
			return
		}
	}
	q.Previous = v.Get("previous") == "true"
	follow := v.Get("follow") == "true"
	l, err := resolve(v.Get("id"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	recs, cur, err := l.Read(q)
	if errors.Is(err, ErrNoLog) && !follow {
		cur.Close()
		httpError(w, http.StatusNotFound, fmt.Sprintf("%s: %v", v.Get("id"), ErrNotFound))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			cur.Close()
			return
		}
	}
	flusher, _ := w.(http.Flusher)
	if !follow {
		cur.Close()
		return
	}
	if flusher != nil {
		flusher.Flush()
	}
	_ = cur.Follow(req.Context(), func(r Record) error {
		if err := enc.Encode(r); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
}

type errorBody struct {
	Error string `json:"error"`
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// selfSigned makes the server's certificate, new for each worker process:
// the node's claim carries its fingerprint, so no CA is needed.
func selfSigned() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "vigil-worker logs"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, hex.EncodeToString(sum[:]), nil
}

// Client reads logs from a node's endpoint: its address, the certificate
// fingerprint it advertises and the node's token.
type Client struct {
	Address, CertSHA256, Token string
}

// Fetch reads the logs of replica ref, passing each record to fn; with
// follow, until ctx ends or the server goes away (ErrEnded). The server
// must show the certificate CertSHA256 names.
func (c Client) Fetch(ctx context.Context, ref string, q Query, follow bool, fn func(Record) error) error {
	ep := c
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The fingerprint the node's workflow advertises is the trust: no
		// CA or host name is checked, the certificate must be that one.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the logs endpoint showed no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if hex.EncodeToString(sum[:]) != ep.CertSHA256 {
				return fmt.Errorf("the logs endpoint at %s is not the node's worker (its certificate is not the one the node advertises)", ep.Address)
			}
			return nil
		},
	}}
	defer tr.CloseIdleConnections()
	v := url.Values{"id": {ref}}
	if q.Tail > 0 {
		v["tail"] = []string{strconv.Itoa(q.Tail)}
	}
	if !q.Since.IsZero() {
		v["since"] = []string{q.Since.UTC().Format(time.RFC3339Nano)}
	}
	if q.Previous {
		v["previous"] = []string{"true"}
	}
	if follow {
		v["follow"] = []string{"true"}
	}
	u := "https://" + ep.Address + "/v1/logs?" + v.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("the node's logs endpoint %s: %w", ep.Address, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		_ = dec.Decode(&e)
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%w (%s)", ErrNotFound, e.Error)
		}
		return fmt.Errorf("the node's logs endpoint %s %w it: %s: %s", ep.Address, ErrRefused, resp.Status, e.Error)
	}
	for {
		var r Record
		if err := dec.Decode(&r); err != nil {
			switch {
			case ctx.Err() != nil || (errors.Is(err, io.EOF) && !follow):
				return nil
			case follow:
				return fmt.Errorf("the node's logs endpoint %s: %w (%v)", ep.Address, ErrEnded, err)
			}
			return fmt.Errorf("the node's logs endpoint %s: %w", ep.Address, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
}
