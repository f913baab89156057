package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// logFlags are --log-format and --log-level, shared by the commands that
// run a long time (serve, orders).
type logFlags struct{ format, level *string }

func addLogFlags(fs *flag.FlagSet) logFlags {
	return logFlags{
		format: fs.String("log-format", envOr("SECKILL_LOG_FORMAT", "text"), "log lines as text (key=value) or json, one object a line (env SECKILL_LOG_FORMAT)"),
		level:  fs.String("log-level", envOr("SECKILL_LOG_LEVEL", "info"), "least severe level logged: debug, info, warn or error (env SECKILL_LOG_LEVEL)"),
	}
}

// logger builds the slog logger the flags ask for, writing to w.
func (l logFlags) logger(w io.Writer) (*slog.Logger, error) {
	return newLogger(w, *l.format, *l.level)
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
