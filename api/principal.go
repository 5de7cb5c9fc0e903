package api

import (
	"context"
	"fmt"

	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/jobs"
)

// Tenancy. Every API key is a principal: a name (apikey.Parse) and a role.
// A key that is not an admin sees, lists and cancels only the jobs it
// created (another key's job is 404, exactly as an unknown id), registers
// contracts in its own namespace, and may not reconcile signers or open
// the monitor (403). An admin sees every job, registers the shared
// contracts, and reaches everything. Without API keys (RELAYQ_INSECURE_NO_AUTH)
// every caller is an admin without a name, and jobs carry no api_key.

// principal is who a request acts for.
type principal struct {
	name  string // the API key's name; "" without auth
	admin bool
	// idemScope scopes the caller's Idempotency-Keys: a named key's name,
	// or for a bare key (and without auth) what scoped them before keys
	// had names, so that keys remembered across an upgrade still match.
	idemScope string
}

type principalKey struct{}

// apiKeyNameKey is the context key of the caller's API key name, set by
// auth for the request log and the rate limiter.
const apiKeyNameKey = "api_key"

// anonymous is the caller of an API that runs without keys.
var anonymous = principal{admin: true, idemScope: fmt.Sprint(nil)}

// withPrincipal returns ctx carrying p; auth puts the caller in every
// authenticated request's context, so code below the handlers (contract
// lookups, the webhook check) can scope by it without a new parameter.
func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalOf is the caller a request's context carries (anonymous when
// the API runs without keys).
func principalOf(ctx context.Context) principal {
	if p, ok := ctx.Value(principalKey{}).(principal); ok {
		return p
	}
	return anonymous
}

// caller is the principal of request c.
func caller(c echo.Context) principal { return principalOf(c.Request().Context()) }

// owns reports whether p may see job j: an admin sees every job, any other
// key only those it created.
func (p principal) owns(j *jobs.Job) bool { return p.admin || j.APIKey == p.name }

// namespace is where p's contracts are registered: an admin's in the
// shared namespace (""), any other key's in its own.
func (p principal) namespace() string {
	if p.admin {
		return ""
	}
	return p.name
}

// adminOnly refuses callers that are not admins with 403: the route is
// about the deployment (signers, the task monitor), not about the
// caller's own jobs.
func adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := caller(c); !p.admin {
			return apiError(CodeForbidden, "API key %s is not an admin: this route needs an admin key (name:key:admin in RELAYQ_API_KEYS)", p.name)
		}
		return next(c)
	}
}
