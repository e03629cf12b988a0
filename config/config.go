// Package config holds the Temporal connection settings shared by the
// worker and the CLI: flags, their environment fallbacks, and the
// client.Options they build.
//
// Secrets (the API key, key file contents) are never put into errors or
// String output; only file paths and the fact that a key is set are.
package config

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"

	"github.com/vigil-run/vigil/internal/codec"
	"github.com/vigil-run/vigil/internal/errtext"
	"github.com/vigil-run/vigil/internal/humanjson"
	"github.com/vigil-run/vigil/replica"
)

// Defaults of the connection flags.
const (
	DefaultAddress   = "127.0.0.1:7233"
	DefaultNamespace = "default"
)

// Connection is how to reach Temporal and which task queue to use.
type Connection struct {
	Address   string
	Namespace string
	TaskQueue string

	// TLS turns on TLS with the system roots unless CAFile is set. It is
	// implied by any of the files and, unless explicitly false, by APIKey.
	TLS        bool
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string

	APIKey string

	// CodecKeyFile turns on payload encryption (internal/codec): every
	// payload Vigil writes to Temporal is encrypted with its first key.
	CodecKeyFile string

	// Identity is the Temporal client identity (not a flag): the worker sets
	// it to version.Identity so the Web UI shows which release ran each task.
	// Empty means the SDK's default.
	Identity string

	// MetricsHandler receives the SDK's metrics (nil: none). Set by the
	// worker when it serves /metrics; not a flag.
	MetricsHandler client.MetricsHandler

	// tlsExplicit records that --tls (or TEMPORAL_TLS) was given, so that
	// --tls=false can turn off the TLS an API key would otherwise imply.
	tlsExplicit bool

	// codec is the key file's codec, read once (nil: not yet, or no file).
	codec *codec.Codec
}

// flag names and the environment variables that back them (the names the
// Temporal CLI uses, so one environment serves both tools).
var envOf = map[string]string{
	"address":         "TEMPORAL_ADDRESS",
	"namespace":       "TEMPORAL_NAMESPACE",
	"task-queue":      "VIGIL_TASK_QUEUE",
	"tls":             "TEMPORAL_TLS",
	"tls-ca-file":     "TEMPORAL_TLS_CA_PATH",
	"tls-cert-file":   "TEMPORAL_TLS_CERT_PATH",
	"tls-key-file":    "TEMPORAL_TLS_KEY_PATH",
	"tls-server-name": "TEMPORAL_TLS_SERVER_NAME",
	"api-key":         "TEMPORAL_API_KEY",
	"codec-key-file":  "VIGIL_CODEC_KEY_FILE",
}

// AddFlags registers the connection flags on fs. Defaults shown in help are
// the built-in ones; environment values are applied by Resolve so that an
// API key from the environment never shows up in --help.
func (c *Connection) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Address, "address", DefaultAddress, "Temporal frontend host:port (env TEMPORAL_ADDRESS)")
	fs.StringVar(&c.Namespace, "namespace", DefaultNamespace, "Temporal namespace (env TEMPORAL_NAMESPACE)")
	fs.StringVar(&c.TaskQueue, "task-queue", replica.DefaultTaskQueue, "workflow task queue (env VIGIL_TASK_QUEUE)")
	fs.BoolVar(&c.TLS, "tls", false, "connect with TLS (env TEMPORAL_TLS; implied by the TLS files and by --api-key)")
	fs.StringVar(&c.CAFile, "tls-ca-file", "", "PEM file of the CA that signed the server certificate (env TEMPORAL_TLS_CA_PATH)")
	fs.StringVar(&c.CertFile, "tls-cert-file", "", "PEM client certificate for mTLS (env TEMPORAL_TLS_CERT_PATH)")
	fs.StringVar(&c.KeyFile, "tls-key-file", "", "PEM client key for mTLS (env TEMPORAL_TLS_KEY_PATH)")
	fs.StringVar(&c.ServerName, "tls-server-name", "", "server name to verify in the server certificate (env TEMPORAL_TLS_SERVER_NAME)")
	fs.StringVar(&c.APIKey, "api-key", "", "API key sent as a bearer token (env TEMPORAL_API_KEY; prefer the environment: flags show up in ps)")
	fs.StringVar(&c.CodecKeyFile, "codec-key-file", "", "encrypt payloads with the keys in this file, one `key-id: base64-key` a line, the first encrypts (env VIGIL_CODEC_KEY_FILE)")
}

// Resolve applies environment fallbacks to every flag not given on the
// command line, then checks the settings. lookup is usually os.LookupEnv.
func (c *Connection) Resolve(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	// --tls is read apart: whether it was given at all decides whether an
	// API key implies TLS.
	if f := fs.Lookup("tls"); f != nil && f.Changed {
		c.tlsExplicit = true
	} else if v, set := lookup(envOf["tls"]); f != nil && set && v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", envOf["tls"], v)
		}
		c.TLS, c.tlsExplicit = b, true
	}
	if err := ApplyEnv(fs, envOf, lookup, "tls"); err != nil {
		return err
	}
	return c.Validate()
}

