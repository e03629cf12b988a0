package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/converter"
)

// Defaults of codec-server: a loopback port, and the origins of the dev
// server's built-in Web UI.
const defaultCodecListen = "127.0.0.1:8088"

var defaultUIOrigins = []string{"http://localhost:8233", "http://127.0.0.1:8233"}

// maxCodecRequest bounds a request body: the UI sends one event's payloads.
const maxCodecRequest = 64 << 20

func codecServerCommand(a *app) *cobra.Command {
	var listen string
	var origins []string
	cmd := &cobra.Command{
		Use:   "codec-server [--listen 127.0.0.1:PORT] [--ui-origin URL]...",
		Short: "Serve the Temporal Web UI's codec endpoint: decrypt payloads with --codec-key-file",
		Long: "Serves POST /decode and /encode (Temporal's remote codec protocol) with the keys of\n" +
			"--codec-key-file, so an operator with the key reads decoded history in the Web UI:\n" +
			"start the dev server with --ui-codec-endpoint http://LISTEN, or set the codec endpoint\n" +
			"in the UI's settings. Browsers are answered only from the --ui-origin origins (CORS).\n" +
			"Anyone who can reach the endpoint can decrypt: keep it on 127.0.0.1.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cd, err := a.conn.Codec()
			if err != nil {
				return usageError{err}
			}
			if cd == nil {
				return usagef("--codec-key-file: codec-server needs the key file the workers use (or VIGIL_CODEC_KEY_FILE)")
			}
			if _, _, err := net.SplitHostPort(listen); err != nil {
				return usagef("--listen: %q is not host:port; use e.g. %s", listen, defaultCodecListen)
			}
			for _, o := range origins {
				if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") || strings.HasSuffix(o, "/") {
					return usagef("--ui-origin: %q is not an origin; use scheme://host:port, e.g. %s", o, defaultUIOrigins[0])
				}
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return failure{fmt.Errorf("--listen: %w", err)}
			}
			srv := &http.Server{Handler: codecHandler(cd, origins), ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(a.stdout, "serving the codec endpoint at http://%s (key %s encrypts); Web UI: --ui-codec-endpoint http://%s\n", ln.Addr(), cd.KeyID(), ln.Addr())
			ctx := cmd.Context()
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return failure{err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", defaultCodecListen, "address to serve on (host:port)")
	cmd.Flags().StringSliceVar(&origins, "ui-origin", defaultUIOrigins, "origin of a Web UI allowed to call the endpoint from a browser (repeatable)")
	return cmd
}

// codecHandler is the SDK's codec endpoint with CORS for the Web UI's
// origins: a browser page of another origin is refused. Requests without
// an Origin (the temporal CLI's --codec-endpoint, curl) are served.
func codecHandler(pc converter.PayloadCodec, origins []string) http.Handler {
	codec := converter.NewPayloadCodecHTTPHandler(pc)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			if !slices.Contains(origins, o) {
				http.Error(w, "origin "+o+" is not allowed: start vigil codec-server with --ui-origin "+o, http.StatusForbidden)
				return
			}
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", o)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions {
			h := w.Header()
			h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxCodecRequest)
		codec.ServeHTTP(w, r)
	})
}
