package api

import (
	"context"
	"log/slog"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// Context keys the middleware chain shares.
const (
	apiKeyIDKey  = "api_key_id" // short hash of the caller's API key, set by auth
	errorCodeKey = "error_code" // the API error code the request was answered with
	jobIDKey     = "job_id"     // the job a request created or named
)

// probes are the routes polled by orchestrators and scrapers: their lines go
// to debug so they do not drown the rest.
var probes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// requestLog logs one line per request once it is answered: method, route
// template (never the raw URL), status, latency, request id, the caller's
// API key id (a short hash: the key itself is never logged) and the error
// code of a failed request. Errors go through the error handler first, so
// the status logged is the one sent.
func (s *Server) requestLog() echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		HandleError:     true,
		LogMethod:       true,
		LogRoutePath:    true,
		LogStatus:       true,
		LogLatency:      true,
		LogRequestID:    true,
		LogResponseSize: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			route := v.RoutePath
			if route == "" {
				route = "(none)"
			}
			level := slog.LevelInfo
			if probes[route] && v.Status < 400 {
				level = slog.LevelDebug
			}
			if !s.log.Enabled(context.Background(), level) {
				return nil
			}
			attrs := []slog.Attr{
				slog.String("method", v.Method),
				slog.String("route", route),
				slog.Int("status", v.Status),
				slog.Float64("latency_ms", float64(v.Latency.Microseconds())/1000),
				slog.String("request_id", v.RequestID),
				slog.Int64("bytes_out", v.ResponseSize),
			}
			if id, _ := c.Get(apiKeyIDKey).(string); id != "" {
				attrs = append(attrs, slog.String("api_key_id", id))
			}
			if name, _ := c.Get(apiKeyNameKey).(string); name != "" {
				attrs = append(attrs, slog.String("api_key", name))
			}
			if id, _ := c.Get(jobIDKey).(string); id != "" {
				attrs = append(attrs, slog.String("job_id", id))
			}
			if code, _ := c.Get(errorCodeKey).(string); code != "" {
				attrs = append(attrs, slog.String("error_code", code))
			}
			s.log.LogAttrs(context.Background(), level, "request", attrs...)
			return nil
		},
	})
}

// maxRequestID bounds a caller's X-Request-ID; longer or unprintable ones
// are replaced by a generated id rather than copied into every log line.
const maxRequestID = 128

// cleanRequestID drops an incoming X-Request-ID that is too long or holds
// anything but printable ASCII, so the request id middleware after it
// generates one instead.
func cleanRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !printableID(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

func printableID(id string) bool {
	if len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
