package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/webhook"
)

const hookSecret = "test-webhook-secret-0123456789abcdef"

// hookBundle is a worker with only what webhooks need (no chain, no
// signers) on its own redis-server.
type hookBundle struct {
	redis *testenv.RedisServer
	rdb   *redis.Client
	w     *Worker
	store *jobs.Store
}

func hookSetup(t *testing.T, wh WebhookConfig, opts ...testenv.RedisOption) *hookBundle {
	t.Helper()
	rs := testenv.Redis(t, opts...)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	w := &Worker{
		cfg:       Config{Redis: rdb, Prefix: "relayq:", Webhook: wh, ShutdownTimeout: 5 * time.Second, Queues: tasks.DefaultQueues},
		store:     jobs.NewStore(rdb, "relayq:"),
		enqueuer:  asynq.NewClientFromRedisClient(rdb),
		inspector: asynq.NewInspectorFromRedisClient(rdb),
		log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return &hookBundle{redis: rs, rdb: rdb, w: w, store: w.store}
}

// hookedJob creates a job with a webhook and walks it through mined to
// confirmed; it returns its id.
func (b *hookBundle) hookedJob(t *testing.T, url string) string {
	t.Helper()
	return b.ownedHookedJob(t, url, "")
}

// ownedHookedJob is hookedJob for a job created by the API key named owner.
func (b *hookBundle) ownedHookedJob(t *testing.T, url, owner string) string {
	t.Helper()
	ctx := context.Background()
	j, _, err := b.store.Create(ctx, &jobs.Job{ChainID: 1, APIKey: owner, To: "0x00000000000000000000000000000000000000aa", Data: "0x", Value: "0", Confirmations: 1, BodyHash: "h", WebhookURL: url}, "")
	require.NoError(t, err)
	require.NoError(t, b.store.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Submitted, "signed", jobs.Fields{"nonce", 0, "tx_hash", "0x01"}, &jobs.Attempt{Hash: "0x01", Kind: jobs.KindOriginal}))
	require.NoError(t, b.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, "", jobs.Fields{"block_number", 9, "block_hash", "0xb9"}, nil))
	require.NoError(t, b.store.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Confirmed, "", nil, nil))
	return j.ID
}

// queued lists the delivery tasks waiting on the webhook queue, by id.
func (b *hookBundle) queued(t *testing.T) map[string]tasks.WebhookPayload {
	t.Helper()
	list, err := b.w.inspector.ListPendingTasks(tasks.QueueWebhooks, asynq.PageSize(1000))
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return map[string]tasks.WebhookPayload{}
	}
	require.NoError(t, err)
	out := map[string]tasks.WebhookPayload{}
	for _, ti := range list {
		require.Equal(t, tasks.TypeWebhookDeliver, ti.Type)
		p, err := tasks.ParseWebhookPayload(ti.Payload)
		require.NoError(t, err)
		require.Equal(t, ti.ID, p.EventID, "the event id is the TaskID")
		require.Equal(t, tasks.WebhookMaxRetry, ti.MaxRetry)
		require.Equal(t, tasks.WebhookRetention, ti.Retention)
		out[ti.ID] = p
	}
	return out
}

func (b *hookBundle) outboxLen(t *testing.T) int64 {
	t.Helper()
	n, err := b.store.OutboxLen(context.Background())
	require.NoError(t, err)
	return n
}

