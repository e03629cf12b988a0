package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/vigil-run/vigil/ctrlog"
	"github.com/vigil-run/vigil/replica"
	"github.com/vigil-run/vigil/workflows"
)

// logsNode is a node's logs endpoint serving shop/api-rep-1's log of
// lines (as the logger writes them) from dir, with a token file.
func logsNode(t *testing.T, dir string, lines []string) (srv *ctrlog.Server, tokenFile, logFile string) {
	t.Helper()
	logDir := ctrlog.Dir(dir, "shop.api-rep-1")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	logFile = filepath.Join(logDir, "output.log")
	if err := os.WriteFile(logFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile = filepath.Join(dir, "token")
	token, err := ctrlog.LoadOrCreateToken(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	srv, err = ctrlog.Serve("127.0.0.1:0", token, func(ref string) (ctrlog.Log, error) {
		id, err := replica.ParseRef(ref)
		return ctrlog.Log{Dir: ctrlog.Dir(dir, id.ContainerName())}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv, tokenFile, logFile
}

// nodeAdvertises makes node-b's view advertise srvs' endpoints, one per
// query (the last one from then on), and shop/api-rep-1 live there.
func nodeAdvertises(c *mocks.Client, srvs ...*ctrlog.Server) {
	in := workflows.SupervisionInput{ID: replica.ID{Deployment: "shop", Service: "api", Replica: 1}, ReplicaConfig: workflows.ReplicaConfig{Node: "node-b"}}
	c.On("QueryWorkflow", mock.Anything, "vigil/shop/api-rep-1", "", replica.QueryConfig).Return(value{in}, nil)
	for i, srv := range srvs {
		ep := &workflows.LogsEndpoint{Address: srv.Addr(), CertSHA256: srv.Fingerprint()}
		view := workflows.NodeView{Node: "node-b", Release: workflows.V030, NodeCarry: workflows.NodeCarry{LastClaim: &workflows.Claim{Logs: ep}}}
		call := c.On("QueryWorkflow", mock.Anything, replica.NodeWorkflowID("node-b"), "", replica.QueryNode).Return(value{view}, nil)
		if i < len(srvs)-1 {
			call.Once()
		}
	}
}

// A follow goes on when the node's worker is replaced: it reads the new
// endpoint and prints what came after its last line, once.
func TestLogsFollowAcrossAWorkerRestart(t *testing.T) {
	dir := t.TempDir()
	first, tokenFile, logFile := logsNode(t, dir, []string{"2026-01-02T03:04:05Z vigil 1 F run 1 at 2026-01-02T03:04:05Z", "2026-01-02T03:04:06Z stdout 1 F before"})
	token, _ := ctrlog.ReadToken(tokenFile)
	second, err := ctrlog.Serve("127.0.0.1:0", token, func(string) (ctrlog.Log, error) {
		return ctrlog.Log{Dir: filepath.Dir(logFile)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	c := mocks.NewClient(t)
	nodeAdvertises(c, first, second)
	c.On("Close").Return()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"logs", "shop/api-rep-1", "--follow", "--logs-token-file", tokenFile}, strings.NewReader(""), out, errOut,
			func(string) (string, bool) { return "", false }, func(context.Context, client.Options) (client.Client, error) { return c, nil })
	}()
	waitOutput(t, out, "before\n")
	first.Close() // the worker stops
	f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(f, time.Now().UTC().Format(time.RFC3339Nano)+" stdout 1 F after\n")
	f.Close()
	waitOutput(t, out, "after\n")
	cancel()
	if code := <-done; code != exitOK || out.String() != "[vigil] run 1 at 2026-01-02T03:04:05Z\nbefore\nafter\n" {
		t.Fatalf("follow across a restart: %d %q %q", code, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "following again") {
		t.Errorf("no word of the worker going away: %q", errOut.String())
	}
}

func waitOutput(t *testing.T, out *syncBuffer, suffix string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !strings.HasSuffix(out.String(), suffix); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q never ended in %q", out.String(), suffix)
		}
	}
}
