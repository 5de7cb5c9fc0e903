package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Error codes the API answers with. Each maps to one HTTP status in
// statusOf: the one place errors become statuses.
const (
	CodeInvalidRequest   = "invalid_request"   // malformed or invalid body, query or header
	CodeUnauthorized     = "unauthorized"      // no or wrong API key
	CodeForbidden        = "forbidden"         // the API key's role does not allow the route (not an admin)
	CodeNotFound         = "not_found"         // no such job or route
	CodeIdempotencyReuse = "idempotency_reuse" // Idempotency-Key reused with a different body
	CodeConflict         = "conflict"          // the job's status does not allow the request
	CodeTooLarge         = "body_too_large"    // body over the limit
	CodeRateLimited      = "rate_limited"      // too many requests
	CodeMethodNotAllowed = "method_not_allowed"
	CodeUnavailable      = "unavailable" // a dependency (Redis, node) is down
	CodeTimeout          = "timeout"     // the request's deadline passed: Redis or the node is too slow
	// CodeNotReplicated: the job is stored on the Redis primary, but fewer
	// replicas than RELAYQ_REDIS_MIN_REPLICAS acknowledged it in time. A
	// retry with the same Idempotency-Key returns it once they have.
	CodeNotReplicated = "not_replicated"
	CodeInternal      = "internal" // a bug: never the caller's fault

	// Reads (POST /v1/calls) and dry runs ("simulate": true).
	CodeReverted   = "reverted"    // the call reverted: revert_reason and revert_data say how
	CodeCallFailed = "call_failed" // the call failed otherwise (out of gas, halted, cannot pay), or its result does not decode
	CodeNodeError  = "node_error"  // the node answered with an error that is not about the call
)

var statusOf = map[string]int{
	CodeInvalidRequest:   http.StatusBadRequest,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeIdempotencyReuse: http.StatusConflict,
	CodeConflict:         http.StatusConflict,
	CodeTooLarge:         http.StatusRequestEntityTooLarge,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	CodeUnavailable:      http.StatusServiceUnavailable,
	CodeTimeout:          http.StatusServiceUnavailable,
	CodeNotReplicated:    http.StatusServiceUnavailable,
	CodeInternal:         http.StatusInternalServerError,
	CodeReverted:         http.StatusUnprocessableEntity,
	CodeCallFailed:       http.StatusUnprocessableEntity,
	CodeNodeError:        http.StatusBadGateway,
}

// Error is an API error: the body is
// {"error":{"code","message","field","request_id"}}. Code says what kind of
// error it is (CodeInvalidRequest, …, or a finer validation code such as
// "invalid_address"); Kind is the API code that decides the HTTP status.
// RequestID is the request's X-Request-ID, the same as in the logs, so a
// caller can quote it.
type Error struct {
	Kind      string `json:"-"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`

	// A revert's decoded reason and raw data (0x hex), for CodeReverted.
	RevertReason string `json:"revert_reason,omitempty"`
	RevertData   string `json:"revert_data,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// invalid returns a 400 error about field.
func invalid(code, field, format string, args ...any) *Error {
	return &Error{Kind: CodeInvalidRequest, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func apiError(kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: kind, Message: fmt.Sprintf(format, args...)}
}

// fromEcho turns Echo's own errors (404 route, 405, 413 from the body limit,
// 429 from the rate limiter, 401 from key auth) into API errors.
func fromEcho(he *echo.HTTPError) *Error {
	msg := fmt.Sprint(he.Message)
	switch he.Code {
	case http.StatusNotFound:
		return apiError(CodeNotFound, "no such route")
	case http.StatusMethodNotAllowed:
		return apiError(CodeMethodNotAllowed, "method not allowed")
	case http.StatusRequestEntityTooLarge:
		return apiError(CodeTooLarge, "request body is too large")
	case http.StatusTooManyRequests:
		return apiError(CodeRateLimited, "too many requests")
	case http.StatusUnauthorized, http.StatusForbidden:
		return apiError(CodeUnauthorized, "missing or invalid API key: send Authorization: Bearer <key>")
	case http.StatusBadRequest:
		return &Error{Kind: CodeInvalidRequest, Code: CodeInvalidRequest, Message: msg}
	case http.StatusServiceUnavailable:
		return apiError(CodeUnavailable, "service unavailable")
	}
	if he.Code >= 500 {
		return apiError(CodeInternal, "internal error")
	}
	return &Error{Kind: CodeInvalidRequest, Code: CodeInvalidRequest, Message: msg}
}

// handleError is Echo's HTTPErrorHandler: every error leaves as JSON with
// the status from statusOf. Errors that are not API errors are bugs or
// outages; they are logged and answered without their details.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *Error
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &he):
		ae = fromEcho(he)
	default:
		s.log.Error("request failed", "request_id", requestID(c), "method", c.Request().Method, "path", c.Path(), "err", err)
		ae = apiError(CodeInternal, "internal error (request id %s)", requestID(c))
	}
	status, ok := statusOf[ae.Kind]
	if !ok {
		status = http.StatusInternalServerError
	}
	out := *ae // a copy: the error value may be shared
	out.RequestID = requestID(c)
	c.Set(errorCodeKey, out.Code) // for the request log
	if status >= 500 && ae.Kind != CodeInternal {
		s.log.Warn("request failed", "request_id", requestID(c), "path", c.Path(), "err", err)
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(status)
	} else {
		werr = c.JSON(status, map[string]*Error{"error": &out})
	}
	if werr != nil {
		s.log.Warn("write error response", "err", werr)
	}
}

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}
