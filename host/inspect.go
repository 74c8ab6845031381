package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/tetratelabs/wazero"

	"github.com/propolis-mqtt/propolis/abi"
)

// StateReady is the state inspect gives a folder that would load: its
// manifest is valid and its module passes the ABI check (no broker is
// running it).
const StateReady State = "ready"

// inspect checks every extension folder in dir the way a broker would load
// it, in a throwaway host: the manifest, the DISABLED file, the module's
// imports and exports against the ABI, and (unless disabled) one instance
// started, which tells the callbacks the extension actually declares. It is
// what `propolis extensions list` shows when no broker is running.
func inspect(ctx context.Context, dir string, opts Options) ([]Status, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read extensions folder: %w", err)
	}
	var out []Status
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), ManifestFile)); err != nil {
			continue
		}
		out = append(out, inspectFolder(ctx, filepath.Join(dir, e.Name()), opts))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func inspectFolder(ctx context.Context, dir string, opts Options) Status {
	name := filepath.Base(dir)
	m, err := LoadManifest(dir)
	if err != nil {
		return Status{ID: name, State: StateFailed, Reason: err.Error()}
	}
	g := newServiceGate(m, opts.ServiceRate, opts.ServiceBurst)
	st := Status{ID: m.ID, Version: m.Version, Priority: m.Priority, StartPriority: m.StartPriority,
		Services: g.grantNames(), HTTPHosts: m.HTTP.Hosts, ServiceRate: g.rate, ServiceBurst: g.burst}
	if _, err := os.Stat(filepath.Join(dir, DisabledFile)); err == nil {
		st.State, st.Reason = StateDisabled, DisabledFile+" file present"
	}
	bin, err := os.ReadFile(filepath.Join(dir, m.Module))
	if err != nil {
		st.State, st.Reason = StateFailed, fmt.Sprintf("read module: %v", err)
		return st
	}
	rt := wazero.NewRuntimeWithConfig(ctx, runtimeConfig())
	defer rt.Close(ctx)
	c, err := rt.CompileModule(ctx, bin)
	if err != nil {
		st.State, st.Reason = StateFailed, fmt.Sprintf("compile %s: %v%s", m.Module, err, featureHint(err))
		return st
	}
	bits, err := checkModule(c)
	if err != nil {
		st.State, st.Reason = StateFailed, err.Error()
		return st
	}
	st.Callbacks = abi.CallbackNames(bits)
	if st.State == StateDisabled {
		return st
	}
	h, err := New(Options{Dir: filepath.Dir(dir), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ServiceRate: opts.ServiceRate, ServiceBurst: opts.ServiceBurst})
	if err != nil {
		st.State, st.Reason = StateFailed, err.Error()
		return st
	}
	defer h.Close(ctx)
	if err := h.openCache(); err != nil {
		st.State, st.Reason = StateFailed, err.Error()
		return st
	}
	m.Limits.PoolSize = 1
	e, err := h.loadExtension(ctx, dir, m, "")
	if err != nil {
		// No callback is called, as in a running broker; the exports
		// would name every callback of an SDK-built module.
		st.State, st.Reason, st.Callbacks = StateFailed, err.Error(), nil
		return st
	}
	st.Callbacks = abi.CallbackNames(e.callbacks)
	st.InterceptInboundFilters, st.InterceptOutboundFilters = e.interceptFilters[filterInbound], e.interceptFilters[filterOutbound]
	st.InterceptOutboundClients = e.interceptClients
	e.stop(true)
	st.State = StateReady
	return st
}
