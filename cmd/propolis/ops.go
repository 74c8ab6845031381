package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/propolis-mqtt/propolis/abi"
	"github.com/propolis-mqtt/propolis/admin/access"
	"github.com/propolis-mqtt/propolis/broker"
	"github.com/propolis-mqtt/propolis/broker/config"
	"github.com/propolis-mqtt/propolis/cluster"
	"github.com/propolis-mqtt/propolis/host"
	"github.com/propolis-mqtt/propolis/metrics"
	"github.com/propolis-mqtt/propolis/opshttp"
)

// The operator's HTTP endpoint of `serve` (http.address): /metrics,
// /healthz and /readyz (package opshttp) over the registry of package
// metrics. serve calls, in order:
//
//  1. listenOps, before the broker opens its store: an address in use
//     fails the start with "bind http.address ADDR: ..." and leaves the
//     data folder as it was;
//  2. serveOps once the broker and the host exist, before the extensions
//     load: /readyz answers 503 with what it waits for until the broker
//     has started;
//  3. closeOps after the broker has closed (scrapes during the shutdown
//     see propolis_ready 0).

// opsCloseTimeout bounds how long closeOps lets requests in progress end.
const opsCloseTimeout = 5 * time.Second

// listenOps binds the endpoint of cfg.HTTP; it returns nil, and logs that
// the endpoint is off, when http.address is "".
func listenOps(cfg *config.Config, log *slog.Logger) (*opshttp.Server, error) {
	if cfg.HTTP.Address == "" {
		log.Info("operator HTTP endpoint off (http.address is empty): no /metrics, /healthz or /readyz")
		return nil, nil
	}
	return opshttp.Listen(cfg.HTTP, log)
}

// extensionMetrics returns the observer of every call into an extension
// and sets it in opts, when the endpoint is on (ops not nil); with the
// endpoint off the host observes nothing and pays nothing for it.
func extensionMetrics(ops *opshttp.Server, opts *host.Options) *metrics.Extensions {
	if ops == nil {
		return nil
	}
	ext := metrics.NewExtensions()
	opts.Observer = ext
	return ext
}

// serveOps builds the metrics registry over srv, h and ext (the observer
// extensionMetrics gave h) and starts serving ops (nil: the endpoint is
// off). The broker is ready when both it and
// the host say so (broker.Server.Ready, host.Host.Ready).
//
// It mounts the admin API (mountAdmin) on the same mux, with policy; the
// returned state is nil when the endpoint is off or policy is nil (the
// admin API is off: admin.enabled false).
func serveOps(ops *opshttp.Server, srv *broker.Server, h *host.Host, node *cluster.Node, ext *metrics.Extensions, policy *access.Policy,
	log *slog.Logger) (*adminState, error) {
	if ops == nil {
		return nil, nil
	}
	ready := func() error { return errors.Join(srv.Ready(), h.Ready()) }
	reg, err := metrics.NewRegistry(metrics.Options{Version: version, ABI: abi.Version, Ready: ready})
	if err != nil {
		return nil, err
	}
	if err := metrics.RegisterBroker(reg, srv); err != nil {
		return nil, err
	}
	if err := metrics.RegisterOverload(reg, srv); err != nil {
		return nil, err
	}
	ext.Watch(h)
	if err := reg.Register(ext); err != nil {
		return nil, err
	}
	mux := opshttp.Routes{Gatherer: reg, Ready: ready, Logger: log}.Mux()
	var adm *adminState
	if policy != nil {
		if adm, err = mountAdmin(mux, ops, srv.Config(), policy, srv, h, node, log); err != nil {
			return nil, err
		}
	} else {
		log.Info("admin API and control center off (admin.enabled: false)")
	}
	ops.Serve(mux)
	url, _ := openURL(ops)
	log.Info("operator HTTP endpoint", "address", ops.Addr(), "metrics", url+opshttp.MetricsPath,
		"healthz", url+opshttp.HealthzPath, "readyz", url+opshttp.ReadyzPath)
	return adm, nil
}

// closeOps stops the endpoint (nil: off), letting requests in progress
// end within opsCloseTimeout; an error is logged, as the broker has
// stopped by then.
func closeOps(ops *opshttp.Server, log *slog.Logger) {
	if ops == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opsCloseTimeout)
	defer cancel()
	if err := ops.Close(ctx); err != nil {
		log.Error("operator HTTP endpoint", "error", err)
	}
}
