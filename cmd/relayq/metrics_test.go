package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/metrics/metricstest"
)

// A bad RELAYQ_METRICS_LISTEN stops the process at start, named.
func TestMetricsListenIsChecked(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cmd  string
		env  map[string]string
		want string
	}{
		{"worker", map[string]string{"RELAYQ_METRICS_LISTEN": "9464"}, `"9464" is not host:port`},
		{"serve", map[string]string{"RELAYQ_METRICS_LISTEN": "127.0.0.1:8080"}, "RELAYQ_LISTEN too"},
	}
	for _, c := range cases {
		c.env["RELAYQ_RPC_URL"] = "http://127.0.0.1:1"
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"relayq", c.cmd}, envOf(c.env), &out, &errOut)
		require.ErrorContains(t, err, "RELAYQ_METRICS_LISTEN", c.cmd)
		require.ErrorContains(t, err, c.want, c.cmd)
	}
}

// The metrics listener serves GET /metrics only, and stops with its context.
func TestMetricsListenerServesAndStops(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	m.JobAccepted(false)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	var out bytes.Buffer
	serveMetrics(ctx, &wg, errc, addr, m, slog.New(slog.NewTextHandler(io.Discard, nil)), &out)
	require.Contains(t, out.String(), "http://"+addr+"/metrics")

	s := metricstest.Scrape(t, "http://"+addr+"/metrics")
	require.Equal(t, 1.0, s.Value("relayq_jobs_accepted_total", "outcome", "created"))
	res, err := http.Get("http://" + addr + "/v1/jobs")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusNotFound, res.StatusCode)
	require.Contains(t, string(body), `"code":"not_found"`)

	cancel()
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("metrics listener did not stop with its context")
	}
	_, err = http.Get("http://" + addr + "/metrics")
	require.Error(t, err, "nothing listens any more")
	require.Empty(t, errc, "a clean stop reports nothing")
}

// A taken port is reported (and makes serve return), not ignored.
func TestMetricsListenerReportsATakenPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	serveMetrics(context.Background(), &wg, errc, l.Addr().String(), metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	select {
	case err := <-errc:
		require.ErrorContains(t, err, "RELAYQ_METRICS_LISTEN")
	default:
		t.Fatal("a taken port was not reported")
	}
	wg.Wait()
}

// In `relayq dev` (as in `serve`) the API's /metrics shows the worker's
// metrics too: one registry for the process.
func TestDevServesWorkerMetricsOnTheAPI(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	res, err := http.Post(d.base+"/v1/jobs", "application/json", strings.NewReader(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, d.counter)))
	require.NoError(t, err)
	var j struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&j))
	res.Body.Close()
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	d.waitConfirmed(t, j.ID)

	s := metricstest.Scrape(t, d.base+"/metrics")
	require.Equal(t, 1.0, s.Value("relayq_jobs_accepted_total", "outcome", "created"), "the API's counter")
	require.Equal(t, 1.0, s.Value("relayq_jobs_finished_total", "status", "confirmed"), "the worker's counter, same registry")
	require.Equal(t, uint64(1), s.Count("relayq_job_stage_seconds", "stage", "confirmed"))
	require.Greater(t, s.Value("relayq_rpc_requests_total", "method", "eth_sendRawTransaction"), 0.0)
	require.Equal(t, 1.0, s.Value("relayq_jobs", "status", "confirmed"))
	require.Equal(t, 1.0, s.Value("relayq_cluster_scrape_success", "part", "queues"), "queue depths read on the embedded Redis too")

	require.NoError(t, d.stop(t))
}
