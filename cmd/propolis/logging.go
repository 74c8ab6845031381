package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/propolis-mqtt/propolis/broker/config"
)

// logOutput is the broker's log: one slog handler whose level and format
// (log.level, log.format) a reload changes for every logger made from it,
// the broker's, mochi's and the extension host's, including loggers made
// with With before the change.
type logOutput struct {
	w     io.Writer // serialized, so text and json lines never interleave
	level slog.LevelVar
	base  atomic.Pointer[slog.Handler] // a text or json handler on w
}

// newLogOutput returns a log writing to w as lc says.
func newLogOutput(lc config.Log, w io.Writer) *logOutput {
	o := &logOutput{w: &lockedWriter{w: w}}
	o.set(lc)
	return o
}

// set applies lc: at once for the level; for the format, from the next
// line each logger writes.
func (o *logOutput) set(lc config.Log) {
	var level slog.Level
	_ = level.UnmarshalText([]byte(lc.Level)) // validated by config
	o.level.Set(level)
	opts := &slog.HandlerOptions{Level: &o.level}
	var h slog.Handler
	if lc.Format == "json" {
		h = slog.NewJSONHandler(o.w, opts)
	} else {
		h = slog.NewTextHandler(o.w, opts)
	}
	if old := o.base.Load(); old == nil || formatOf(*old) != lc.Format {
		o.base.Store(&h)
	}
}

// formatOf names the format of a base handler.
func formatOf(h slog.Handler) string {
	if _, ok := h.(*slog.JSONHandler); ok {
		return "json"
	}
	return "text"
}

// logger returns a logger on o.
func (o *logOutput) logger() *slog.Logger {
	return slog.New(&switchHandler{out: o})
}

// switchHandler hands each record to the base handler in effect, with the
// attributes and groups its logger was made with.
type switchHandler struct {
	out *logOutput
	// with re-applies, in order, the WithAttrs and WithGroup calls that
	// made this handler.
	with []func(slog.Handler) slog.Handler
	// cached is the base handler with `with` applied, for the base it was
	// built on.
	cached atomic.Pointer[derived]
}

// derived is a base handler with a switchHandler's attributes applied.
type derived struct {
	base *slog.Handler
	h    slog.Handler
}

// current returns the handler to write to, rebuilding it after a change
// of format.
func (s *switchHandler) current() slog.Handler {
	base := s.out.base.Load()
	if d := s.cached.Load(); d != nil && d.base == base {
		return d.h
	}
	h := *base
	for _, f := range s.with {
		h = f(h)
	}
	s.cached.Store(&derived{base: base, h: h})
	return h
}

// Enabled reports whether level is at least log.level.
func (s *switchHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= s.out.level.Level()
}

// Handle writes r with the base handler in effect.
func (s *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return s.current().Handle(ctx, r)
}

// WithAttrs returns a handler adding attrs to every record.
func (s *switchHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return s.derive(func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
}

// WithGroup returns a handler putting every later attribute in group name.
func (s *switchHandler) WithGroup(name string) slog.Handler {
	return s.derive(func(h slog.Handler) slog.Handler { return h.WithGroup(name) })
}

// derive returns a handler applying f after s's own calls.
func (s *switchHandler) derive(f func(slog.Handler) slog.Handler) slog.Handler {
	with := append(append([]func(slog.Handler) slog.Handler(nil), s.with...), f)
	return &switchHandler{out: s.out, with: with}
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes p to w, one caller at a time.
func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

var _ slog.Handler = (*switchHandler)(nil)
