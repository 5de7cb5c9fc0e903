package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/jobs"
)

// JobArchive is what the API reads of the archive of final jobs
// (archive.Archive): jobs that left Redis after the hot window.
type JobArchive interface {
	Get(ctx context.Context, id string) (*jobs.Job, error)
	List(ctx context.Context, chainID uint64, f jobs.Filter, limit int, cursor string) ([]*jobs.Job, string, error)
}

// getAnywhere loads job id from Redis, then from the archive. Redis is read
// first: the archiver commits a job to the archive before it deletes it
// from Redis, so a job missing from Redis at that read is in the archive.
func (s *Server) getAnywhere(ctx context.Context, id string) (*jobs.Job, error) {
	j, err := s.store.Get(ctx, id)
	if !errors.Is(err, jobs.ErrNotFound) || s.cfg.Archive == nil {
		return j, err
	}
	return s.cfg.Archive.Get(ctx, id)
}

// listAnywhere is ListFilter across Redis and the archive: up to limit jobs
// passing f, newest first, below cursor. Each store answers its own page
// with the same cursor semantics, and the two are merged by id.
func (s *Server) listAnywhere(ctx context.Context, f jobs.Filter, limit int, cursor string) ([]*jobs.Job, string, error) {
	hot, hotNext, err := s.store.ListFilter(ctx, f, limit, cursor)
	if err != nil || s.cfg.Archive == nil {
		return hot, hotNext, err
	}
	cold, coldNext, err := s.cfg.Archive.List(ctx, s.chainID, f, limit, cursor)
	if err != nil {
		return nil, "", err
	}
	list, next := mergePages(hot, hotNext, cold, coldNext, limit)
	return list, next, nil
}

// mergePages merges a page of Redis (hot) and one of the archive (cold),
// each newest first and each complete down to its next cursor (the last id
// it read; "" when its store has no more). Below the higher of the two
// cursors one store has not been read yet, so the merged page stops there
// and its next cursor resumes both from it. A job in both stores (archived,
// not yet deleted from Redis) is listed once, from Redis.
func mergePages(hot []*jobs.Job, hotNext string, cold []*jobs.Job, coldNext string, limit int) ([]*jobs.Job, string) {
	bound := max(hotNext, coldNext)
	seen := make(map[string]bool, len(hot))
	all := make([]*jobs.Job, 0, len(hot)+len(cold))
	for _, js := range [][]*jobs.Job{hot, cold} {
		for _, j := range js {
			if seen[j.ID] || j.ID < bound {
				continue
			}
			seen[j.ID] = true
			all = append(all, j)
		}
	}
	slices.SortFunc(all, func(a, b *jobs.Job) int { return strings.Compare(b.ID, a.ID) })
	if len(all) > limit {
		all = all[:limit]
		return all, all[limit-1].ID
	}
	return all, bound
}

// exportPage is how many jobs an export reads per round trip to each store.
const exportPage = 500

// exportJobs answers GET /v1/jobs/export: every job passing the listing's
// filters, newest first, as CSV or NDJSON, streamed page by page so that
// no range is held in memory. It runs without the request deadline (a
// range may be large); each page's reads have their own.
func (s *Server) exportJobs(c echo.Context) error {
	format := c.QueryParam("format")
	if format == "" {
		format = "ndjson"
	}
	if format != "csv" && format != "ndjson" {
		return invalid("invalid_format", "format", "format must be csv or ndjson")
	}
	q := c.QueryParams()
	if q.Has("limit") {
		return invalid("unknown_parameter", "limit", "an export has no limit: narrow it with since/until (created_after/created_before) or other filters")
	}
	lq, e := parseListQuery(q, "format")
	if e != nil {
		return e
	}
	none := false
	if p := caller(c); !p.admin {
		// Another key's jobs: none, as for an unknown key.
		none = lq.filter.Owner != "" && lq.filter.Owner != p.name
		lq.filter.Owner = p.name
	}
	ctx := c.Request().Context()
	page := func(cursor string) ([]*jobs.Job, string, error) {
		if none {
			return nil, "", nil
		}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		return s.listAnywhere(pctx, lq.filter, exportPage, cursor)
	}
	// The first page comes before the header: a store that is down is
	// still a clean 503.
	list, next, err := page(lq.cursor)
	if err != nil {
		return apiError(CodeUnavailable, "could not export jobs: %v", err)
	}
	w := c.Response()
	rc := http.NewResponseController(w.Writer)
	if format == "csv" {
		w.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="jobs.csv"`)
	} else {
		w.Header().Set(echo.HeaderContentType, "application/x-ndjson")
	}
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	enc := json.NewEncoder(w)
	if format == "csv" {
		_ = cw.Write(csvHeader)
	}
	for {
		_ = rc.SetWriteDeadline(time.Now().Add(time.Minute))
		for _, j := range list {
			if format == "csv" {
				err = cw.Write(csvRow(j))
			} else {
				err = enc.Encode(j)
			}
			if err != nil {
				return nil // the client went away
			}
		}
		cw.Flush()
		_ = rc.Flush()
		if next == "" {
			return nil
		}
		if list, next, err = page(next); err != nil {
			// Past the header a status cannot say so: end the response
			// abruptly, so the client sees a broken transfer rather than a
			// short file.
			s.log.Warn("export: a store failed mid-stream", "err", err, "request_id", requestID(c))
			panic(http.ErrAbortHandler)
		}
	}
}

// csvHeader names the columns of a CSV export, one job per row.
var csvHeader = []string{"id", "status", "chain_id", "api_key", "from", "to", "function", "value", "nonce", "tx_hash",
	"block_number", "gas_used", "effective_gas_price", "error_code", "error_message", "metadata", "created_at", "updated_at"}

func csvRow(j *jobs.Job) []string {
	u := func(p *uint64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatUint(*p, 10)
	}
	var code, msg string
	if j.Error != nil {
		code, msg = j.Error.Code, j.Error.Message
	}
	return []string{j.ID, string(j.Status), strconv.FormatUint(j.ChainID, 10), j.APIKey, j.From, j.To, j.Function, j.Value,
		u(j.Nonce), j.TxHash, u(j.BlockNumber), u(j.GasUsed), j.EffectiveGasPrice, code, msg, string(j.Metadata),
		j.CreatedAt.UTC().Format(time.RFC3339Nano), j.UpdatedAt.UTC().Format(time.RFC3339Nano)}
}
