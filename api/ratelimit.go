package api

import (
	"math"
	"strconv"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// rateLimit limits each caller to cfg.RateLimit requests per second with
// bursts of cfg.RateBurst: a token bucket per API key name (set by auth;
// the bare keys share the one of "default"), or per client address when the API runs
// without keys. Buckets live in this process's memory, so the limit is per
// API process. It goes after auth, so unauthenticated requests never reach
// it; health, readiness, metrics and the OpenAPI document are not behind it.
func (s *Server) rateLimit() echo.MiddlewareFunc {
	r := s.cfg.RateLimit
	if r <= 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	burst := s.cfg.RateBurst
	if burst <= 0 {
		burst = max(1, int(math.Ceil(r)))
	}
	store := middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
		Rate:  rate.Limit(r),
		Burst: burst,
	})
	// A refused request found fewer than one token in its bucket, and a
	// bucket gains one every 1/r seconds.
	retryAfter := strconv.Itoa(int(math.Max(1, math.Ceil(1/r))))
	direct := echo.ExtractIPDirect() // not X-Forwarded-For: a caller could pick its own bucket
	per := "API key"
	if len(s.keys) == 0 {
		per = "client address"
	}
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Store: store,
		IdentifierExtractor: func(c echo.Context) (string, error) {
			if name, _ := c.Get(apiKeyNameKey).(string); name != "" {
				return "key:" + name, nil
			}
			return "ip:" + direct(c.Request()), nil
		},
		DenyHandler: func(c echo.Context, _ string, _ error) error {
			c.Response().Header().Set("Retry-After", retryAfter)
			return apiError(CodeRateLimited, "rate limit exceeded: at most %s requests/s (bursts of %d) per %s; retry after %s s",
				strconv.FormatFloat(r, 'f', -1, 64), burst, per, retryAfter)
		},
	})
}
