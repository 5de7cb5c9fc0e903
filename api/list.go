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
	// Since the archive (issue 18): the signer (from's other name), the
	// called address, the creation range by its other names; and
	// metadata.<key>=<value>, matched by prefix below.
	"signer": true, "to": true, "created_after": true, "created_before": true,
}

// metadataParam is the prefix of metadata.<key>=<value> filters.
const metadataParam = "metadata."

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
		if !listParams[k] && !slices.Contains(extra, k) && !strings.HasPrefix(k, metadataParam) {
			return listQuery{}, invalid("unknown_parameter", k, "unknown query parameter %q (use status, limit, cursor, chain, since, until, created_after, created_before, from, signer, to, metadata, metadata.<key>, api_key)", clip(k))
		}
	}
	// The other names of since, until and from: one or the other, or the
	// same value under both.
	for _, alias := range [][2]string{{"since", "created_after"}, {"until", "created_before"}, {"from", "signer"}} {
		a, b := q.Get(alias[0]), q.Get(alias[1])
		if a != "" && b != "" && a != b {
			return listQuery{}, invalid("conflicting_parameters", alias[1], "%s and %s name the same filter: give one", alias[0], alias[1])
		}
		if a == "" && b != "" {
			q = cloneValues(q)
			q.Set(alias[0], b)
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
	if v := q.Get("to"); v != "" {
		a, e := parseAddress(v, "to")
		if e != nil {
			return lq, e
		}
		f.To = a.Hex()
	}
	f.Owner = q.Get("api_key") // an admin's choice; list() pins a client key to its own
	if v := q.Get("metadata"); v != "" {
		k, val, ok := strings.Cut(v, ":")
		if !ok || k == "" {
			return lq, invalid("invalid_metadata_filter", "metadata", "metadata must be key:value, e.g. order:42")
		}
		f.MetaKey, f.MetaValue = k, val
	}
	for k, vs := range q {
		key, ok := strings.CutPrefix(k, metadataParam)
		if !ok {
			continue
		}
		if key == "" || f.MetaKey != "" || len(vs) != 1 {
			return lq, invalid("invalid_metadata_filter", k, "one metadata filter per listing: metadata.<key>=<value> (or metadata=key:value)")
		}
		f.MetaKey, f.MetaValue = key, vs[0]
	}
	return lq, nil
}

// cloneValues copies q, so that filling in an alias leaves the request's
// own query alone.
func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

// list reads one page of jobs of this chain.
func (s *Server) list(c echo.Context, lq listQuery) ([]*jobs.Job, string, error) {
	if p := caller(c); !p.admin {
		if lq.filter.Owner != "" && lq.filter.Owner != p.name {
			return []*jobs.Job{}, "", nil // another key's jobs: none, as for an unknown key
		}
		lq.filter.Owner = p.name // a key that is not an admin lists its own jobs only
	}
	list, next, err := s.listAnywhere(c.Request().Context(), lq.filter, lq.limit, lq.cursor)
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
