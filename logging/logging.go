// Package logging builds Vigil's zap logger from flags and bridges it into
// the Temporal SDK, so the SDK's lines and Vigil's share one format.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
	tlog "go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// Formats accepted by --log-format.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// Options are the logging flags.
type Options struct {
	Format string
	Level  string
}

// AddFlags registers --log-format and --log-level on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Format, "log-format", FormatJSON, "log format: json or console")
	fs.StringVar(&o.Level, "log-level", "info", "log level: debug, info, warn or error")
}

// New builds a logger writing to w. Errors name the flag and the fix.
func New(o Options, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(strings.ToLower(o.Level))
	if err != nil || level > zapcore.ErrorLevel {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", o.Level)
	}
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	var enc zapcore.Encoder
	switch strings.ToLower(o.Format) {
	case FormatJSON:
		enc = zapcore.NewJSONEncoder(cfg)
	case FormatConsole:
		cfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, fmt.Errorf("--log-format: %q is not one of json, console", o.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.AddCaller()), nil
}

// Temporal adapts l to the Temporal SDK's logger interface through slog.
func Temporal(l *zap.Logger) tlog.Logger {
	h := zapslog.NewHandler(l.Core(), zapslog.WithName("temporal"), zapslog.WithCaller(true))
	return tlog.NewStructuredLogger(slog.New(h))
}
