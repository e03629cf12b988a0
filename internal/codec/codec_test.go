package codec_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/vigil-run/vigil/internal/codec"
	"github.com/vigil-run/vigil/internal/humanjson"
)

func keyLine(id string, fill byte) string {
	return id + ": " + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{fill}, codec.KeySize)) + "\n"
}

func mustParse(t *testing.T, s string) *codec.Codec {
	t.Helper()
	c, err := codec.Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEncryptsAndDecrypts(t *testing.T) {
	c := mustParse(t, "# keys\n\n"+keyLine("k2", 2)+keyLine("k1", 1))
	dc := c.DataConverter(humanjson.DataConverter())
	const marker = "SECRET-MARKER-1"
	p, err := dc.ToPayload(map[string]string{"env": marker})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(p.GetData(), []byte(marker)) || string(p.Metadata[codec.MetadataKeyID]) != "k2" ||
		string(p.Metadata[converter.MetadataEncoding]) != codec.Encoding {
		t.Fatalf("payload not encrypted with the first key: %v", p)
	}
	var got map[string]string
	if err := dc.FromPayload(p, &got); err != nil || got["env"] != marker {
		t.Fatalf("decoded %v, %v", got, err)
	}
	// Rotation: a newer key first, the old one still decrypts.
	rotated := mustParse(t, keyLine("k3", 3)+keyLine("k2", 2)).DataConverter(humanjson.DataConverter())
	if err := rotated.FromPayload(p, &got); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	// Without the key: a typed error naming the key ID.
	var unknown *codec.UnknownKeyError
	if err := mustParse(t, keyLine("k3", 3)).DataConverter(humanjson.DataConverter()).FromPayload(p, &got); !errors.As(err, &unknown) || unknown.KeyID != "k2" {
		t.Fatalf("want UnknownKeyError k2, got %v", err)
	}
	// Another key under the same ID.
	var bad *codec.DecryptError
	if err := mustParse(t, keyLine("k2", 9)).DataConverter(humanjson.DataConverter()).FromPayload(p, &got); !errors.As(err, &bad) {
		t.Fatalf("want DecryptError, got %v", err)
	}
}

// Histories written before encryption was turned on still read.
func TestPlainPayloadsPassThrough(t *testing.T) {
	plain, err := humanjson.DataConverter().ToPayload("hello")
	if err != nil {
		t.Fatal(err)
	}
	out, err := mustParse(t, keyLine("k1", 1)).Decode([]*commonpb.Payload{plain})
	if err != nil || out[0] != plain {
		t.Fatalf("plain payload changed: %v %v", out, err)
	}
}

func TestBadKeyFiles(t *testing.T) {
	secret := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16)) // 16 bytes: AES-128, refused
	for name, tc := range map[string]struct{ file, want string }{
		"empty":     {"# nothing\n", "holds no key"},
		"no colon":  {"k1 " + secret + "\n", "line 1: not `key-id: base64-key`"},
		"short key": {keyLine("k1", 1) + "k2: " + secret + "\n", `line 2: key "k2" is not 32 bytes`},
		"not b64":   {"k1: " + secret + "!!\n", `line 1: key "k1" is not 32 bytes`},
		"twice":     {keyLine("k1", 1) + keyLine("k1", 2), `line 2: key ID "k1" is listed twice`},
		"bad id":    {"k 1: " + secret + "\n", `line 1: key ID "k 1"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := codec.Parse([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error shows the key or is not one line: %v", err)
			}
		})
	}
	if _, err := codec.Load(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("missing file: %v", err)
	}
	f := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(f, []byte(keyLine("k1", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := codec.Load(f); err != nil || c.KeyID() != "k1" {
		t.Fatalf("load: %v", err)
	}
}
