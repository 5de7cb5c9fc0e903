package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/archive"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// archived is a tenants bundle whose API reads a real PostgreSQL archive.
func archived(t *testing.T) (*bundle, *archive.Archive, *testenv.PostgresServer) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	a, err := archive.Open(pg.URL())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	b := tenants(t, func(c *Config) { c.Archive = a })
	return b, a, pg
}

// move archives job id as the archiver does: written to PostgreSQL, then
// deleted from Redis. keep leaves it in Redis too (a crash between the
// two).
func (b *bundle) move(a *archive.Archive, id string, keep bool) {
	b.t.Helper()
	ctx := context.Background()
	j, err := b.store.Get(ctx, id)
	require.NoError(b.t, err)
	if !j.Status.Terminal() {
		_, err = b.store.Transition(ctx, id, jobs.Failed, "test", jobs.Fields{"error", jobs.ErrorField(jobs.Error{Code: jobs.ErrCodeExpired, Message: "test"})}, nil)
		require.NoError(b.t, err)
		j, err = b.store.Get(ctx, id)
		require.NoError(b.t, err)
	}
	_, err = a.Put(ctx, []*jobs.Job{j})
	require.NoError(b.t, err)
	if !keep {
		n, err := b.store.Forget(ctx, []*jobs.Job{j})
		require.NoError(b.t, err)
		require.Equal(b.t, 1, n)
	}
}

func (b *bundle) postAs(key string, i int, headers ...string) string {
	b.t.Helper()
	r := b.as(key, http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"order":%d,"shop":"s%d"}}`, testCounter, i, i%2), headers...)
	require.Equal(b.t, http.StatusAccepted, r.Status, string(r.Body))
	return r.job(b.t).ID
}

// A job answers GET /v1/jobs/{id} byte for byte the same before and after
// its move; another key still gets 404; listings page across both stores
// with one cursor (a job in both is listed once); the new filters work on
// both; exports stream every job as NDJSON or CSV, each key its own.
func TestArchiveReads(t *testing.T) {
	t.Parallel()
	b, a, _ := archived(t)
	var alice, bob []string
	for i := range 12 {
		if i%3 == 2 {
			bob = append(bob, b.postAs(bobKey, i))
		} else {
			alice = append(alice, b.postAs(aliceKey, i))
		}
	}
	first := alice[0]
	b.move(a, first, true) // failed, still in Redis: the answer before the move
	before := b.as(aliceKey, http.MethodGet, "/v1/jobs/"+first, "")
	require.Equal(t, http.StatusOK, before.Status)
	b.move(a, first, false)
	exists, err := b.rdb.Exists(context.Background(), b.store.JobKey(first)).Result()
	require.NoError(t, err)
	require.Zero(t, exists, "gone from Redis")
	after := b.as(aliceKey, http.MethodGet, "/v1/jobs/"+first, "")
	require.Equal(t, http.StatusOK, after.Status, string(after.Body))
	require.Equal(t, string(before.Body), string(after.Body), "the answer does not change with the store")
	require.Equal(t, http.StatusNotFound, b.as(bobKey, http.MethodGet, "/v1/jobs/"+first, "").Status, "another key's archived job is 404")
	require.Equal(t, http.StatusOK, b.as(opsKey, http.MethodGet, "/v1/jobs/"+first, "").Status)

	// Half of the jobs move (every other one, so the stores interleave);
	// one stays in both stores.
	for i, id := range append(slices.Clone(alice[1:]), bob...) {
		if i%2 == 0 {
			b.move(a, id, i == 4)
		}
	}
	all := append(slices.Clone(alice), bob...)
	slices.Sort(all)
	slices.Reverse(all)
	pageAll := func(key, query string, limit int) []string {
		var ids []string
		cursor := ""
		for range 100 {
			q := fmt.Sprintf("/v1/jobs?limit=%d&%s", limit, query)
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			r := b.as(key, http.MethodGet, q, "")
			ids = append(ids, listIDs(t, r)...)
			var body struct {
				Next string `json:"next_cursor"`
			}
			require.NoError(t, json.Unmarshal(r.Body, &body))
			if body.Next == "" {
				return ids
			}
			cursor = body.Next
		}
		t.Fatal("the cursor never ended")
		return nil
	}
	for _, limit := range []int{1, 3, 5, 50} {
		require.Equal(t, all, pageAll(opsKey, "", limit), "limit %d: every job once, newest first", limit)
	}
	mine := slices.Clone(alice)
	slices.Sort(mine)
	slices.Reverse(mine)
	require.Equal(t, mine, pageAll(aliceKey, "", 2), "a key lists its own jobs in both stores")
	require.Empty(t, pageAll(aliceKey, "api_key=bob", 2))
	require.Equal(t, []string{alice[0]}, pageAll(aliceKey, "metadata.order=0", 2), "metadata from the archive")
	require.Equal(t, []string{alice[1]}, pageAll(aliceKey, "metadata=order:1", 2), "metadata from Redis")
	require.Len(t, pageAll(opsKey, "metadata.shop=s1&to="+strings.ToLower(testCounter), 2), 6)
	require.Len(t, pageAll(opsKey, "status=failed", 2), 7, "the moved jobs failed first")
	require.Empty(t, pageAll(opsKey, "created_before=2000-01-01T00:00:00Z", 2))
	require.Len(t, pageAll(opsKey, "created_after=2000-01-01T00:00:00Z&created_before=2999-01-01T00:00:00Z", 4), 12)

	export := func(key, query string) response {
		r := b.as(key, http.MethodGet, "/v1/jobs/export?"+query, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		return r
	}
	r := export(opsKey, "format=ndjson")
	require.Equal(t, "application/x-ndjson", r.Header.Get("Content-Type"))
	var got []string
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		var j jobs.Job
		require.NoError(t, json.Unmarshal(sc.Bytes(), &j))
		got = append(got, j.ID)
		if j.ID == first {
			require.JSONEq(t, string(after.Body), sc.Text(), "a line is the job as GET answers it")
		}
	}
	require.Equal(t, all, got)
	r = export(aliceKey, "format=csv&api_key=bob")
	rows, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 1, "the header only: another key's jobs are not alice's to export")
	r = export(aliceKey, "format=csv")
	require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv"))
	rows, err = csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	require.NoError(t, err)
	require.Equal(t, csvHeader, rows[0])
	require.Len(t, rows, 1+len(alice))
	for _, row := range rows[1:] {
		require.Contains(t, alice, row[0])
		require.Equal(t, "alice", row[3])
	}

	for _, tc := range []struct{ query, code, field string }{
		{"format=xml", "invalid_format", "format"},
		{"limit=5", "unknown_parameter", "limit"},
		{"to=nope", "invalid_address", "to"},
	} {
		r := b.as(opsKey, http.MethodGet, "/v1/jobs/export?"+tc.query, "")
		require.Equal(t, http.StatusBadRequest, r.Status, tc.query)
		e := r.err(t)
		require.Equal(t, tc.code, e.Code, tc.query)
		require.Equal(t, tc.field, e.Field, tc.query)
	}
}

// A request repeating the Idempotency-Key of a job already archived is
// answered with that job (200), and with a different body 409: nothing
// new is created either way.
func TestArchiveIdempotencyReplay(t *testing.T) {
	t.Parallel()
	b, a, _ := archived(t)
	id := b.postAs(aliceKey, 7, "Idempotency-Key", "k-7")
	b.move(a, id, false)
	r := b.as(aliceKey, http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"order":%d,"shop":"s%d"}}`, testCounter, 7, 1), "Idempotency-Key", "k-7")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, id, r.job(t).ID)
	r = b.as(aliceKey, http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, testCounter), "Idempotency-Key", "k-7")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Zero(t, b.jobCount())
}

