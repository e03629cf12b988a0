package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/vigil-run/vigil/internal/codec"
	"github.com/vigil-run/vigil/internal/ctrevents"
	"github.com/vigil-run/vigil/internal/histories"
	"github.com/vigil-run/vigil/internal/stack"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// writeKeyFile writes a key file of fresh keys, the first encrypting.
func writeKeyFile(t *testing.T, path string, ids ...string) {
	t.Helper()
	var b strings.Builder
	for _, id := range ids {
		k := make([]byte, codec.KeySize)
		if _, err := rand.Read(k); err != nil {
			t.Fatal(err)
		}
		b.WriteString(id + ": " + base64.StdEncoding.EncodeToString(k) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rotateKeyFile puts a fresh key first (a rotation), keeping the others.
func rotateKeyFile(t *testing.T, path, id string) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeKeyFile(t, path+".new", id)
	fresh, err := os.ReadFile(path + ".new")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(fresh, old...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// With a key file on the worker and the CLI, a marker in a service's env
// and command is in no event of any history, every payload the workers
// and the CLI write is encrypted, the replicas run and the CLI reads them,
// and the histories replay with the key. So is a failed start's error
// (its message quotes the spec). A rotated key (a new first line)
// encrypts from the worker's restart on; the old one still decrypts.
func TestCodecEncryptsEveryPayload(t *testing.T) {
	t.Parallel()
	vigil, wk := currentBinaries(t)
	keys := filepath.Join(t.TempDir(), "keys")
	writeKeyFile(t, keys, "k1")
	s := newStackWith(t, stack.Options{VigilBin: vigil, WorkerBin: wk, CodecKeyFile: keys})
	starts := recordTaskEvents(t, s.Stack)
	marker := "codec-marker-" + randomHex(t)
	s.apply(s.deployment("enc", `version: v1
deployment: enc
services:
  a:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["echo `+marker+`; exec sleep 3600"] }
    env: { MARK: "`+marker+`" }
    scale: { mode: fixed, replicas: 3 }
  b:
    image: { name: docker.io/library/busybox:local, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c", "exec sleep 3600 # `+marker+`"] }
    env: { MARK: "`+marker+`" }
    scale: { mode: fixed, replicas: 3 }
  c:
    image: { name: docker.io/library/`+marker+`:1, pull_policy: never }
    command: { entrypoint: ["/bin/sh", "-c", "exec sleep 3600"] }
`))
	refs := []string{"enc/a-rep-1", "enc/a-rep-2", "enc/a-rep-3", "enc/b-rep-1", "enc/b-rep-2", "enc/b-rep-3"}
	running := func(v workflows.StateView) bool { return v.State == workflows.StateRunning }
	for _, ref := range refs {
		s.waitFor(ref, "Running", 2*time.Minute, running)
	}
	// c's start fails: the error quotes its image, and is encrypted too.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		r := s.vigil("status", "enc/c-rep-1")
		if strings.Contains(r.Stdout, marker) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status of the failing start never showed its error (START ERROR, a memo) with the key: %q%q", r.Stdout, r.Stderr)
		}
	}

	// Rotate: k2 first, k1 kept. A restart after it writes with k2.
	rotateKeyFile(t, keys, "k2")
	s.killWorker()
	s.startWorker()
	restarted := time.Now()
	if r := s.vigil("restart", "enc/a-rep-1"); r.Code != 0 {
		t.Fatalf("restart: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if _, ok := waitEvent(starts, idOf(t, "enc/a-rep-1").ContainerName(), ctrevents.Start, restarted, time.Minute); !ok {
		t.Fatal("the restarted replica's container was not started")
	}
	s.waitFor("enc/a-rep-1", "Running again", time.Minute, running)
	for _, args := range [][]string{{"status", "enc/b-rep-1"}, {"list"}, {"events", "enc/a-rep-1"}} {
		if r := s.vigil(args...); r.Code != 0 {
			t.Fatalf("vigil %s with the rotated key file: exit %d: %s", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
	// Without the key, the CLI cannot read the state (and says so).
	if r := s.vigil("status", "enc/a-rep-1", "--codec-key-file", ""); r.Code == 0 || strings.Contains(r.Stdout, marker) {
		t.Fatalf("status without the key: exit %d, %q", r.Code, r.Stdout)
	}

	s.noHistoryContains(t, marker)

	// Every payload of a replica's history is encrypted, with k1 before the
	// rotation and k2 after; the history replays with the key.
	c, ctx := s.clientFor()
	wid := idOf(t, "enc/a-rep-1").WorkflowID()
	hist, err := histories.Read(ctx, c, wid, "")
	if err != nil {
		t.Fatal(err)
	}
	byKey := payloadKeys(t, hist)
	if byKey[""] != 0 || byKey["k1"] == 0 || byKey["k2"] == 0 {
		t.Errorf("payloads by key ID (\"\": plain): %v; want k1 and k2 only", byKey)
	}
	dc, err := s.DataConverter()
	if err != nil {
		t.Fatal(err)
	}
	replayer, err := worker.NewWorkflowReplayerWithOptions(worker.WorkflowReplayerOptions{DataConverter: dc})
	if err != nil {
		t.Fatal(err)
	}
	replayer.RegisterWorkflowWithOptions(workflows.Supervise, workflow.RegisterOptions{Name: replica.SupervisorWorkflowName})
	if err := replayer.ReplayWorkflowHistory(nil, hist); err != nil {
		t.Fatalf("replay of the encrypted history: %v", err)
	}
}

// payloadKeys counts the history's payloads by the key ID that encrypted
// them ("" for plain ones). Search attributes are not payloads of the
// converter (they stay readable for the list view) and are not counted.
func payloadKeys(t *testing.T, h *historypb.History) map[string]int {
	t.Helper()
	n := map[string]int{}
	payloadName := (&commonpb.Payload{}).ProtoReflect().Descriptor().FullName()
	attrsName := (&commonpb.SearchAttributes{}).ProtoReflect().Descriptor().FullName()
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		switch m.Descriptor().FullName() {
		case attrsName:
			return
		case payloadName:
			p := m.Interface().(*commonpb.Payload)
			if string(p.GetMetadata()[converter.MetadataEncoding]) == codec.Encoding {
				n[string(p.GetMetadata()[codec.MetadataKeyID])]++
			} else {
				n[""]++
			}
			return
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool { walk(mv.Message()); return true })
			case fd.Message() != nil && !fd.IsMap() && !fd.IsList():
				walk(v.Message())
			}
			return true
		})
	}
	for _, ev := range h.Events {
		walk(ev.ProtoReflect())
	}
	return n
}
