// Package archive keeps final jobs in PostgreSQL once they leave Redis's
// hot window: a table of whole job records keyed by job id, written once
// (a repeat changes nothing) and read by id, by page and as a stream.
//
// The archive is optional (RELAYQ_ARCHIVE_URL). Its schema is versioned and
// embedded (migrations/), applied by goose when the archive is first
// reached; while PostgreSQL is down every call fails and the jobs stay in
// Redis (see worker's archiver and docs/archive.md).
package archive

import (
	"context"
	"embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/relayq/relayq/jobs"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Archive is the PostgreSQL store of final jobs.
type Archive struct {
	pool *pgxpool.Pool

	mu       sync.Mutex
	migrated bool
}

// Open returns the archive at url (postgres://…). It does not reach the
// server: the schema is migrated on first use, so a deployment whose
// PostgreSQL is down starts, and keeps its jobs in Redis until it is back.
func Open(url string) (*Archive, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("archive: RELAYQ_ARCHIVE_URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 5*time.Second {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return &Archive{pool: pool}, nil
}

// Close closes the archive's connections.
func (a *Archive) Close() { a.pool.Close() }

// Migrate applies the embedded migrations that the database lacks, under
// goose's PostgreSQL advisory lock (several processes may start at once).
// Every other method calls it first until it has succeeded once.
func (a *Archive) Migrate(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.migrated {
		return nil
	}
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	db := stdlib.OpenDBFromPool(a.pool)
	defer db.Close()
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	a.migrated = true
	return nil
}

// Ping reports whether the archive answers (and is migrated).
func (a *Archive) Ping(ctx context.Context) error {
	if err := a.Migrate(ctx); err != nil {
		return err
	}
	return a.pool.Ping(ctx)
}

// finishedAt is when j became final: its last change.
func finishedAt(j *jobs.Job) time.Time {
	if n := len(j.History); n > 0 {
		return j.History[n-1].At
	}
	return j.UpdatedAt
}

// putSQL writes one job. A repeat of the same record changes nothing; a
// record that differs (a webhook delivery recorded in Redis after an
// earlier copy was written, before the move finished) replaces it.
const putSQL = `
INSERT INTO archived_jobs (id, chain_id, status, api_key, from_addr, to_addr, created_at, finished_at, metadata, record, raw, body_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at, record = EXCLUDED.record
WHERE archived_jobs.record::text IS DISTINCT FROM EXCLUDED.record::text`

// ErrNotFinal is the archive's refusal of a job that may still change.
var ErrNotFinal = errors.New("job is not final")

// Put writes js in one transaction and returns how many rows it wrote
// (a job already archived with the same record is not counted). Only
// final jobs are accepted: Put refuses the whole batch, writing nothing,
// when one is not.
func (a *Archive) Put(ctx context.Context, js []*jobs.Job) (int, error) {
	if len(js) == 0 {
		return 0, nil
	}
	for _, j := range js {
		if !j.Status.Terminal() {
			return 0, fmt.Errorf("archive: put job %s (%s): %w", j.ID, j.Status, ErrNotFinal)
		}
	}
	if err := a.Migrate(ctx); err != nil {
		return 0, err
	}
	b := &pgx.Batch{}
	for _, j := range js {
		rec, err := json.Marshal(j)
		if err != nil {
			return 0, fmt.Errorf("archive: put job %s: %w", j.ID, err)
		}
		var meta any
		if len(j.Metadata) > 0 && string(j.Metadata) != "null" {
			meta = string(j.Metadata)
		}
		b.Queue(putSQL, j.ID, int64(j.ChainID), string(j.Status), j.APIKey, strings.ToLower(j.From), strings.ToLower(j.To),
			j.CreatedAt, finishedAt(j), meta, string(rec), j.Raw, j.BodyHash)
	}
	n := 0
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		br := tx.SendBatch(ctx, b)
		for range js {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			n += int(tag.RowsAffected())
		}
		return br.Close()
	})
	if err != nil {
		return 0, fmt.Errorf("archive: put %d jobs: %w", len(js), err)
	}
	return n, nil
}

// Get loads one archived job, or an error wrapping jobs.ErrNotFound.
func (a *Archive) Get(ctx context.Context, id string) (*jobs.Job, error) {
	if _, err := uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("archive: get job %q: %w", id, jobs.ErrNotFound)
	}
	if err := a.Migrate(ctx); err != nil {
		return nil, err
	}
	var rec, raw, hash string
	err := a.pool.QueryRow(ctx, `SELECT record::text, raw, body_hash FROM archived_jobs WHERE id = $1`, id).Scan(&rec, &raw, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("archive: get job %s: %w", id, jobs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: get job %s: %w", id, err)
	}
	return decode(rec, raw, hash)
}

