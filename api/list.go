package api

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/jobs"
)

// listParams are the query parameters of GET /v1/jobs (and of the UI's
// list, which reads through the same parser and store call).
var listParams = map[string]bool{
	"status": true, "limit": true, "cursor": true, "chain": true,
	"since": true, "until": true, "from": true, "metadata": true, "api_key": true,
}

// listQuery is a validated GET /v1/jobs query.
type listQuery struct {
	filter jobs.Filter
	limit  int
	cursor string
}

// parseListQuery validates the query of a job listing. extra names
// parameters the caller handles itself (the UI's), besides listParams.
func parseListQuery(q url.Values, extra ...string) (listQuery, *Error) {
	for k := range q {
		if !listParams[k] && !slices.Contains(extra, k) {
			return listQuery{}, invalid("unknown_parameter", k, "unknown query parameter %q (use status, limit, cursor, chain, since, until, from, metadata, api_key)", clip(k))
		}
	}
	lq := listQuery{limit: defaultListLimit, cursor: q.Get("cursor")}
	f := &lq.filter
	f.Status = jobs.Status(q.Get("status"))
	if f.Status != "" && !f.Status.Valid() {
		return lq, invalid("invalid_status", "status", "status %q is not one of %v", clip(string(f.Status)), jobs.Statuses)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return lq, invalid("out_of_range", "limit", "limit must be an integer from 1 to %d", maxListLimit)
		}
		lq.limit = n
	}
	if _, ok := jobs.CreatedAt(lq.cursor); lq.cursor != "" && !ok {
		return lq, invalid("invalid_cursor", "cursor", "cursor is not one this API returned")
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return lq, invalid("invalid_time", p.name, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", p.name)
			}
			*p.to = t
		}
	}
	if v := q.Get("from"); v != "" {
		a, e := parseAddress(v, "from")
		if e != nil {
			return lq, e
		}
		f.From = a.Hex()
	}
	f.Owner = q.Get("api_key") // an admin's choice; list() pins a client key to its own
	if v := q.Get("metadata"); v != "" {
		k, val, ok := strings.Cut(v, ":")
		if !ok || k == "" {
			return lq, invalid("invalid_metadata_filter", "metadata", "metadata must be key:value, e.g. order:42")
		}
		f.MetaKey, f.MetaValue = k, val
	}
	return lq, nil
}

// list reads one page of jobs of this chain.
func (s *Server) list(c echo.Context, lq listQuery) ([]*jobs.Job, string, error) {
	if p := caller(c); !p.admin {
		if lq.filter.Owner != "" && lq.filter.Owner != p.name {
			return []*jobs.Job{}, "", nil // another key's jobs: none, as for an unknown key
		}
		lq.filter.Owner = p.name // a key that is not an admin lists its own jobs only
	}
	list, next, err := s.store.ListFilter(c.Request().Context(), lq.filter, lq.limit, lq.cursor)
	if err != nil {
		return nil, "", apiError(CodeUnavailable, "could not list jobs: %v", err)
	}
	return list, next, nil
}

func (s *Server) listJobs(c echo.Context) error {
	lq, e := parseListQuery(c.QueryParams())
	if e != nil {
		return e
	}
	list, next, err := s.list(c, lq)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"jobs": list, "next_cursor": next})
}
