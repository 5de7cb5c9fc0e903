package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/api"
	"github.com/relayq/relayq/archive"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/worker"
)

// archiveStack is a stack on anvil (1 s blocks) whose worker moves final
// jobs to a real PostgreSQL after a 2 s hot window and whose API reads it.
func archiveStack(t *testing.T) (*stack, *archive.Archive, *testenv.PostgresServer) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	a, err := archive.Open(pg.URL())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	s := newStack(t, stackOptions{
		anvilArgs: []string{"--block-time", "1"},
		worker: func(c *worker.Config) {
			c.Archive, c.HotRetention, c.ArchiveEvery = a, 2*time.Second, 300*time.Millisecond
		},
		api: func(c *api.Config) { c.Archive = a },
	})
	return s, a, pg
}

// hotFinal is how many final jobs Redis holds.
func (s *stack) hotFinal() int64 {
	s.t.Helper()
	var n int64
	for _, st := range []jobs.Status{jobs.Confirmed, jobs.Failed, jobs.Cancelled} {
		c, err := s.store.Count(context.Background(), st)
		require.NoError(s.t, err)
		n += c
	}
	return n
}

// waitDrained waits until Redis holds no job at all and the archive holds n.
func waitDrained(t *testing.T, rdb *redis.Client, a *archive.Archive, n int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		hot, err := rdb.ZCard(context.Background(), "relayq:jobs:all").Result()
		require.NoError(t, err)
		cold, err := a.Count(context.Background())
		if err == nil && hot == 0 && cold == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d jobs still in Redis, %d in the archive (want 0 and %d; err %v)", within, hot, cold, n, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Real jobs go through anvil to confirmed, leave Redis for PostgreSQL
// after the hot window, and the API still serves each of them: by id (the
// same answer as before the move), in listings and in an export.
func TestArchiveEndToEnd(t *testing.T) {
	t.Parallel()
	s, a, _ := archiveStack(t)
	const n = 12
	body := fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"batch":"e2e"}}`, s.counter.Hex())
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.submit(body).ID
	}
	hot := map[string]string{}
	for _, id := range ids {
		s.wait(id, jobs.Confirmed)
		r := s.do(http.MethodGet, "/v1/jobs/"+id, "")
		hot[id] = string(r.Body)
	}
	waitDrained(t, s.rdb, a, n, time.Minute)
	require.Equal(t, uint64(n), s.count(), "each executed once")
	for _, id := range ids {
		r := s.do(http.MethodGet, "/v1/jobs/"+id, "")
		require.Equal(t, http.StatusOK, r.Status)
		j := r.job(t)
		require.Equal(t, jobs.Confirmed, j.Status)
		// The webhook-free record does not change after confirmed: the
		// archived answer is the one Redis gave.
		require.JSONEq(t, hot[id], string(r.Body))
	}
	r := s.do(http.MethodGet, "/v1/jobs?limit=5&metadata.batch=e2e", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = s.do(http.MethodGet, "/v1/jobs/export?format=ndjson&signer="+s.signer.Hex(), "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		lines++
	}
	require.Equal(t, n, lines)
}

// While PostgreSQL is down jobs keep flowing to confirmed, and the final
// ones pile up in Redis past the hot window; once it is back the backlog
// drains into the archive.
func TestArchivePostgresOutage(t *testing.T) {
	t.Parallel()
	s, a, pg := archiveStack(t)
	require.NoError(t, a.Ping(context.Background()))
	pg.Kill()
	const n = 10
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter.Hex())
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.submit(body).ID
	}
	for _, id := range ids {
		s.wait(id, jobs.Confirmed)
	}
	// Past the hot window, several archiver rounds: all still in Redis.
	time.Sleep(4 * time.Second)
	require.Equal(t, int64(n), s.hotFinal(), "nothing leaves Redis that the archive did not take")
	pg.Start()
	waitDrained(t, s.rdb, a, n, time.Minute)
	require.Equal(t, uint64(n), s.count())
	for _, id := range ids {
		require.Equal(t, jobs.Confirmed, s.wait(id, jobs.Confirmed).Status)
	}
}

// A worker process killed with SIGKILL inside the move (before the
// PostgreSQL commit, between the commit and the Redis delete, after the
// delete) loses no job and doubles none: a fresh worker finishes the move,
// every job is served by the API, once, and executed once on chain.
func TestArchiveCrashWindows(t *testing.T) {
	t.Parallel()
	testenv.SkipShort(t, "starts relayq processes")
	for _, at := range []string{"archive_before_put", "archive_after_put", "archive_after_forget"} {
		t.Run(at, func(t *testing.T) {
			pg := testenv.StartPostgres(t)
			c, counter := newCluster(t, clusterOptions{anvilArgs: []string{"--block-time", "1"}, env: []string{
				"RELAYQ_ARCHIVE_URL=" + pg.URL(), "RELAYQ_HOT_RETENTION=1s",
			}})
			doomed := c.addWorker("RELAYQ_TEST_CRASH_AT=" + at)
			const n = 8
			ids := c.post(n, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter))
			deadline := time.Now().Add(90 * time.Second)
			for doomed.Running() {
				require.True(t, time.Now().Before(deadline), "the worker never reached %s", at)
				time.Sleep(50 * time.Millisecond)
			}
			c.addWorker()
			a, err := archive.Open(pg.URL())
			require.NoError(t, err)
			defer a.Close()
			rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
			defer rdb.Close()
			waitDrained(t, rdb, a, n, 2*time.Minute)
			all := c.waitAll(ids, time.Minute)
			requireOncePerNonce(t, all, n)
			c.requireExecutedOnce(n, counter)
			code, body, err := c.request(http.MethodGet, fmt.Sprintf("/v1/jobs?limit=%d", 2*n), "")
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code)
			var list struct {
				Jobs []jobs.Job `json:"jobs"`
			}
			require.NoError(t, jsonUnmarshal(body, &list))
			require.Len(t, list.Jobs, n, "each job listed once")
		})
	}
}

// usedMemory reads Redis's used_memory.
func usedMemory(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.InfoMap(context.Background(), "memory").Result()
	require.NoError(t, err)
	n, err := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	require.NoError(t, err)
	return n
}

// 10,000 final jobs (made directly in the store, as the tracker leaves
// them, two hours old) go through the worker's archiver into PostgreSQL,
// and every one is read back by id, by listing and by export. Redis
// memory before and after, and the archive's bytes per job, are logged.
func TestArchiveUnderLoad(t *testing.T) {
	t.Parallel()
	testenv.SkipShort(t, "10,000 jobs")
	pg := testenv.StartPostgres(t)
	a, err := archive.Open(pg.URL())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	s := newStack(t, stackOptions{
		noWorkerRun: true,
		worker: func(c *worker.Config) {
			c.Archive, c.HotRetention, c.ArchiveEvery = a, time.Hour, 200*time.Millisecond
			c.JobRetention = 24 * time.Hour // unused with an archive: see the Prune below
		},
		api: func(c *api.Config) { c.Archive = a },
	})
	ctx := context.Background()
	chainID := s.worker.ChainID().Uint64()
	past := time.Now().Add(-2 * time.Hour)
	old := jobs.NewStore(s.rdb, "relayq:", jobs.WithClock(func() time.Time { return past }))
	empty := usedMemory(t, s.rdb)
	const n, batch = 10_000, 500
	for b := 0; b < n; b += batch {
		js := make([]*jobs.Job, batch)
		for i := range js {
			k := b + i
			js[i] = &jobs.Job{ChainID: chainID, To: s.counter.Hex(), Function: "increment()", Data: "0xd09de08a", Value: "0",
				Confirmations: 1, BodyHash: fmt.Sprintf("h%d", k), ID: jobs.NewIDAt(past.Add(time.Duration(k) * time.Millisecond)),
				Metadata: json.RawMessage(fmt.Sprintf(`{"order":"o-%d","customer":"c-%d"}`, k, k%100))}
		}
		_, _, err := old.CreateMany(ctx, js, nil)
		require.NoError(t, err)
		var steps []jobs.Step
		for i, j := range js {
			k := uint64(b + i)
			steps = append(steps, jobs.Step{ID: j.ID, From: jobs.Queued, To: jobs.Submitted,
				Fields:  jobs.Fields{"from", s.signer.Hex(), "nonce", k, "tx_hash", fmt.Sprintf("0x%064x", k), "raw", "0x02f86c", "gas", 30000},
				Attempt: &jobs.Attempt{Hash: fmt.Sprintf("0x%064x", k), Nonce: k, Gas: 30000, GasTipCap: "1000000000", GasFeeCap: "3000000000", Kind: jobs.KindOriginal, SentAt: past}})
		}
		for _, err := range old.TransitionMany(ctx, steps) {
			require.NoError(t, err)
		}
		for i := range steps {
			steps[i] = jobs.Step{ID: js[i].ID, From: jobs.Submitted, To: jobs.Mined, Fields: jobs.Fields{"block_number", 1, "block_hash", "0xbb", "gas_used", 26000, "receipt_status", 1, "effective_gas_price", "1875000000"}}
		}
		for _, err := range old.TransitionMany(ctx, steps) {
			require.NoError(t, err)
		}
		for i := range steps {
			steps[i] = jobs.Step{ID: js[i].ID, From: jobs.Mined, To: jobs.Confirmed}
		}
		for _, err := range old.TransitionMany(ctx, steps) {
			require.NoError(t, err)
		}
	}
	full := usedMemory(t, s.rdb)
	// With an archive, pruning deletes nothing, however old: a job leaves
	// Redis only through the archive.
	pruned, err := s.worker.Prune(ctx, time.Now().Add(30*24*time.Hour))
	require.NoError(t, err)
	require.Zero(t, pruned)
	ids, err := s.rdb.ZRevRange(ctx, "relayq:jobs:all", 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, ids, n)
	s.mine() // the head is past block 1 (the simulated chain commits on a ticker anyway)

	start := time.Now()
	s.runWorker()
	waitDrained(t, s.rdb, a, n, 5*time.Minute)
	moved := time.Since(start)
	after := usedMemory(t, s.rdb)
	size, err := a.Size(ctx)
	require.NoError(t, err)
	t.Logf("archive under load: %d jobs moved in %v; Redis used_memory %d B empty, %d B with them (%d B/job), %d B after the move; PostgreSQL %d B (%d B/job with indexes)",
		n, moved.Round(time.Millisecond), empty, full, (full-empty)/n, after, size, size/n)

	// By id: every one, confirmed, with its metadata.
	for i, id := range ids {
		if i%10 != 0 && i >= 200 {
			continue // every tenth past the first 200: 1,190 GETs
		}
		r := s.do(http.MethodGet, "/v1/jobs/"+id, "")
		require.Equal(t, http.StatusOK, r.Status, id)
		j := r.job(t)
		require.Equal(t, jobs.Confirmed, j.Status)
		require.Len(t, j.Attempts, 1)
		require.Len(t, j.History, 4)
	}
	got, err := a.Has(ctx, ids)
	require.NoError(t, err)
	require.Len(t, got, n, "every id in the archive")
	// By listing: pages of 500 give every id once, newest first.
	var listed []string
	cursor := ""
	for {
		r := s.do(http.MethodGet, "/v1/jobs?limit=500&cursor="+cursor, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var page struct {
			Jobs []jobs.Job `json:"jobs"`
			Next string     `json:"next_cursor"`
		}
		require.NoError(t, jsonUnmarshal(r.Body, &page))
		for _, j := range page.Jobs {
			listed = append(listed, j.ID)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	require.Equal(t, ids, listed)
	// By export: NDJSON and CSV, every job once.
	r := s.do(http.MethodGet, "/v1/jobs/export?format=ndjson", "")
	require.Equal(t, http.StatusOK, r.Status)
	var exported []string
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var j jobs.Job
		require.NoError(t, jsonUnmarshal(sc.Bytes(), &j))
		exported = append(exported, j.ID)
	}
	require.Equal(t, ids, exported)
	r = s.do(http.MethodGet, "/v1/jobs/export?format=csv&metadata.customer=c-7", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, 1+n/100, bytes.Count(r.Body, []byte("\n")), "a header and the customer's 100 jobs")
}
