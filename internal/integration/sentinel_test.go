package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/worker"
)

// TestSentinelFailoverLosesNoAcceptedJob runs relayq processes on a Redis
// primary with one replica and three sentinels, REDIS_URL in the Sentinel
// form and RELAYQ_REDIS_MIN_REPLICAS=1, and kills the primary with kill -9
// in the middle of a run of concurrent clients — after cutting the
// replica off for a moment, so that the primary dies holding writes no
// replica has: exactly the writes a failover loses. The sentinels promote
// the replica; the old primary comes back and they make it the new replica.
// Each client sends its job with an Idempotency-Key and sends it again
// after any failure (a refused connection, 503 unavailable or
// not_replicated) until it is answered 202 or 200. Afterwards every job
// answered 202 is confirmed — including every one answered before the
// kill — each key got one job, the contract counted each job once, and
// the nonces are contiguous with nothing left pending.
func TestSentinelFailoverLosesNoAcceptedJob(t *testing.T) {
	t.Parallel()
	primary := testenv.Redis(t, testenv.WithoutAOF())
	replica := testenv.RedisReplica(t, primary, testenv.WithoutAOF())
	sentinels := testenv.StartSentinels(t, primary, 1, testenv.SentinelOptions{DownAfter: 2 * time.Second, Failover: 5 * time.Second})
	c, counter := newClusterOn(t, sentinels.URL(), 2,
		"RELAYQ_REDIS_MIN_REPLICAS=1", "RELAYQ_REDIS_WAIT_TIMEOUT=500ms", "RELAYQ_SWEEP_AFTER=5s")

	const n = 300
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter)
	hc := &http.Client{Timeout: 15 * time.Second}
	type outcome struct {
		unsure     []string // jobs answered not_replicated for this key
		id         string
		status     int  // the answer that ended the retries: 202 or 200
		beforeKill bool // answered before the primary was killed
	}
	out := make([]outcome, n)
	var (
		next     atomic.Int64
		accepted atomic.Int64
		killed   atomic.Bool
		mu       sync.Mutex
		failures = map[string]int{} // what the retried answers were
	)
	deadline := time.Now().Add(3 * time.Minute)
	post := func(key string) (int, []byte, error) {
		r, err := testenv.Request(hc, c.apiURL, testAPIKey, http.MethodPost, "/v1/jobs", body, "Idempotency-Key", key)
		return r.Status, r.Body, err
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				key := fmt.Sprintf("failover-%d", i)
				for {
					code, b, err := post(key)
					if err == nil && (code == http.StatusAccepted || code == http.StatusOK) {
						var j jobs.Job
						if err := jsonUnmarshal(b, &j); err != nil {
							errc <- err
							return
						}
						out[i].id, out[i].status, out[i].beforeKill = j.ID, code, !killed.Load()
						accepted.Add(1)
						break
					}
					what := "connection error"
					if err == nil {
						var e apiErr
						_ = jsonUnmarshal(b, &e)
						what = fmt.Sprintf("%d %s", code, e.Error.Code)
						if e.Error.Code == "not_replicated" {
							id, _, _ := strings.Cut(strings.TrimPrefix(e.Error.Message, "job "), " ")
							out[i].unsure = append(out[i].unsure, id)
						}
						if code != http.StatusServiceUnavailable {
							errc <- fmt.Errorf("POST %s: %d %s", key, code, b)
							return
						}
					}
					mu.Lock()
					failures[what]++
					mu.Unlock()
					if time.Now().After(deadline) {
						errc <- fmt.Errorf("POST %s: still failing at the deadline (%s)", key, what)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}

	// Kill the primary once a third of the jobs are in.
	for accepted.Load() < n/3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// Cut the replica off (it follows a port where nobody listens): what
	// the primary takes from now on, it alone holds. The API answers
	// not_replicated and the workers broadcast nothing meanwhile.
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer rc.Close()
	require.NoError(t, rc.Do(context.Background(), "REPLICAOF", "127.0.0.1", fmt.Sprint(testenv.FreePort(t))).Err())
	time.Sleep(1500 * time.Millisecond)
	// The sentinels may set it right already (they look every 10 s): then
	// this run loses nothing, which the test accepts as well.
	info, _ := rc.Info(context.Background(), "replication").Result()
	t.Logf("replica still cut off at the kill: %v", !strings.Contains(info, fmt.Sprintf("master_port:%d\r", primary.Port())))
	killed.Store(true)
	old := primary.Addr()
	primary.Kill()
	began := time.Now()
	promoted, err := sentinels.WaitPrimary(old, time.Minute)
	require.NoError(t, err)
	require.Equal(t, replica.Addr(), promoted, "the replica was promoted")
	t.Logf("sentinels promoted %s %v after the kill", promoted, time.Since(began).Round(time.Millisecond))
	// The old primary's machine comes back as a replica of the new primary,
	// and writes can be acknowledged again. (Not as an empty primary: until
	// the sentinels turned it into a replica, a second failover could
	// promote it — see docs/redis.md.)
	primary.RestartAsReplica(promoted)
	t.Logf("old primary back as a replica %v after the kill", time.Since(began).Round(time.Millisecond))

	wg.Wait()
	close(errc)
	for err := range errc {
		require.NoError(t, err)
	}
	t.Logf("retried answers during the run: %v", failures)
	require.EqualValues(t, n, accepted.Load())

	ids := make([]string, n)
	byID := map[string]int{}
	var before, answered202, recreated int
	for i, o := range out {
		for _, id := range o.unsure {
			if id != o.id {
				recreated++ // stored on the old primary only, and made again by the retry
				break
			}
		}
		ids[i] = o.id
		require.NotContains(t, byID, o.id, "keys %d and %d got the same job", byID[o.id], i)
		byID[o.id] = i
		if o.status == http.StatusAccepted {
			answered202++
			if o.beforeKill {
				before++
			}
		}
	}
	require.Greater(t, before, 0, "jobs were accepted before the kill")
	all := waitAllExplained(c, ids, 3*time.Minute)
	requireOncePerNonce(t, all, n)
	c.requireExecutedOnce(n, counter)
	t.Logf("%d jobs: %d answered 202 (%d before the kill), %d answered 200 to a retry, %d lost with the old primary after a not_replicated answer and made again by the retry; all confirmed once",
		n, answered202, before, n-answered202, recreated)
}

// With RELAYQ_REDIS_MIN_REPLICAS=1 and no replica, the worker signs and
// persists a job on the primary but never broadcasts it — neither its send
// task, nor the task's retries, nor the tracker's re-broadcast of "dropped"
// transactions, nor its fee bumps — because a failover could lose the
// write and the job be signed again at another nonce. Once a replica
// attaches, the persisted bytes go out and the job is confirmed once.
func TestWorkerBroadcastsOnlyReplicatedTransactions(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{worker: func(c *worker.Config) {
		c.StoreOptions = []jobs.Option{jobs.WithReplicas(1, 200*time.Millisecond)}
	}})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter.Hex()))
	got := s.waitFor("signed and persisted on the primary", func() { time.Sleep(25 * time.Millisecond) },
		func(j jobs.Job) bool { return j.Status == jobs.Submitted }, j.ID)
	require.NotEmpty(t, got.Raw)
	// Blocks come every 100 ms, so the tracker tries to re-broadcast after
	// 2 and to bump after 3; Asynq moves a task due for retry back to the
	// queue every 5 s, so within 7 s its retry tries to send too.
	ctx := context.Background()
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		pending, err := s.node.PendingNonceAt(ctx, s.signer)
		require.NoError(t, err)
		require.Zero(t, pending, "a transaction reached the node before any replica held it")
	}
	got = s.do(http.MethodGet, "/v1/jobs/"+j.ID, "").job(t)
	require.Equal(t, jobs.Submitted, got.Status)

	testenv.RedisReplica(t, s.redis, testenv.WithoutAOF())
	got = s.wait(j.ID, jobs.Confirmed)
	for _, a := range got.Attempts {
		require.EqualValues(t, 0, a.Nonce, "every signature of the job is at its one nonce")
	}
	require.EqualValues(t, 1, s.count(), "executed once")
	pending, err := s.node.PendingNonceAt(ctx, s.signer)
	require.NoError(t, err)
	require.EqualValues(t, 1, pending)
}

