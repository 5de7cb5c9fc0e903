package api

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
)

// Each API key (by name) has its own bucket: once a key's burst is spent it gets 429
// with Retry-After, in the API's error format, and its request changes
// nothing; another key, and the routes outside /v1 and the monitor, go on.
// The rate is so low that no token comes back during the test.
func TestRateLimitPerKey(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.APIKeys = []string{"ops:" + testKey + ":admin", "client:" + otherKey}
		c.RateLimit, c.RateBurst = 0.001, 2
	})
	for i := range 2 {
		r := b.do(http.MethodGet, "/v1/jobs", "")
		require.Equal(t, http.StatusOK, r.Status, "request %d within the burst: %s", i, r.Body)
	}
	job := `{"to":"` + testCounter + `"}`
	for _, rq := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/jobs", ""},
		{http.MethodPost, "/v1/jobs", job},
		{http.MethodGet, "/monitor/api/queues", ""}, // the monitor shares the key's bucket
	} {
		r := b.do(rq.method, rq.path, rq.body)
		require.Equal(t, http.StatusTooManyRequests, r.Status, "%s %s: %s", rq.method, rq.path, r.Body)
		e := r.err(t)
		require.Equal(t, CodeRateLimited, e.Code)
		require.Equal(t, r.Header.Get(echo.HeaderXRequestID), e.RequestID)
		retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After %q", r.Header.Get("Retry-After"))
		require.Equal(t, 1000, retry, "one token comes back every 1000 s")
	}
	require.Zero(t, b.jobCount(), "a limited request stores nothing")

	// Another key has its own bucket.
	r := b.do(http.MethodPost, "/v1/jobs", job, "Authorization", "Bearer "+otherKey)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	// A wrong key is refused by auth, not counted.
	r = b.do(http.MethodGet, "/v1/jobs", "", "Authorization", "Bearer wrong-key-0123456789")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	// Probes and the document are never limited.
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		for range 5 {
			r := b.do(http.MethodGet, p, "")
			require.Equal(t, http.StatusOK, r.Status, "%s: %s", p, r.Body)
		}
	}
	require.Contains(t, b.logs.String(), `"error_code":"rate_limited"`)
	require.NotContains(t, b.logs.String(), testKey, "the key is never logged")
}

// Without API keys every client address has its own bucket.
func TestRateLimitWithoutKeysIsPerAddress(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.APIKeys = nil
		c.RateLimit, c.RateBurst = 0.004, 1
	})
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/v1/jobs", "", "Authorization", "").Status)
	// A forged X-Forwarded-For does not buy a new bucket.
	r := b.do(http.MethodGet, "/v1/jobs", "", "Authorization", "", "X-Forwarded-For", "203.0.113.9")
	require.Equal(t, http.StatusTooManyRequests, r.Status, string(r.Body))
	require.Equal(t, "250", r.Header.Get("Retry-After"), "a token every 250 s")
}

// RateLimit 0 turns the limit off.
func TestRateLimitOff(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.RateLimit, c.RateBurst = 0, 1 })
	for i := range 20 {
		r := b.do(http.MethodGet, "/v1/jobs", "")
		require.Equal(t, http.StatusOK, r.Status, "request %d: %s", i, r.Body)
	}
}
