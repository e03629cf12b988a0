package e2e

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/registrytest"
	"github.com/vigil-run/vigil/internal/testimage"
	"github.com/vigil-run/vigil/workflows"
)

// Replicas pull their image from a registry over TLS with the node's
// credentials (a tag with pull_policy always, a digest pin); an image of a
// host the node has no credentials for shows ImagePullUnauthorized as the
// replica's start error; status shows a pull in progress. The password, plain or base64, is in no workflow
// history and no worker log.
func TestRegistryPullWithCredentials(t *testing.T) {
	t.Parallel()
	requirePrerequisites(t)
	reg := registrytest.Start(t)
	tarball, err := testimage.Tar()
	if err != nil {
		t.Fatal(err)
	}
	pushed := reg.Push(t, "demo/busybox:v1", tarball)
	// big's pull, through a proxy, stops in the middle of its layer.
	reg.PushRandom(t, "demo/big:v1", 2<<20)
	proxy := registrytest.NewProxy(t, reg.Host)
	proxy.StallAfter(512 << 10)
	config := reg.WriteDockerConfig(t, reg.Password, reg.Host, proxy.Addr)
	s := newStack(t, "--registry-config", config, "--registry-ca-file", reg.CAFile,
		"--log-level", "debug") // the most talkative worker

	// localhost is the same registry under a host the config lacks.
	_, port, _ := strings.Cut(reg.Host, ":")
	s.supervise(s.deployment("reg", `version: v1
deployment: reg
services:
  tagged:
    rtype: service
    image: { name: `+reg.Host+`/demo/busybox:v1, pull_policy: always }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 1 }
  pinned:
    rtype: service
    image: { name: `+reg.Host+`/demo/busybox@`+pushed.String()+`, pull_policy: if_not_present }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 1 }
  big:
    rtype: service
    image: { name: `+proxy.Addr+`/demo/big:v1, pull_policy: always }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 1 }
  nocreds:
    rtype: service
    image: { name: localhost:`+port+`/demo/busybox:v1, pull_policy: always }
    command: { entrypoint: ["/bin/sh", "-c"], args: ["exec sleep 3600"] }
    scale: { mode: fixed, replicas: 1 }
`))
	running := func(v workflows.StateView) bool { return v.State == workflows.StateRunning }
	s.waitFor("reg/tagged-rep-1", "Running", time.Minute, running)
	s.waitFor("reg/pinned-rep-1", "Running", time.Minute, running)

	var startErr string
	for deadline := time.Now().Add(time.Minute); startErr == "" && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var st struct {
			StartError *string `json:"start_error"`
		}
		r := s.vigil("status", "reg/nocreds-rep-1", "--json")
		if r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &st) == nil && st.StartError != nil {
			startErr = *st.StartError
		}
	}
	if !strings.HasPrefix(startErr, "ImagePullUnauthorized: ") || !strings.Contains(startErr, "--registry-config") {
		t.Fatalf("start error of an image without credentials: %q, want ImagePullUnauthorized naming --registry-config", startErr)
	}

	// While big's start pulls, its status shows how far the pull got.
	type pullView struct {
		Image         string `json:"image"`
		BytesReceived int64  `json:"bytes_received"`
	}
	var pull pullView
	for deadline := time.Now().Add(45 * time.Second); pull.BytesReceived == 0 && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var st struct {
			Pull *pullView `json:"pull"`
		}
		r := s.vigil("status", "reg/big-rep-1", "--json")
		if r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &st) == nil && st.Pull != nil {
			pull = *st.Pull
		}
	}
	if pull.Image != proxy.Addr+"/demo/big:v1" || pull.BytesReceived == 0 {
		t.Fatalf("status --json of a start that pulls: pull %+v, want its image and bytes received", pull)
	}
	if r := s.vigil("status", "reg/big-rep-1"); !strings.Contains(r.Stdout, "PULLING") {
		t.Errorf("status of a start that pulls:\n%s", r.Stdout)
	}

	secrets := []string{reg.Password, base64.StdEncoding.EncodeToString([]byte(registrytest.User + ":" + reg.Password))}
	outputs := map[string]string{}
	for _, ref := range []string{"reg/tagged-rep-1", "reg/pinned-rep-1", "reg/nocreds-rep-1"} {
		wid := idOf(t, ref).WorkflowID()
		history := rawHistory(t, s, wid)
		if !strings.Contains(history, "/demo/busybox") {
			t.Fatalf("the history of %s lacks the image; is this the right workflow?", ref)
		}
		outputs["history of "+ref] = history
	}
	maps.Copy(outputs, workerLogs(t, s))
	for where, text := range outputs {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the registry password", where)
			}
		}
	}
}
