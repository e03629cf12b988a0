package config

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/converter"

	"github.com/vigil-run/vigil/internal/codec"
)

// The key file comes from VIGIL_CODEC_KEY_FILE; every payload of the
// client's converter is then encrypted, and a bad file is one line naming
// the flag, never the key.
func TestCodecKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys")
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	if err := os.WriteFile(good, []byte("k1: "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := resolve(t, nil, map[string]string{"VIGIL_CODEC_KEY_FILE": good})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.ClientOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.DataConverter.ToPayload("marker")
	if err != nil || string(p.Metadata[converter.MetadataEncoding]) != codec.Encoding || bytes.Contains(p.Data, []byte("marker")) {
		t.Fatalf("payload not encrypted: %v %v", p, err)
	}
	if !strings.Contains(c.String(), "payload_encryption=on") || strings.Contains(c.String(), key) {
		t.Errorf("String: %s", c.String())
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("k1: "+key[:20]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = resolve(t, []string{"--codec-key-file", bad}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ClientOptions(nil)
	if err == nil || !strings.HasPrefix(err.Error(), "--codec-key-file: "+bad+": line 1:") || strings.Contains(err.Error(), key[:20]) {
		t.Fatalf("bad key file: %v", err)
	}

	// Without a key file, payloads are plain as before.
	c, _ = resolve(t, nil, nil)
	opts, err = c.ClientOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := opts.DataConverter.ToPayload("marker"); !bytes.Contains(p.Data, []byte("marker")) {
		t.Fatalf("plain payload expected: %v", p)
	}
}
