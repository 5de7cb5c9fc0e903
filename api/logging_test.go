package api

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
)

// Each request leaves one JSON line: method, route template (not the raw
// path), status, latency, request id, the key's short hash — never the key
// — and the error code of a failed request.
func TestRequestLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sum := sha256.Sum256([]byte(testKey))
	keyID := hex.EncodeToString(sum[:8])

	r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`"}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	id := r.job(t).ID
	lines := b.logs.requestLines(t, r.Header.Get(echo.HeaderXRequestID))
	require.Len(t, lines, 1)
	l := lines[0]
	require.Equal(t, "INFO", l["level"])
	require.Equal(t, "POST", l["method"])
	require.Equal(t, "/v1/jobs", l["route"])
	require.EqualValues(t, http.StatusAccepted, l["status"])
	require.Contains(t, l, "latency_ms")
	require.GreaterOrEqual(t, l["latency_ms"].(float64), 0.0)
	require.Equal(t, keyID, l["api_key_id"])
	require.NotContains(t, l, "error_code")
	require.Equal(t, id, l["job_id"], "the job a request created is in its log line")

	r = b.do(http.MethodGet, "/v1/jobs/"+id, "")
	require.Equal(t, http.StatusOK, r.Status)
	l = b.logs.requestLines(t, r.Header.Get(echo.HeaderXRequestID))[0]
	require.Equal(t, "/v1/jobs/:id", l["route"], "the route template, not the job id")
	require.Equal(t, id, l["job_id"])

	r = b.do(http.MethodPost, "/v1/jobs", `{"to":"0x12"}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	l = b.logs.requestLines(t, r.err(t).RequestID)[0]
	require.EqualValues(t, http.StatusBadRequest, l["status"])
	require.Equal(t, "invalid_address", l["error_code"])

	r = b.do(http.MethodGet, "/v1/jobs", "", "Authorization", "Bearer wrong-key-0123456789")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	l = b.logs.requestLines(t, r.err(t).RequestID)[0]
	require.Equal(t, CodeUnauthorized, l["error_code"])
	require.NotContains(t, l, "api_key_id")

	// Probes log at debug.
	r = b.do(http.MethodGet, "/healthz", "")
	l = b.logs.requestLines(t, r.Header.Get(echo.HeaderXRequestID))[0]
	require.Equal(t, "DEBUG", l["level"])

	require.NotContains(t, b.logs.String(), testKey, "the API key is never logged")
	for _, m := range b.logs.lines(t) {
		require.NotContains(t, m, "uri", "raw URLs are not logged")
	}
}

// At info level the probes leave no line.
func TestRequestLogSkipsProbesAtInfo(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	b := setup(t, func(c *Config) { c.Log = slog.New(slog.NewJSONHandler(&logs, nil)) })
	r := b.do(http.MethodGet, "/healthz", "")
	require.Equal(t, http.StatusOK, r.Status)
	r = b.do(http.MethodGet, "/v1/jobs", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Len(t, logs.requestLines(t, r.Header.Get(echo.HeaderXRequestID)), 1)
	for _, m := range logs.lines(t) {
		require.NotEqual(t, "/healthz", m["route"])
	}
}