// ApplyEnv is the one environment-fallback mechanism of Vigil's commands:
// every flag of fs named in env (flag name to variable) that was not given
// on the command line takes the variable's value when it is set and not
// empty. Flags named in skip are left to the caller. An invalid value is an
// error naming the variable and the flag, never the value: it may be a
// secret. lookup is usually os.LookupEnv.
func ApplyEnv(fs *pflag.FlagSet, env map[string]string, lookup func(string) (string, bool), skip ...string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		name, ok := env[f.Name]
		if !ok || f.Changed || err != nil || slices.Contains(skip, f.Name) {
			return
		}
		if v, set := lookup(name); set && v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s: invalid value for --%s", name, f.Name)
			}
		}
	})
	return err
}

// Validate checks the settings without touching the network or the files.
func (c *Connection) Validate() error {
	switch {
	case c.Address == "":
		return errors.New("--address: empty; give the Temporal frontend as host:port, e.g. " + DefaultAddress)
	case !strings.Contains(c.Address, ":"):
		return fmt.Errorf("--address: %q has no port; use host:port, e.g. %s", c.Address, DefaultAddress)
	case c.Namespace == "":
		return errors.New("--namespace: empty; use e.g. " + DefaultNamespace)
	case c.TaskQueue == "":
		return errors.New("--task-queue: empty; use e.g. " + replica.DefaultTaskQueue)
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file: give both for mTLS, or neither")
	case strings.ContainsAny(c.APIKey, "\r\n"):
		return errors.New("--api-key: contains a line break; pass the key alone")
	}
	return nil
}

// TLSEnabled reports whether the connection uses TLS.
func (c *Connection) TLSEnabled() bool {
	if c.tlsExplicit {
		return c.TLS
	}
	return c.TLS || c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.APIKey != ""
}

// TLSConfig builds the TLS configuration, or nil when TLS is off. Errors
// name the flag and the file, never the file's contents.
func (c *Connection) TLSConfig() (*tls.Config, error) {
	if !c.TLSEnabled() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-file: cannot read %s: %v", c.CAFile, errtext.WithoutPath(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca-file: %s holds no PEM certificate; pass the CA certificate file", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		certPEM, err := os.ReadFile(c.CertFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file: cannot read %s: %v", c.CertFile, errtext.WithoutPath(err))
		}
		keyPEM, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-key-file: cannot read %s: %v", c.KeyFile, errtext.WithoutPath(err))
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// The error of X509KeyPair is a fixed sentence, but do not rely on
			// that for a secret: say only which pair failed.
			return nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %s and %s are not a matching PEM certificate and key; check the files", c.CertFile, c.KeyFile)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// ClientOptions builds the Temporal client options. logger may be nil.
func (c *Connection) ClientOptions(logger tlog.Logger) (client.Options, error) {
	if err := c.Validate(); err != nil {
		return client.Options{}, err
	}
	dc, err := c.DataConverter()
	if err != nil {
		return client.Options{}, err
	}
	opts := client.Options{HostPort: c.Address, Namespace: c.Namespace, Logger: logger, Identity: c.Identity, MetricsHandler: c.MetricsHandler,
		DataConverter: dc}
	if c.CodecKeyFile != "" {
		// An error's message and stack trace (a start's error quotes the
		// command) go into an encrypted payload too; its type stays readable.
		opts.FailureConverter = temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: dc, EncodeCommonAttributes: true})
	}
	tlsCfg, err := c.TLSConfig()
	if err != nil {
		return client.Options{}, err
	}
	opts.ConnectionOptions.TLS = tlsCfg
	if tlsCfg == nil && c.APIKey != "" {
		// --tls=false with an API key: the SDK would turn TLS on by itself.
		opts.ConnectionOptions.TLSDisabled = true
	}
	if c.APIKey != "" {
		opts.Credentials = client.NewAPIKeyStaticCredentials(c.APIKey)
	}
	return opts, nil
}

// Codec is the payload codec of --codec-key-file, read once; nil without
// a key file. The error names the flag and says how to fix the file.
func (c *Connection) Codec() (*codec.Codec, error) {
	if c.CodecKeyFile == "" || c.codec != nil {
		return c.codec, nil
	}
	cd, err := codec.Load(c.CodecKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--codec-key-file: %w", err)
	}
	c.codec = cd
	return cd, nil
}

// DataConverter is the one converter of every payload Vigil writes or
// reads (inputs, results, memos, signals, updates, queries): durations as
// "60s", encrypted when a key file is given. Search attributes are not
// payloads of it: they stay readable for the list view.
func (c *Connection) DataConverter() (converter.DataConverter, error) {
	cd, err := c.Codec()
	if err != nil || cd == nil {
		return humanjson.DataConverter(), err
	}
	return cd.DataConverter(humanjson.DataConverter()), nil
}

// String describes the connection for logs, without secrets.
func (c *Connection) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "address=%s namespace=%s task_queue=%s tls=%t", c.Address, c.Namespace, c.TaskQueue, c.TLSEnabled())
	if c.CertFile != "" {
		b.WriteString(" mtls=true")
	}
	if c.APIKey != "" {
		b.WriteString(" api_key=set")
	}
	if c.CodecKeyFile != "" {
		b.WriteString(" payload_encryption=on")
	}
	return b.String()
}

// Dial connects to Temporal and checks that the server answers. The error
// is one line and carries no secret.
func (c *Connection) Dial(ctx context.Context, logger tlog.Logger) (client.Client, error) {
	opts, err := c.ClientOptions(logger)
	if err != nil {
		return nil, err
	}
	cl, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("cannot reach Temporal at %s (namespace %s): %s", c.Address, c.Namespace, errtext.OneLine(err.Error()))
	}
	return cl, nil
}