// Has returns the ids among ids that the archive holds.
func (a *Archive) Has(ctx context.Context, ids []string) (map[string]bool, error) {
	if err := a.Migrate(ctx); err != nil {
		return nil, err
	}
	rows, err := a.pool.Query(ctx, `SELECT id::text FROM archived_jobs WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("archive: look jobs up: %w", err)
	}
	out := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("archive: look jobs up: %w", err)
		}
		out[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("archive: look jobs up: %w", err)
	}
	return out, nil
}

func decode(rec, raw, hash string) (*jobs.Job, error) {
	j := &jobs.Job{}
	if err := json.Unmarshal([]byte(rec), j); err != nil {
		return nil, fmt.Errorf("archive: decode job: %w", err)
	}
	j.Raw, j.BodyHash = raw, hash
	if j.Attempts == nil {
		j.Attempts = []jobs.Attempt{}
	}
	if j.History == nil {
		j.History = []jobs.Change{}
	}
	return j, nil
}

// idFloor is the smallest job id created at t or later (a UUIDv7 starts
// with its millisecond timestamp), as jobs.Filter's time bounds are read
// from the Redis indexes.
func idFloor(t time.Time) string {
	var u uuid.UUID
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(u[0:6], ms[2:8])
	return u.String()
}

// where builds the conditions of a listing of chainID's jobs passing f,
// below the id cursor ("" : from the newest). The indexes answer each.
func where(chainID uint64, f jobs.Filter, cursor string) (string, []any) {
	conds := []string{"chain_id = $1"}
	args := []any{int64(chainID)}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Owner != "" {
		add("api_key = ?", f.Owner)
	}
	if f.Status != "" {
		add("status = ?", string(f.Status))
	}
	if f.From != "" {
		add("from_addr = ?", strings.ToLower(f.From))
	}
	if f.To != "" {
		add("to_addr = ?", strings.ToLower(f.To))
	}
	upper := cursor
	if !f.Until.IsZero() {
		if b := idFloor(f.Until); upper == "" || b < upper {
			upper = b
		}
	}
	if upper != "" {
		add("id < ?::uuid", upper)
	}
	if !f.Since.IsZero() {
		add("id >= ?::uuid", idFloor(f.Since))
	}
	if f.MetaKey != "" {
		// As jobs.Filter matches: the field is the string MetaValue, or a
		// number, boolean or null whose JSON text is MetaValue.
		s, _ := json.Marshal(map[string]string{f.MetaKey: f.MetaValue})
		cond := "metadata @> ?::jsonb"
		args = append(args, string(s))
		cond = strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args)))
		var v any
		if f.MetaValue != "" && json.Unmarshal([]byte(f.MetaValue), &v) == nil {
			if _, isString := v.(string); !isString {
				other, _ := json.Marshal(map[string]json.RawMessage{f.MetaKey: json.RawMessage(f.MetaValue)})
				args = append(args, string(other))
				cond = "(" + cond + " OR metadata @> $" + strconv.Itoa(len(args)) + "::jsonb)"
			}
		}
		conds = append(conds, cond)
	}
	return strings.Join(conds, " AND "), args
}

// List returns up to limit archived jobs of chainID passing f, newest
// first, below the id cursor (the last id of the previous page), with the
// cursor semantics of jobs.Store.ListFilter. next is "" on the last page.
func (a *Archive) List(ctx context.Context, chainID uint64, f jobs.Filter, limit int, cursor string) (list []*jobs.Job, next string, err error) {
	if err := a.Migrate(ctx); err != nil {
		return nil, "", err
	}
	cond, args := where(chainID, f, cursor)
	args = append(args, limit+1)
	rows, err := a.pool.Query(ctx, `SELECT record::text, raw, body_hash FROM archived_jobs WHERE `+cond+
		` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return nil, "", fmt.Errorf("archive: list jobs: %w", err)
	}
	list = make([]*jobs.Job, 0, limit)
	err = scan(rows, func(j *jobs.Job) error {
		list = append(list, j)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(list) > limit {
		list = list[:limit]
		next = list[limit-1].ID
	}
	return list, next, nil
}

// Export calls fn with every archived job of chainID passing f, newest
// first, as the rows arrive: nothing is held beyond the current row. An
// error from fn stops it and is returned.
func (a *Archive) Export(ctx context.Context, chainID uint64, f jobs.Filter, fn func(*jobs.Job) error) error {
	if err := a.Migrate(ctx); err != nil {
		return err
	}
	cond, args := where(chainID, f, "")
	rows, err := a.pool.Query(ctx, `SELECT record::text, raw, body_hash FROM archived_jobs WHERE `+cond+` ORDER BY id DESC`, args...)
	if err != nil {
		return fmt.Errorf("archive: export jobs: %w", err)
	}
	return scan(rows, fn)
}

func scan(rows pgx.Rows, fn func(*jobs.Job) error) error {
	defer rows.Close()
	for rows.Next() {
		var rec, raw, hash string
		if err := rows.Scan(&rec, &raw, &hash); err != nil {
			return fmt.Errorf("archive: read jobs: %w", err)
		}
		j, err := decode(rec, raw, hash)
		if err != nil {
			return err
		}
		if err := fn(j); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("archive: read jobs: %w", err)
	}
	return nil
}

// Count returns how many jobs the archive holds.
func (a *Archive) Count(ctx context.Context) (int64, error) {
	if err := a.Migrate(ctx); err != nil {
		return 0, err
	}
	var n int64
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM archived_jobs`).Scan(&n); err != nil {
		return 0, fmt.Errorf("archive: count jobs: %w", err)
	}
	return n, nil
}

// Size returns the bytes the archive's table takes with its indexes and
// TOAST (pg_total_relation_size), for sizing.
func (a *Archive) Size(ctx context.Context) (int64, error) {
	if err := a.Migrate(ctx); err != nil {
		return 0, err
	}
	var n int64
	if err := a.pool.QueryRow(ctx, `SELECT pg_total_relation_size('archived_jobs')`).Scan(&n); err != nil {
		return 0, fmt.Errorf("archive: size: %w", err)
	}
	return n, nil
}
