package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
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
