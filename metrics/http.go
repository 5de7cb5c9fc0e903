package metrics

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// unmatched is the route label of a request no route matched, so a scan of
// random URLs cannot create series.
const unmatched = "unmatched"

// knownMethods are the HTTP methods kept as label values; anything else a
// client sends is "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// Middleware counts and times every request by method, route template
// (c.Path(), never the URL) and status class. An error from the handler is
// given to Echo's error handler first, so the status counted is the one
// answered; the error is still returned for outer middleware (Echo's error
// handler answers a request once). On nil Metrics it passes requests
// through.
func (m *Metrics) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if m == nil {
			return next
		}
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			m.HTTPRequest(c.Request().Method, routeOf(c, err), c.Response().Status, time.Since(start))
			return err
		}
	}
}

// HTTPRequest records one answered request. route must be a route template
// or "unmatched".
func (m *Metrics) HTTPRequest(method, route string, status int, took time.Duration) {
	if m == nil {
		return
	}
	if !knownMethods[method] {
		method = "other"
	}
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status/100)+"xx").Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(took.Seconds())
}

// routeOf is the request's route template, or "unmatched" when Echo found
// no route (its 404 carries the path of the nearest route node, which is
// not the route the client asked for).
func routeOf(c echo.Context, err error) string {
	if p := c.Path(); p != "" && !errors.Is(err, echo.ErrNotFound) {
		return p
	}
	return unmatched
}
