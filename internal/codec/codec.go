// Package codec encrypts the payloads Vigil writes to Temporal with
// AES-256-GCM (a converter.PayloadCodec), with keys from a key file.
//
// The key file holds one `key-id: base64-key` per line (blank lines and
// lines starting with # are skipped). The first line's key encrypts; every
// listed key decrypts. Each encrypted payload names its key in its metadata,
// so keys rotate by adding a new first line and, once no history needs the
// old key, removing its line. Payloads without that metadata (written before
// encryption was turned on) pass through Decode unchanged.
//
// Key bytes never appear in errors or output; only key IDs and line numbers.
package codec

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"regexp"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-run/vigil/internal/errtext"
)

// Metadata of an encrypted payload.
const (
	// Encoding is the "encoding" metadata value of an encrypted payload
	// (the name Temporal's samples use, so other tools recognise it).
	Encoding = "binary/encrypted"
	// MetadataKeyID names the key that encrypted the payload.
	MetadataKeyID = "encryption-key-id"
)

// KeySize is the AES-256 key length in bytes.
const KeySize = 32

// GenerateHint is how to make a key line, for error messages and the README.
const GenerateHint = "make one with: echo \"k1: $(head -c 32 /dev/urandom | base64)\""

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// UnknownKeyError is a payload encrypted with a key the key file lacks.
type UnknownKeyError struct{ KeyID string }

func (e *UnknownKeyError) Error() string {
	if e.KeyID == "" {
		return "an encrypted payload names no key; it was not written by Vigil"
	}
	return fmt.Sprintf("a payload is encrypted with key %q, which the key file does not hold; add that key's line (keep old keys until no history needs them)", e.KeyID)
}

// DecryptError is a payload that does not decrypt with the key it names:
// the key under that ID is not the one that encrypted it, or the payload
// was altered.
type DecryptError struct{ KeyID string }

func (e *DecryptError) Error() string {
	return fmt.Sprintf("a payload does not decrypt with key %q: the key file holds another key under that ID, or the payload was altered", e.KeyID)
}

type key struct {
	id   string
	aead cipher.AEAD
}

// Codec is the AES-256-GCM payload codec. It is safe for concurrent use.
type Codec struct {
	keys []key // keys[0] encrypts
	byID map[string]cipher.AEAD
}

var _ converter.PayloadCodec = (*Codec)(nil)

// Load reads a key file. Errors name the file and the line, never a key.
func Load(path string) (*Codec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", path, errtext.WithoutPath(err))
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse reads the key file's contents.
func Parse(data []byte) (*Codec, error) {
	c := &Codec{byID: map[string]cipher.AEAD{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, b64, ok := strings.Cut(line, ":")
		id, b64 = strings.TrimSpace(id), strings.TrimSpace(b64)
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: not `key-id: base64-key`; %s", n, GenerateHint)
		case !keyIDPattern.MatchString(id):
			return nil, fmt.Errorf("line %d: key ID %q: use letters, digits, '.', '_' or '-' (at most 64)", n, id)
		case c.byID[id] != nil:
			return nil, fmt.Errorf("line %d: key ID %q is listed twice; give each key its own ID", n, id)
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) != KeySize {
			// Neither the key nor the decoder's error (it quotes input) is shown.
			return nil, fmt.Errorf("line %d: key %q is not %d bytes in base64; %s", n, id, KeySize, GenerateHint)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: %v", n, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("line %d: key %q: %v", n, id, err)
		}
		c.keys = append(c.keys, key{id: id, aead: aead})
		c.byID[id] = aead
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read the key file: %v", err)
	}
	if len(c.keys) == 0 {
		return nil, fmt.Errorf("holds no key; %s", GenerateHint)
	}
	return c, nil
}

// KeyID is the ID of the key that encrypts.
func (c *Codec) KeyID() string { return c.keys[0].id }

// Encode encrypts each payload (its data and metadata) with the first key.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	k := c.keys[0]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, fmt.Errorf("encrypt a payload: %w", err)
		}
		nonce := make([]byte, k.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return payloads, fmt.Errorf("encrypt a payload: %w", err)
		}
		// The key ID is authenticated: a payload cannot be relabelled.
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{converter.MetadataEncoding: []byte(Encoding), MetadataKeyID: []byte(k.id)},
			Data:     k.aead.Seal(nonce, nonce, plain, []byte(k.id)),
		}
	}
	return out, nil
}

// Decode decrypts the payloads encrypted by Encode with any listed key and
// passes the others through.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != Encoding {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead := c.byID[id]
		if aead == nil {
			return payloads, &UnknownKeyError{KeyID: id}
		}
		data := p.GetData()
		if len(data) < aead.NonceSize() {
			return payloads, &DecryptError{KeyID: id}
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return payloads, &DecryptError{KeyID: id}
		}
		var dec commonpb.Payload
		if err := proto.Unmarshal(plain, &dec); err != nil {
			return payloads, fmt.Errorf("a payload decrypted with key %q is not a payload: %w", id, err)
		}
		out[i] = &dec
	}
	return out, nil
}

// DataConverter wraps base so that every payload it makes is encrypted
// with c, and every payload it reads is decrypted (or passed through).
func (c *Codec) DataConverter(base converter.DataConverter) converter.DataConverter {
	return converter.NewCodecDataConverter(base, c)
}
