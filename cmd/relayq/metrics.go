package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/relayq/relayq/metrics"
)

// serveMetrics serves m at GET /metrics on addr (RELAYQ_METRICS_LISTEN)
// until ctx ends: how a worker process, which has no API, is scraped. An
// empty addr serves nothing. A listener that cannot start or stops with an
// error is reported on errc, which makes serve return it.
func serveMetrics(ctx context.Context, wg *sync.WaitGroup, errc chan<- error, addr string, m *metrics.Metrics, log *slog.Logger, stdout io.Writer) {
	if addr == "" {
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		reportMetricsErr(errc, fmt.Errorf("RELAYQ_METRICS_LISTEN: %w", err))
		return
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":{"code":"not_found","message":"this address serves only GET /metrics"}}`+"\n")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			reportMetricsErr(errc, fmt.Errorf("metrics listener: %w", err))
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		// A scrape is short; one still running after this is cut off.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			_ = hs.Close()
		}
	}()
	log.Info("metrics listening", "addr", l.Addr().String())
	fmt.Fprintf(stdout, "relayq metrics on http://%s/metrics\n", l.Addr())
}

// reportMetricsErr sends err to serve without ever blocking: if errc is
// full, serve is already stopping for another error.
func reportMetricsErr(errc chan<- error, err error) {
	select {
	case errc <- err:
	default:
	}
}
