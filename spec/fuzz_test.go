package spec

import (
	"errors"
	"strings"
	"testing"

	"github.com/vigil-run/vigil/replica"
)

// FuzzParse checks that no input makes the parser panic, that every error
// is a one-line *FieldError naming a field, and that whatever parses yields
// valid supervision inputs.
func FuzzParse(f *testing.F) {
	f.Add([]byte(shop))
	f.Add([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n"))
	f.Add([]byte("version: v1\ndeployment: &a x\nservices: *a\n"))
	f.Add([]byte(contract))
	f.Add([]byte(serving))
	f.Add([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n    network: host\n    ports: [{ container: 0, host: 70000, host_ip: '::1' }]\n    volumes: [{ source: a/../b, name: x, target: y }]\n    stop_signal: 0\n"))
	f.Add([]byte("version: v1\ndeployment: d\nservices:\n  s:\n    image: { name: busybox }\n    errors: { on_panic: { backoff: { multiplier: 0.5 }, rules: [ { signals: [SIGNOPE], action: isolate } ] } }\n    health: { liveness: { exec: [a], http: { port: 1 } } }\n    resources: { memory: 1Ti, cpus: 1e3, pids: 1 }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T is not a *FieldError: %v", err, err)
			}
			if fe.Path == "" || fe.Msg == "" {
				t.Fatalf("error names no field or says nothing: %q", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		for _, in := range d.Inputs("node") {
			if err := in.Policy.Validate(); err != nil {
				t.Fatalf("%v: invalid policy accepted: %v", in.ID, err)
			}
			if in.ID.Replica < 1 || !replica.ValidName(in.ID.Deployment) || !replica.ValidName(in.ID.Service) {
				t.Fatalf("bad ID accepted: %+v", in.ID)
			}
		}
	})
}
