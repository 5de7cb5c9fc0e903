package api

import (
	"context"
	"errors"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// DefaultRequestTimeout is how long a request's handler may take.
const DefaultRequestTimeout = 10 * time.Second

// deadline gives every request's context a deadline of cfg.RequestTimeout.
// Handlers pass that context to Redis and the node, so a slow dependency
// makes the call fail instead of holding the request; a request that failed
// after its deadline is answered 503 CodeTimeout. It only sets a context
// deadline (Echo's ContextTimeout): no second goroutine writes the response,
// which is what made Echo's older Timeout middleware racy.
func (s *Server) deadline() echo.MiddlewareFunc {
	d := s.cfg.RequestTimeout
	return middleware.ContextTimeoutWithConfig(middleware.ContextTimeoutConfig{
		// An export streams a range of any size; each page's reads have
		// the deadline (exportJobs).
		Skipper: func(c echo.Context) bool { return c.Path() == "/v1/jobs/export" },
		Timeout: d,
		ErrorHandler: func(err error, c echo.Context) error {
			if !errors.Is(c.Request().Context().Err(), context.DeadlineExceeded) || callerError(err) {
				return err
			}
			return apiError(CodeTimeout, "the request did not finish within %s: Redis or the node is too slow; try again (with the same Idempotency-Key for POST /v1/jobs)", d)
		},
	})
}

// callerError reports whether err is a 4xx: the caller's mistake stands
// even if the deadline passed meanwhile.
func callerError(err error) bool {
	var ae *Error
	if errors.As(err, &ae) {
		return statusOf[ae.Kind] < 500 && statusOf[ae.Kind] != 0
	}
	var he *echo.HTTPError
	return errors.As(err, &he) && he.Code < 500
}
