package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/vigil-run/vigil/internal/codec"
	"github.com/vigil-run/vigil/internal/humanjson"
)

// The endpoint decodes what the workers encrypt (Temporal's remote codec
// protocol), answers the Web UI's origin with CORS and refuses others.
func TestCodecServerDecodesForTheUI(t *testing.T) {
	cd, err := codec.Parse([]byte("k1: " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, codec.KeySize))))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(codecHandler(cd, defaultUIOrigins))
	defer srv.Close()

	p, err := cd.DataConverter(humanjson.DataConverter()).ToPayload("marker-in-env")
	if err != nil {
		t.Fatal(err)
	}
	remote := converter.NewRemotePayloadCodec(converter.RemotePayloadCodecOptions{Endpoint: srv.URL,
		ModifyRequest: func(r *http.Request) error { r.Header.Set("Origin", defaultUIOrigins[0]); return nil }})
	var got string
	if err := converter.NewCodecDataConverter(humanjson.DataConverter(), remote).FromPayload(p, &got); err != nil || got != "marker-in-env" {
		t.Fatalf("decoded %q, %v", got, err)
	}

	pre, _ := http.NewRequest(http.MethodOptions, srv.URL+"/decode", nil)
	pre.Header.Set("Origin", defaultUIOrigins[0])
	pre.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(pre)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != defaultUIOrigins[0] || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "X-Namespace") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	other, _ := http.NewRequest(http.MethodPost, srv.URL+"/decode", strings.NewReader(`{"payloads":[]}`))
	other.Header.Set("Origin", "http://evil.example")
	resp, err = http.DefaultClient.Do(other)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("another origin: %d %v", resp.StatusCode, resp.Header)
	}
}

// Without a key file, or with a bad one, codec-server says which flag to fix.
func TestCodecServerNeedsAKey(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(bad, []byte("k1: short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noDial := func(context.Context, client.Options) (client.Client, error) { t.Fatal("dialed"); return nil, nil }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"codec-server"}, "--codec-key-file: codec-server needs the key file"},
		{[]string{"codec-server", "--codec-key-file", bad}, "--codec-key-file: " + bad + ": line 1: key \"k1\" is not 32 bytes"},
		{[]string{"codec-server", "--codec-key-file", bad, "--listen", "8088"}, "--codec-key-file"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut, func(string) (string, bool) { return "", false }, noDial)
		if code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", tc.args, code, errOut.String(), exitUsage, tc.want)
		}
	}
}