// While PostgreSQL is down, reads that need it answer 503 (never a 404 for
// a job that may be archived, never a listing that silently lacks the
// archive); jobs are still accepted; when it is back, reads work again.
func TestArchiveOutageReads(t *testing.T) {
	t.Parallel()
	b, a, pg := archived(t)
	id := b.postAs(aliceKey, 1)
	b.move(a, id, false)
	pg.Kill()
	require.Equal(t, http.StatusServiceUnavailable, b.as(aliceKey, http.MethodGet, "/v1/jobs/"+id, "").Status)
	require.Equal(t, http.StatusServiceUnavailable, b.as(aliceKey, http.MethodGet, "/v1/jobs", "").Status)
	require.Equal(t, http.StatusServiceUnavailable, b.as(aliceKey, http.MethodGet, "/v1/jobs/export", "").Status)
	hot := b.postAs(aliceKey, 2)
	require.Equal(t, http.StatusOK, b.as(aliceKey, http.MethodGet, "/v1/jobs/"+hot, "").Status, "a job in Redis is read from Redis")
	pg.Start()
	deadline := time.Now().Add(30 * time.Second)
	for b.as(aliceKey, http.MethodGet, "/v1/jobs/"+id, "").Status != http.StatusOK {
		require.True(t, time.Now().Before(deadline), "reads never came back")
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, []string{hot, id}, listIDs(t, b.as(aliceKey, http.MethodGet, "/v1/jobs", "")))
}
