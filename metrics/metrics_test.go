package metrics_test

import (
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/metrics/metricstest"
)

// A nil *Metrics is what code without metrics holds: every method must be
// callable and do nothing.
func TestNilMetricsIsANoOp(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	require.NotPanics(t, func() {
		m.JobAccepted(false)
		m.JobRejected("invalid_address")
		m.Stage(metrics.StageBroadcast, time.Now())
		m.Replaced(jobs.KindBump)
		m.Rebroadcast(metrics.RebroadcastDropped)
		m.RPC("eth_call", time.Millisecond, errors.New("execution reverted"))
		m.HTTPRequest(http.MethodGet, "/healthz", 200, time.Millisecond)
	})
	require.Nil(t, m.Registry())
	require.NoError(t, m.WatchCluster(metrics.Cluster{}))
	boom := errors.New("boom")
	require.Same(t, boom, m.Finished(jobs.Failed, 0, boom), "Finished passes its error through")
	require.NoError(t, m.Finished(jobs.Confirmed, 1, nil))

	// The middleware passes requests through untouched.
	e := echo.New()
	e.Use(m.Middleware())
	e.GET("/x", func(c echo.Context) error { return c.String(http.StatusTeapot, "tea") })
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
	require.Equal(t, http.StatusTeapot, rec.Code)
	require.Equal(t, "tea", rec.Body.String())

	// /metrics without metrics is a clear 404 in the API's error format.
	rec = httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.JSONEq(t, `{"error":{"code":"not_found","message":"metrics are not enabled in this process"}}`, rec.Body.String())
}

