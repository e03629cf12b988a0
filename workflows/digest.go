package workflows

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// ConfigDigest names one replica config: equal configs (defaults applied)
// have equal digests, different ones different digests. It is the one home
// of "the same config": the deployment's idempotency key for a replacement
// (reconfigureUpdateID), the replica's "already done", and what observe
// reports instead of whole configs.
//
// It hashes the config's JSON with empty values left out (null, "", 0,
// false, [] and {} alike), so a field added to the config later, left
// empty, keeps every digest as it was, and a config read back after a JSON
// round trip (nil and empty slices and maps) names the same digest.
// Pure and deterministic: encoding/json writes map keys sorted. The node a
// movable replica (placement) runs on is where it was placed, not config:
// it is left out.
//
//workflowcheck:ignore
func ConfigDigest(c ReplicaConfig) string {
	if c.Movable() {
		c.Node = ""
	}
	raw, err := json.Marshal(c.withDefaults())
	if err != nil {
		// A config is plain data; no value of it fails to encode.
		panic("config digest: " + err.Error())
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // numbers exactly as written
	if err := dec.Decode(&v); err != nil {
		panic("config digest: " + err.Error())
	}
	canon, err := json.Marshal(withoutEmpty(v))
	if err != nil {
		panic("config digest: " + err.Error())
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:12])
}

// withoutEmpty drops the empty members of every JSON object in v.
func withoutEmpty(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			if x = withoutEmpty(x); !emptyJSON(x) {
				out[k] = x
			}
		}
		return out
	case []any:
		for i, x := range t {
			t[i] = withoutEmpty(x)
		}
		return t
	}
	return v
}

func emptyJSON(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case json.Number:
		f, err := t.Float64()
		return err == nil && f == 0
	case bool:
		return !t
	case map[string]any:
		return len(t) == 0
	case []any:
		return len(t) == 0
	}
	return false
}
