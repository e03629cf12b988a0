package probe_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vigil-run/vigil/internal/containerdtest"
	"github.com/vigil-run/vigil/probe"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/runtime"
)

// Against a real containerd: exec probes run in the container through the
// task's Exec; tcp and http probes reach the container's own loopback from
// inside its network namespace (a container without networking included);
// a liveness probe failing failure_threshold times stops the container,
// whose exit then reads Unhealthy.
func TestProbesOnContainerd(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Runtime(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := replica.ID{Deployment: "t", Service: "probed", Replica: 1}
	spec := containerdtest.TestImage("mkdir -p /www && echo ok > /www/index.html && touch /tmp/ok && exec httpd -f -p 8080 -h /www")
	spec.Health = &runtime.Health{
		Liveness:  &runtime.Probe{Exec: []string{"test", "-f", "/tmp/ok"}, Period: 200 * time.Millisecond, Timeout: 2 * time.Second, FailureThreshold: 2},
		Startup:   &runtime.Probe{HTTP: &runtime.HTTPProbe{Port: 8080, Path: "/"}, Period: 200 * time.Millisecond, Timeout: 2 * time.Second, FailureThreshold: 50},
		StopGrace: time.Second,
	}
	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	info, err := rt.Start(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	h, started, err := rt.Health(ctx, id)
	if err != nil || h == nil || h.Liveness == nil || h.Liveness.Exec[0] != "test" || !started.Equal(info.StartedAt) {
		t.Fatalf("probes from the container's label: %+v, %v, %v", h, started, err)
	}
	pr := &probe.Prober{Target: rt, ID: id}
	for _, tc := range []struct {
		name string
		p    runtime.Probe
		ok   bool
	}{
		{"exec true", runtime.Probe{Exec: []string{"true"}}, true},
		{"exec false", runtime.Probe{Exec: []string{"false"}}, false},
		{"exec missing", runtime.Probe{Exec: []string{"/nope"}}, false},
		{"exec output", runtime.Probe{Exec: []string{"sh", "-c", "echo; echo first line; echo second; echo an error >&2; exit 3"}}, false},
		{"http", runtime.Probe{HTTP: &runtime.HTTPProbe{Port: 8080, Path: "/index.html"}}, true},
		{"http 404", runtime.Probe{HTTP: &runtime.HTTPProbe{Port: 8080, Path: "/missing"}}, false},
		{"tcp open", runtime.Probe{TCP: &runtime.TCPProbe{Port: 8080}}, true},
		{"tcp closed", runtime.Probe{TCP: &runtime.TCPProbe{Port: 8081}}, false},
	} {
		tc.p.Timeout = 5 * time.Second
		var err error
		for range 50 { // httpd may still be starting
			if err = probe.Once(ctx, pr, &tc.p); err == nil || !tc.ok {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s: error %v, want ok=%v", tc.name, err, tc.ok)
		}
		// A failed exec says its exit code and the first line it wrote.
		if want := "exec [sh -c echo; echo first line; echo second; echo an error >&2; exit 3] exited 3: first line"; tc.name == "exec output" && (err == nil || err.Error() != want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, want)
		}
	}

	var mu sync.Mutex
	var changes []runtime.HealthStatus
	var detail string
	pr = &probe.Prober{Target: rt, ID: id, Health: *h, Logf: t.Logf, OnChange: func(s runtime.HealthStatus, d string) {
		mu.Lock()
		defer mu.Unlock()
		changes, detail = append(changes, s), d
		if s == runtime.HealthHealthy {
			go func() { _, _, _ = rt.Exec(ctx, id, []string{"rm", "/tmp/ok"}, 5*time.Second) }()
		}
	}}
	done := make(chan error, 1)
	go func() { done <- pr.Run(ctx) }()
	st, err := rt.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("prober: %v", err)
	}
	if st.Cause != runtime.ExitUnhealthy {
		t.Fatalf("exit %+v, want cause Unhealthy", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 2 || changes[0] != runtime.HealthHealthy || changes[1] != runtime.HealthUnhealthy {
		t.Errorf("health changes %v, want healthy then unhealthy", changes)
	}
	if want := "exec [test -f /tmp/ok] exited 1"; detail != want {
		t.Errorf("unhealthy detail %q, want %q", detail, want)
	}
}