// Each helper moves exactly its own series.
func TestHelpersCountWhatHappened(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	before := metricstest.Gather(t, m.Registry())
	for _, name := range []string{"relayq_jobs_accepted_total", "relayq_jobs_finished_total", "relayq_tx_replacements_total", "relayq_tx_rebroadcasts_total", "relayq_rpc_requests_total"} {
		require.True(t, before.Has(name), "%s exists at 0 from the start", name)
		require.Zero(t, before.Value(name), name)
	}

	m.JobAccepted(false)
	m.JobAccepted(false)
	m.JobAccepted(true)
	m.JobRejected("invalid_address")
	accepted := time.Now().Add(-3 * time.Second)
	m.Stage(metrics.StageBroadcast, accepted)
	m.Stage(metrics.StageMined, accepted)
	m.Stage(metrics.StageMined, time.Time{}) // unknown: not observed
	require.NoError(t, m.Finished(jobs.Confirmed, 3, nil))
	require.NoError(t, m.Finished(jobs.Failed, 0, nil))
	require.Error(t, m.Finished(jobs.Failed, 0, errors.New("transition refused")))
	require.NoError(t, m.Finished(jobs.Failed, -1, nil)) // attempts unknown: counted, not observed
	m.Replaced(jobs.KindBump)
	m.Replaced(jobs.KindBump)
	m.Replaced(jobs.KindGapFill)
	m.Rebroadcast(metrics.RebroadcastDropped)
	m.WebhookDelivery(jobs.WebhookFailed)
	m.WebhookDelivery(jobs.WebhookDelivered)
	m.WebhookDelivery(jobs.WebhookFailed)
	m.RPC("eth_sendRawTransaction", 2*time.Millisecond, nil)
	m.RPC("eth_sendRawTransaction", 2*time.Millisecond, errors.New("nonce too low"))
	m.RPC("eth_estimateGas", time.Millisecond, errors.New("execution reverted: boom"))
	m.RPC("eth_getBalance", time.Millisecond, errors.New("insufficient funds for gas * price + value"))
	onA := m.RPCFor("a") // a chain of a relayq.yaml
	onA("eth_sendRawTransaction", time.Millisecond, nil)
	onA("eth_call", time.Millisecond, errors.New("connection refused"))

	s := metricstest.Gather(t, m.Registry())
	require.Equal(t, 2.0, s.Value("relayq_rpc_requests_total", "chain", "default", "method", "eth_sendRawTransaction"))
	require.Equal(t, 1.0, s.Value("relayq_rpc_requests_total", "chain", "a", "method", "eth_sendRawTransaction"))
	require.Equal(t, 1.0, s.Value("relayq_rpc_errors_total", "chain", "a", "method", "eth_call", "class", "retryable"))
	require.True(t, s.Has("relayq_rpc_requests_total", "chain", "a", "method", "eth_getTransactionCount"), "a chain's series exist from the start")
	require.Equal(t, 2.0, s.Value("relayq_jobs_accepted_total", "outcome", "created"))
	require.Equal(t, 1.0, s.Value("relayq_jobs_accepted_total", "outcome", "replayed"))
	require.Equal(t, 1.0, s.Value("relayq_jobs_rejected_total", "code", "invalid_address"))
	require.Equal(t, uint64(1), s.Count("relayq_job_stage_seconds", "stage", "broadcast"))
	require.Equal(t, uint64(1), s.Count("relayq_job_stage_seconds", "stage", "mined"))
	require.Zero(t, s.Count("relayq_job_stage_seconds", "stage", "confirmed"))
	require.GreaterOrEqual(t, s.Sum("relayq_job_stage_seconds", "stage", "broadcast"), 3.0, "timed from acceptance")
	require.Equal(t, 2.0, s.Value("relayq_webhook_deliveries_total", "outcome", "failed"))
	require.Equal(t, 1.0, s.Value("relayq_webhook_deliveries_total", "outcome", "delivered"))
	require.True(t, s.Has("relayq_webhook_deliveries_total", "outcome", "refused"), "exists at 0")
	require.Zero(t, s.Value("relayq_webhook_deliveries_total", "outcome", "refused"))
	require.Equal(t, 1.0, s.Value("relayq_jobs_finished_total", "status", "confirmed"))
	require.Equal(t, 2.0, s.Value("relayq_jobs_finished_total", "status", "failed"), "a refused transition is not counted")
	require.Equal(t, uint64(1), s.Count("relayq_job_attempts", "status", "confirmed"))
	require.Equal(t, 3.0, s.Sum("relayq_job_attempts", "status", "confirmed"))
	require.Equal(t, uint64(1), s.Count("relayq_job_attempts", "status", "failed"), "unknown attempts are not observed")
	require.Equal(t, 2.0, s.Value("relayq_tx_replacements_total", "kind", "bump"))
	require.Equal(t, 1.0, s.Value("relayq_tx_replacements_total", "kind", "gap_fill"))
	require.Equal(t, 1.0, s.Value("relayq_tx_rebroadcasts_total", "reason", "dropped"))
	require.Equal(t, 0.0, s.Value("relayq_tx_rebroadcasts_total", "reason", "retry"))
	require.Equal(t, 2.0, s.Value("relayq_rpc_requests_total", "chain", "default", "method", "eth_sendRawTransaction"))
	require.Equal(t, uint64(2), s.Count("relayq_rpc_duration_seconds", "chain", "default", "method", "eth_sendRawTransaction"))
	require.Equal(t, 1.0, s.Value("relayq_rpc_errors_total", "chain", "default", "method", "eth_sendRawTransaction", "class", "nonce-too-low"))
	require.Equal(t, 1.0, s.Value("relayq_rpc_errors_total", "method", "eth_estimateGas", "class", "permanent"))
	require.Equal(t, 1.0, s.Value("relayq_rpc_errors_total", "method", "eth_getBalance", "class", "paused"))
	require.Equal(t, 3.0, s.Value("relayq_rpc_errors_total", "chain", "default"), "successes are not errors")
}