// waitAllExplained is cluster.waitAll, but a job that is gone fails the
// test at once, and a job still not terminal at the deadline is described
// (status, nonce, attempts, history) along with the signer's nonces on
// chain before the test fails.
func waitAllExplained(c *cluster, ids []string, within time.Duration) []jobs.Job {
	c.t.Helper()
	deadline := time.Now().Add(within)
	out := make([]jobs.Job, len(ids))
	for {
		var left []int
		for i, id := range ids {
			if out[i].Status.Terminal() {
				continue
			}
			code, b, err := c.request(http.MethodGet, "/v1/jobs/"+id, "")
			if err == nil && code == http.StatusOK {
				require.NoError(c.t, jsonUnmarshal(b, &out[i]))
			}
			if err == nil && code == http.StatusNotFound {
				c.t.Fatalf("job %s, accepted, is gone: %s", id, b)
			}
			if !out[i].Status.Terminal() {
				left = append(left, i)
			}
		}
		if len(left) == 0 {
			return out
		}
		if time.Now().After(deadline) {
			latest, pending := c.nonces()
			c.t.Logf("signer on chain: latest nonce %d, pending %d", latest, pending)
			for _, i := range left {
				j := out[i]
				nonce := "none"
				if j.Nonce != nil {
					nonce = fmt.Sprint(*j.Nonce)
				}
				c.t.Logf("job %s: status %q, nonce %s, %d attempts %+v, history %+v", ids[i], j.Status, nonce, len(j.Attempts), j.Attempts, j.History)
			}
			c.t.Fatalf("%d of %d jobs not terminal after %v", len(left), len(ids), within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