// The dispatcher turns each outbox event into one delivery task whose body
// is the job as it was at that event, then empties the outbox.
func TestDispatchHandsEachEventOverOnce(t *testing.T) {
	t.Parallel()
	b := hookSetup(t, WebhookConfig{}, testenv.WithoutAOF())
	ctx := context.Background()
	id := b.hookedJob(t, "https://example.com/hook")
	require.Equal(t, int64(2), b.outboxLen(t))

	n, err := b.w.DispatchWebhooks(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Zero(t, b.outboxLen(t))
	keys, err := b.rdb.Keys(ctx, "relayq:job:{"+id+"}:event:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "snapshots go with their outbox entries")

	q := b.queued(t)
	require.Len(t, q, 2)
	for evID, wantStatus := range map[string]jobs.Status{id + ".2": jobs.Mined, id + ".3": jobs.Confirmed} {
		p, ok := q[evID]
		require.True(t, ok, evID)
		require.Equal(t, id, p.JobID)
		require.Equal(t, "https://example.com/hook", p.URL)
		require.Equal(t, "job."+string(wantStatus), p.Type)
		var ev webhook.Event
		require.NoError(t, json.Unmarshal(p.Body, &ev))
		require.Equal(t, evID, ev.ID)
		require.Equal(t, p.Type, ev.Type)
		var j jobs.Job
		require.NoError(t, json.Unmarshal(ev.Job, &j))
		require.Equal(t, id, j.ID)
		require.Equal(t, wantStatus, j.Status, "the job as it was at the event, though it is confirmed now")
		require.Equal(t, j.History[len(j.History)-1].At, ev.CreatedAt)
		require.Equal(t, uint64(9), *j.BlockNumber)
	}

	// Nothing left: another pass hands nothing over.
	n, err = b.w.DispatchWebhooks(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.Len(t, b.queued(t), 2)
}

// A dispatcher that dies after enqueueing but before removing the event
// leaves it in the outbox; the next pass finds the task already there
// (ErrTaskIDConflict), counts it as done, and delivers nothing twice.
func TestDispatchAfterACrashBeforeRemoval(t *testing.T) {
	t.Parallel()
	b := hookSetup(t, WebhookConfig{}, testenv.WithoutAOF())
	ctx := context.Background()
	b.hookedJob(t, "https://example.com/hook")
	evs, err := b.store.Outbox(ctx, 10)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	// The half-done pass: enqueued, not removed.
	task, opts, err := webhookTask("", evs[0])
	require.NoError(t, err)
	_, err = b.w.enqueuer.EnqueueContext(ctx, task, opts...)
	require.NoError(t, err)
	first := b.queued(t)[evs[0].ID]

	n, err := b.w.DispatchWebhooks(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Zero(t, b.outboxLen(t))
	q := b.queued(t)
	require.Len(t, q, 2)
	require.Equal(t, first.Body, q[evs[0].ID].Body, "the queued task was kept, not replaced")
}

// Two dispatchers (two worker processes) draining the same outbox enqueue
// each event once.
func TestConcurrentDispatchersEnqueueOnce(t *testing.T) {
	t.Parallel()
	b := hookSetup(t, WebhookConfig{}, testenv.WithoutAOF())
	ctx := context.Background()
	for range 20 {
		b.hookedJob(t, "https://example.com/hook")
	}
	other := &Worker{cfg: b.w.cfg, store: jobs.NewStore(b.rdb, "relayq:"), enqueuer: asynq.NewClientFromRedisClient(b.rdb), log: b.w.log}
	var wg sync.WaitGroup
	for _, w := range []*Worker{b.w, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := w.DispatchWebhooks(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Zero(t, b.outboxLen(t))
	require.Len(t, b.queued(t), 40)
}

// An entry that cannot be built is dropped (and logged), not retried
// forever in front of the good ones.
func TestDispatchDropsCorruptEvents(t *testing.T) {
	t.Parallel()
	b := hookSetup(t, WebhookConfig{}, testenv.WithoutAOF())
	ctx := context.Background()
	require.NoError(t, b.rdb.ZAdd(ctx, "relayq:webhooks:outbox", redis.Z{Score: 0, Member: "garbage"}).Err())
	id := b.hookedJob(t, "https://example.com/hook")
	n, err := b.w.DispatchWebhooks(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	require.Zero(t, b.outboxLen(t))
	q := b.queued(t)
	require.Len(t, q, 2)
	require.Contains(t, q, id+".2")
}

// With Redis down the dispatcher reports the error and loses nothing: the
// events wait in the outbox (append-only file) and go out once it is back.
func TestDispatchSurvivesARedisOutage(t *testing.T) {
	t.Parallel()
	b := hookSetup(t, WebhookConfig{})
	ctx := context.Background()
	id := b.hookedJob(t, "https://example.com/hook")
	b.redis.Kill()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := b.w.DispatchWebhooks(cctx)
	cancel()
	require.Error(t, err)
	b.redis.Restart()
	require.Equal(t, int64(2), b.outboxLen(t))
	n, err := b.w.DispatchWebhooks(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	q := b.queued(t)
	require.Contains(t, q, id+".2")
	require.Contains(t, q, id+".3")
}

// receiver is a webhook endpoint on 127.0.0.1 answering with status, which
// records the bodies whose signature verified.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	bodies [][]byte
	bad    int
}

func newReceiver(t *testing.T, status int) *receiver {
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if webhook.Verify(hookSecret, req.Header.Get(webhook.SignatureHeader), body, time.Minute) != nil {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.bodies = append(r.bodies, body)
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) got() (ok [][]byte, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...), r.bad
}

var allowLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// One delivery attempt per case, through the handler, with its outcome on
// the job.
func TestHandleWebhookTask(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		cfg        WebhookConfig
		answer     int
		wantStatus string
		skipRetry  bool
		wantErr    string
	}{
		{"delivered", WebhookConfig{Secret: hookSecret, Allow: allowLoopback}, http.StatusOK, jobs.WebhookDelivered, false, ""},
		{"receiver fails: retried", WebhookConfig{Secret: hookSecret, Allow: allowLoopback}, http.StatusServiceUnavailable, jobs.WebhookFailed, false, "receiver answered 503"},
		{"redirect: not followed, retried", WebhookConfig{Secret: hookSecret, Allow: allowLoopback}, http.StatusFound, jobs.WebhookFailed, false, "receiver answered 302"},
		{"loopback not allowed: refused, not retried", WebhookConfig{Secret: hookSecret}, http.StatusOK, jobs.WebhookRefused, true, "is loopback: refused"},
		{"no secret on this worker", WebhookConfig{Allow: allowLoopback}, http.StatusOK, jobs.WebhookFailed, false, "RELAYQ_WEBHOOK_SECRET is not set"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := hookSetup(t, c.cfg, testenv.WithoutAOF())
			ctx := context.Background()
			rcv := newReceiver(t, c.answer)
			id := b.hookedJob(t, rcv.URL+"/hook")
			evs, err := b.store.Outbox(ctx, 1)
			require.NoError(t, err)
			task, _, err := webhookTask("", evs[0])
			require.NoError(t, err)
			p, err := tasks.ParseWebhookPayload(task.Payload())
			require.NoError(t, err)

			err = b.w.HandleWebhookTask(ctx, task)
			if c.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, c.wantErr)
				require.Equal(t, c.skipRetry, errors.Is(err, asynq.SkipRetry))
			}
			ok, bad := rcv.got()
			require.Zero(t, bad, "every signature verifies")
			switch {
			case c.wantStatus == jobs.WebhookRefused || c.cfg.Secret == "":
				require.Empty(t, ok, "the receiver saw nothing")
			default:
				require.Len(t, ok, 1)
				require.Equal(t, p.Body, ok[0], "the body is the payload's, byte for byte")
			}
			j, err := b.store.Get(ctx, id)
			require.NoError(t, err)
			require.NotNil(t, j.Webhook)
			require.Equal(t, c.wantStatus, j.Webhook.LastStatus)
			require.Equal(t, id+".2", j.Webhook.LastEvent)
			require.Equal(t, webhook.EventMined, j.Webhook.LastType)
			require.Contains(t, j.Webhook.LastError, c.wantErr)
			if c.wantStatus == jobs.WebhookDelivered {
				require.Equal(t, int64(1), j.Webhook.Deliveries)
			} else {
				require.Equal(t, int64(1), j.Webhook.Failures)
			}
		})
	}
}

func TestWebhookRetrySchedule(t *testing.T) {
	t.Parallel()
	require.Len(t, webhookBackoff, tasks.WebhookMaxRetry, "one wait per retry")
	require.True(t, sort.SliceIsSorted(webhookBackoff, func(i, j int) bool { return webhookBackoff[i] < webhookBackoff[j] }))
	var total time.Duration
	for _, d := range webhookBackoff {
		total += d
	}
	require.Greater(t, total, 4*time.Hour, "a receiver down for an afternoon still gets its events")
	require.Less(t, total, 12*time.Hour)
	for n := -1; n < tasks.WebhookMaxRetry+3; n++ {
		base := webhookBackoff[max(0, min(n, len(webhookBackoff)-1))]
		d := WebhookRetryDelay(n)
		require.GreaterOrEqual(t, d, base*3/4, n)
		require.LessOrEqual(t, d, base*5/4, n)
	}
}

func TestEventType(t *testing.T) {
	t.Parallel()
	for c, want := range map[[2]jobs.Status]string{
		{jobs.Submitted, jobs.Mined}:     webhook.EventMined,
		{jobs.Mined, jobs.Confirmed}:     webhook.EventConfirmed,
		{jobs.Queued, jobs.Failed}:       webhook.EventFailed,
		{jobs.Mined, jobs.Failed}:        webhook.EventFailed,
		{jobs.Submitted, jobs.Cancelled}: webhook.EventCancelled,
		{jobs.Mined, jobs.Submitted}:     webhook.EventReorged,
	} {
		require.Equal(t, want, eventType(jobs.Change{From: c[0], To: c[1]}), "%s → %s", c[0], c[1])
	}
}

// A receiver that never recovers gets every attempt (the same bytes each
// time), then the task is archived and the job says the retries ran out.
func TestWebhookGivesUpAfterTheLastRetry(t *testing.T) {
	t.Parallel()
	b := hookSetup(t, WebhookConfig{Secret: hookSecret, Allow: allowLoopback, Poll: 50 * time.Millisecond,
		RetryDelay: func(int) time.Duration { return 0 }}, testenv.WithoutAOF())
	rcv := newReceiver(t, http.StatusBadGateway)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.w.runWebhooks(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	j, _, err := b.store.Create(ctx, &jobs.Job{ChainID: 1, To: "0x00000000000000000000000000000000000000aa", Data: "0x", Value: "0", Confirmations: 1, BodyHash: "h", WebhookURL: rcv.URL}, "")
	require.NoError(t, err)
	require.NoError(t, b.store.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Cancelled, "cancelled by request", nil, nil))
	evID := j.ID + ".1"

	deadline := time.Now().Add(90 * time.Second)
	var info *asynq.TaskInfo
	for {
		info, err = b.w.inspector.GetTaskInfo(tasks.QueueWebhooks, evID)
		if err == nil && info.State == asynq.TaskStateArchived {
			break
		}
		require.True(t, time.Now().Before(deadline), "task not archived: %+v %v", info, err)
		time.Sleep(100 * time.Millisecond)
	}
	require.Contains(t, info.LastErr, "receiver answered 502")
	ok, bad := rcv.got()
	require.Zero(t, bad)
	require.Len(t, ok, tasks.WebhookMaxRetry+1, "one attempt and every retry")
	for _, body := range ok {
		require.Equal(t, ok[0], body)
	}
	got := func() *jobs.Job {
		g, err := b.store.Get(ctx, j.ID)
		require.NoError(t, err)
		return g
	}
	require.Eventually(t, func() bool { return got().Webhook.Failures == int64(tasks.WebhookMaxRetry+1) }, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, jobs.WebhookFailed, got().Webhook.LastStatus)
	require.Contains(t, got().Webhook.LastError, fmt.Sprintf("gave up after %d attempts: ", tasks.WebhookMaxRetry+1))
}

// The events of a job are signed with its API key's own secret when the key
// has one, else with the deployment's: a key cannot get events signed with
// another receiver's secret. The receiver here checks the deployment's.
func TestWebhookSignedWithTheJobsKeySecret(t *testing.T) {
	t.Parallel()
	const mallorySecret = "mallory-secret-0123456789abcdef0123456789"
	cases := []struct {
		owner      string
		wantStatus string
		wantBad    int
	}{
		{owner: "", wantStatus: jobs.WebhookDelivered},                 // no key: the deployment's secret
		{owner: "alice", wantStatus: jobs.WebhookDelivered},            // a key without a secret of its own: the deployment's
		{owner: "mallory", wantStatus: jobs.WebhookFailed, wantBad: 1}, // mallory's own secret: the receiver refuses it
	}
	for _, c := range cases {
		t.Run("owner="+c.owner, func(t *testing.T) {
			t.Parallel()
			b := hookSetup(t, WebhookConfig{Secret: hookSecret, Secrets: map[string]string{"mallory": mallorySecret}, Allow: allowLoopback}, testenv.WithoutAOF())
			ctx := context.Background()
			rcv := newReceiver(t, http.StatusOK)
			id := b.ownedHookedJob(t, rcv.URL+"/hook", c.owner)
			evs, err := b.store.Outbox(ctx, 1)
			require.NoError(t, err)
			task, _, err := webhookTask("", evs[0])
			require.NoError(t, err)
			p, err := tasks.ParseWebhookPayload(task.Payload())
			require.NoError(t, err)
			require.Equal(t, c.owner, p.APIKey)
			err = b.w.HandleWebhookTask(ctx, task)
			_, bad := rcv.got()
			require.Equal(t, c.wantBad, bad)
			if c.wantBad > 0 {
				require.ErrorContains(t, err, "receiver answered 401")
			} else {
				require.NoError(t, err)
			}
			j, err := b.store.Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, c.wantStatus, j.Webhook.LastStatus)
			require.NotContains(t, j.Webhook.LastError, mallorySecret)
		})
	}
}