// The middleware labels requests by route template and by the status the
// error handler answered, and keeps client-chosen strings out of labels.
func TestMiddlewareLabelsByRouteTemplate(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	e := echo.New()
	errTeapot := errors.New("teapot")
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status := http.StatusInternalServerError
		var he *echo.HTTPError
		switch {
		case errors.Is(err, errTeapot):
			status = http.StatusTeapot
		case errors.As(err, &he):
			status = he.Code
		}
		_ = c.JSON(status, map[string]string{"error": err.Error()})
	}
	e.Use(m.Middleware())
	e.GET("/v1/jobs/:id", func(c echo.Context) error { return c.String(http.StatusOK, c.Param("id")) })
	e.POST("/v1/jobs", func(c echo.Context) error { return errTeapot })
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	do := func(method, path string) int {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for _, id := range []string{jobs.NewID(), jobs.NewID(), "not-a-job"} {
		require.Equal(t, http.StatusOK, do(http.MethodGet, "/v1/jobs/"+id))
	}
	require.Equal(t, http.StatusTeapot, do(http.MethodPost, "/v1/jobs"), "the error handler decides the status")
	require.Equal(t, http.StatusNotFound, do(http.MethodGet, "/wp-admin/"+jobs.NewID()))
	require.Equal(t, http.StatusNotFound, do(http.MethodGet, "/v2/jobs"))
	require.Equal(t, http.StatusMethodNotAllowed, do("BREW", "/v1/jobs"))

	s := metricstest.Gather(t, m.Registry())
	require.Equal(t, 3.0, s.Value("relayq_http_requests_total", "method", "GET", "route", "/v1/jobs/:id", "status_class", "2xx"))
	require.Equal(t, 1.0, s.Value("relayq_http_requests_total", "method", "POST", "route", "/v1/jobs", "status_class", "4xx"))
	require.Equal(t, 2.0, s.Value("relayq_http_requests_total", "route", "unmatched", "status_class", "4xx"))
	require.Equal(t, 1.0, s.Value("relayq_http_requests_total", "method", "other", "status_class", "4xx"))
	require.Equal(t, uint64(7), s.Count("relayq_http_request_duration_seconds"))
	for _, series := range s.Series("relayq_http_requests_total") {
		for _, l := range series.GetLabel() {
			require.NotContains(t, l.GetValue(), "wp-admin", "raw URLs never become labels")
			require.NotRegexp(t, uuidRE, l.GetValue())
		}
	}
}

func TestEtherConversion(t *testing.T) {
	t.Parallel()
	wei, _ := new(big.Int).SetString("1500000000000000000", 10)
	require.Equal(t, 1.5, metrics.Ether(wei))
	require.Equal(t, 0.0, metrics.Ether(nil))
	require.Equal(t, 1e-18, metrics.Ether(big.NewInt(1)))
}

var (
	uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	hashRE = regexp.MustCompile(`0x[0-9a-fA-F]{64}`)
)

// allowedLabels are the label names relayq's metrics may carry; each has a
// bounded set of values. A new label must be added here on purpose.
var allowedLabels = map[string]bool{
	"outcome": true, "code": true, "method": true, "route": true, "status_class": true,
	"status": true, "stage": true, "kind": true, "reason": true, "class": true,
	"queue": true, "state": true, "signer": true, "part": true, "chain": true, // chain: a configured chain's name
}

// requireBoundedLabels fails if any relayq metric in s has a label outside
// allowedLabels or a value that looks like a job id or a transaction hash.
func requireBoundedLabels(t *testing.T, s metricstest.Snapshot) {
	t.Helper()
	seen := 0
	for name, fam := range s {
		if !strings.HasPrefix(name, "relayq_") {
			continue // Go runtime and process collectors
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				seen++
				require.True(t, allowedLabels[l.GetName()], "%s has label %q", name, l.GetName())
				require.NotRegexp(t, uuidRE, l.GetValue(), "%s{%s} holds a job id", name, l.GetName())
				require.NotRegexp(t, hashRE, l.GetValue(), "%s{%s} holds a hash", name, l.GetName())
			}
		}
	}
	require.NotZero(t, seen, "there were labels to check")
}
