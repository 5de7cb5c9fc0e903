package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/api"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/webhook"
	"github.com/relayq/relayq/worker"
)

const hookSecret = "integration-webhook-secret-0123456789abcdef"

var hookLoopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

type hookOptions struct {
	workerAllow []netip.Prefix // the worker's allow-list (the one that counts)
	apiAllow    []netip.Prefix // the API's, for the accept-time check
	noWorkerRun bool
	anvilArgs   []string
	timeout     time.Duration // of one delivery attempt
}

// newHookStack is a stack whose API accepts webhook_url and whose worker
// delivers, retrying after 200 ms instead of 10 s so tests stay short.
func newHookStack(t *testing.T, o hookOptions) *stack {
	t.Helper()
	s := newStack(t, stackOptions{noWorkerRun: o.noWorkerRun, anvilArgs: o.anvilArgs, worker: func(c *worker.Config) {
		c.Webhook = worker.WebhookConfig{
			Secret: hookSecret, Allow: o.workerAllow, Timeout: o.timeout,
			RetryDelay: func(int) time.Duration { return 200 * time.Millisecond },
		}
	}})
	hookAPI(t, s, hookSecret, o.apiAllow)
	return s
}

// hookAPI replaces the stack's API with one configured for webhooks.
func hookAPI(t *testing.T, s *stack, secret string, allow []netip.Prefix) {
	t.Helper()
	srv, err := api.New(context.Background(), api.Config{
		Redis: s.rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: s.redis.Addr()}, APIKeys: []string{testAPIKey},
		Chains:        []api.Chain{{Name: api.DefaultChainName, Prefix: "relayq:", Node: s.node, Confirmations: 1}},
		Log:           testLogger(t),
		WebhookSecret: secret, WebhookAllow: allow,
	})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	s.api = httptest.NewServer(srv.Handler())
	t.Cleanup(s.api.Close)
}

// hookReceiver is a webhook endpoint on 127.0.0.1. It verifies every
// signature, records every attempt per event id, and answers as fault says
// for the n-th attempt (1-based) at an event.
type hookReceiver struct {
	*httptest.Server
	t     *testing.T
	fault func(evType string, attempt int) string // "ok", "500" or "close"

	mu       sync.Mutex
	attempts map[string][]hookAttempt
	badSigs  []string
}

type hookAttempt struct {
	body    []byte
	typ     string // Relayq-Event-Type
	outcome string
}

func newHookReceiver(t *testing.T, fault func(evType string, attempt int) string) *hookReceiver {
	r := &hookReceiver{t: t, fault: fault, attempts: map[string][]hookAttempt{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	id, typ := req.Header.Get(webhook.EventIDHeader), req.Header.Get(webhook.EventTypeHeader)
	r.mu.Lock()
	if err := webhook.Verify(hookSecret, req.Header.Get(webhook.SignatureHeader), body, 5*time.Minute); err != nil {
		r.badSigs = append(r.badSigs, id+": "+err.Error())
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	outcome := "ok"
	if r.fault != nil {
		outcome = r.fault(typ, len(r.attempts[id])+1)
	}
	r.attempts[id] = append(r.attempts[id], hookAttempt{body: body, typ: typ, outcome: outcome})
	r.mu.Unlock()
	switch outcome {
	case "500":
		http.Error(w, "injected failure", http.StatusInternalServerError)
	case "close":
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// delivered returns, per event id, how many attempts were answered 2xx.
func (r *hookReceiver) delivered() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for id, as := range r.attempts {
		for _, a := range as {
			if a.outcome == "ok" {
				out[id]++
			}
		}
	}
	return out
}

func (r *hookReceiver) snapshot() (map[string][]hookAttempt, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string][]hookAttempt{}
	for id, as := range r.attempts {
		m[id] = append([]hookAttempt(nil), as...)
	}
	return m, append([]string(nil), r.badSigs...)
}

// expectedEvents lists the events a job's history must have fired: each
// arrival at mined, confirmed, failed or cancelled, and each reorg.
func expectedEvents(j jobs.Job) map[string]string {
	out := map[string]string{}
	for i, c := range j.History {
		switch {
		case c.From == jobs.Mined && c.To == jobs.Submitted:
			out[fmt.Sprintf("%s.%d", j.ID, i)] = webhook.EventReorged
		case c.To == jobs.Mined || c.To == jobs.Confirmed || c.To == jobs.Failed || c.To == jobs.Cancelled:
			out[fmt.Sprintf("%s.%d", j.ID, i)] = "job." + string(c.To)
		}
	}
	return out
}

// waitDelivered waits (bounded) until every expected event was answered 2xx
// and each job's webhook state counts all of its events delivered.
func waitDelivered(t *testing.T, s *stack, r *hookReceiver, want map[string]string, ids []string) {
	t.Helper()
	perJob := map[string]int64{}
	for id := range want {
		perJob[id[:strings.LastIndexByte(id, '.')]]++
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		done := true
		got := r.delivered()
		for id := range want {
			if got[id] == 0 {
				done = false
			}
		}
		for _, id := range ids {
			j, err := s.store.Get(context.Background(), id)
			require.NoError(t, err)
			if perJob[id] > 0 && (j.Webhook == nil || j.Webhook.Deliveries < perJob[id]) {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			a, _ := r.snapshot()
			t.Fatalf("events not all delivered: want %v, attempts so far %d", want, len(a))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkEvents asserts what the receiver saw: exactly the expected event ids,
// each answered 2xx once, with identical bytes on every attempt, a body
// that agrees with its headers, and the job as it was at that event.
func checkEvents(t *testing.T, r *hookReceiver, want map[string]string) map[string][]hookAttempt {
	t.Helper()
	got, bad := r.snapshot()
	require.Empty(t, bad, "every delivery's signature verifies")
	require.Equal(t, sortedKeys(want), sortedKeys(got), "the receiver saw exactly the expected events")
	for id, as := range got {
		oks := 0
		for i, a := range as {
			require.Equal(t, as[0].body, a.body, "event %s: attempt %d sent other bytes", id, i+1)
			require.Equal(t, want[id], a.typ)
			if a.outcome == "ok" {
				oks++
			}
		}
		require.Equal(t, 1, oks, "event %s was delivered more than once: %d", id, oks)
		var ev webhook.Event
		require.NoError(t, json.Unmarshal(as[0].body, &ev))
		require.Equal(t, id, ev.ID)
		require.Equal(t, want[id], ev.Type)
		var j jobs.Job
		require.NoError(t, json.Unmarshal(ev.Job, &j))
		require.Equal(t, id, fmt.Sprintf("%s.%d", j.ID, len(j.History)-1), "the job's history ends at the event")
		last := j.History[len(j.History)-1]
		require.Equal(t, last.To, j.Status, "the job as it was at the event")
		require.Equal(t, last.At, ev.CreatedAt)
		if want[id] != webhook.EventReorged {
			require.Equal(t, "job."+string(j.Status), ev.Type)
		}
	}
	return got
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The test: a receiver on 127.0.0.1 that fails the first attempt at
// every event (and drops the connection on the second attempt at mined
// events) still sees every event, each exactly once per id, signed, with
// the same bytes every time; the jobs show their deliveries.
func TestWebhookDeliversEveryEventOnceDespiteReceiverFailures(t *testing.T) {
	t.Parallel()
	s := newHookStack(t, hookOptions{workerAllow: hookLoopback, apiAllow: hookLoopback, noWorkerRun: true})
	rcv := newHookReceiver(t, func(typ string, attempt int) string {
		switch {
		case attempt == 1:
			return "500"
		case attempt == 2 && typ == webhook.EventMined:
			return "close"
		}
		return "ok"
	})
	hook := fmt.Sprintf(`,"webhook_url":%q`, rcv.URL+"/relayq?token=abc")

	// Cancelled while no worker runs: the event waits in the outbox.
	c := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"%s}`, s.counter, hook))
	r := s.do(http.MethodPost, "/v1/jobs/"+c.ID+"/cancel", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, rcv.URL+"/relayq?token=abc", r.job(t).WebhookURL)
	n, err := s.store.OutboxLen(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	s.runWorker()

	ok1 := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"%s}`, s.counter, hook))
	ok2 := s.submit(fmt.Sprintf(`{"to":%q,"function":"add(uint256)","args":["5"],"confirmations":2%s}`, s.counter, hook))
	onChain := s.submit(fmt.Sprintf(`{"to":%q,"function":"fail(string)","args":["on chain"],"gas_limit":100000%s}`, s.counter, hook))
	atEstimate := s.submit(fmt.Sprintf(`{"to":%q,"function":"fail(string)","args":["at estimate"]%s}`, s.counter, hook))
	plain := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))

	final := []jobs.Job{
		s.wait(c.ID, jobs.Cancelled),
		s.wait(ok1.ID, jobs.Confirmed),
		s.wait(ok2.ID, jobs.Confirmed),
		s.wait(onChain.ID, jobs.Failed),
		s.wait(atEstimate.ID, jobs.Failed),
	}
	s.wait(plain.ID, jobs.Confirmed)
	want := map[string]string{}
	ids := []string{}
	for _, j := range final {
		for id, typ := range expectedEvents(j) {
			want[id] = typ
		}
		ids = append(ids, j.ID)
	}
	// mined + confirmed twice, mined + failed (reverted on chain: mined
	// first, failed once deep), failed at estimate, cancelled.
	require.Len(t, want, 8)
	waitDelivered(t, s, rcv, want, ids)
	got := checkEvents(t, rcv, want)
	for id, as := range got {
		if want[id] == webhook.EventMined {
			require.Len(t, as, 3, "500, dropped connection, delivered")
		} else {
			require.Len(t, as, 2, "500, delivered")
		}
	}

	// The job shows its deliveries; a job without a webhook shows none.
	for _, j := range final {
		r := s.do(http.MethodGet, "/v1/jobs/"+j.ID, "")
		got := r.job(t)
		events := int64(len(expectedEvents(got)))
		require.NotNil(t, got.Webhook, string(r.Body))
		require.Equal(t, events, got.Webhook.Deliveries, string(r.Body))
		require.GreaterOrEqual(t, got.Webhook.Failures, events, "each event's first attempt failed")
		require.Equal(t, jobs.WebhookDelivered, got.Webhook.LastStatus, string(r.Body))
		require.Empty(t, got.Webhook.LastError)
	}
	p := s.do(http.MethodGet, "/v1/jobs/"+plain.ID, "").job(t)
	require.Nil(t, p.Webhook)
	require.Empty(t, p.WebhookURL)
	n, err = s.store.OutboxLen(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "the outbox is drained")
}

// A reorg's step back fires job.reorged, and the job's second mining its
// own job.mined: each transition is its own event.
func TestWebhookReportsAReorg(t *testing.T) {
	t.Parallel()
	s := newHookStack(t, hookOptions{workerAllow: hookLoopback, apiAllow: hookLoopback, anvilArgs: []string{"--no-mining"}})
	rcv := newHookReceiver(t, nil)
	var snap string
	require.NoError(t, json.Unmarshal(s.anvil.RPC(t, "evm_snapshot"), &snap))
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","confirmations":3,"webhook_url":%q}`, s.counter, rcv.URL))
	s.waitFor("submitted", nil, status(jobs.Submitted), j.ID)
	s.waitFor("mined", s.mine, status(jobs.Mined), j.ID)
	var reverted bool
	require.NoError(t, json.Unmarshal(s.anvil.RPC(t, "evm_revert", snap), &reverted))
	require.True(t, reverted)
	done := s.waitFor("confirmed", s.mine, status(jobs.Confirmed), j.ID)

	want := expectedEvents(done)
	var types []string
	for _, id := range sortedKeys(want) {
		types = append(types, want[id])
	}
	require.Contains(t, types, webhook.EventReorged)
	waitDelivered(t, s, rcv, want, []string{j.ID})
	got := checkEvents(t, rcv, want)
	for id, typ := range want {
		var ev webhook.Event
		require.NoError(t, json.Unmarshal(got[id][0].body, &ev))
		var at jobs.Job
		require.NoError(t, json.Unmarshal(ev.Job, &at))
		if typ == webhook.EventReorged {
			require.Equal(t, jobs.Submitted, at.Status)
			require.Nil(t, at.BlockNumber, "the reorged job has no block")
		}
	}
}

// SSRF: the API refuses, at accept time, URLs that name an internal
// address; a host name that passed there but resolves to one at delivery
// (here: the worker, unlike the API, does not allow loopback, as after DNS
// rebinding) is refused at connect time, and the receiver sees nothing.
func TestWebhookRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{worker: func(c *worker.Config) {
		c.Webhook = worker.WebhookConfig{Secret: hookSecret} // no allow-list
	}})
	rcv := newHookReceiver(t, nil)
	body := func(url string) string {
		return fmt.Sprintf(`{"to":%q,"function":"increment()","webhook_url":%q}`, s.counter, url)
	}

	// Without a secret the API takes no webhook_url at all.
	r := s.do(http.MethodPost, "/v1/jobs", body("https://example.com/hook"))
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "webhooks_disabled", r.err(t).Error.Code)
	require.Equal(t, "webhook_url", r.err(t).Error.Field)

	hookAPI(t, s, hookSecret, nil)
	for url, code := range map[string]string{
		rcv.URL:                           "refused_address",
		"http://localhost:8080/hook":      "refused_address",
		"http://169.254.169.254/latest/":  "refused_address",
		"http://[fd00:ec2::254]/":         "refused_address",
		"http://10.0.0.1/hook":            "refused_address",
		"http://2130706433/hook":          "invalid_url",
		"ftp://example.com/hook":          "invalid_url",
		"http://user:pw@example.com/hook": "invalid_url",
		"example.com/hook":                "invalid_url",
		"":                                "invalid_url",
		"https://example.com/" + strings.Repeat("a", 2100): "invalid_url",
	} {
		r := s.do(http.MethodPost, "/v1/jobs", body(url))
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", url, r.Body)
		e := r.err(t)
		require.Equal(t, code, e.Error.Code, "%s: %s", url, e.Error.Message)
		require.Equal(t, "webhook_url", e.Error.Field)
	}
	r = s.do(http.MethodPost, "/v1/jobs", `{"to":"`+s.counter.Hex()+`","webhook_url":5}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "invalid_type", r.err(t).Error.Code)
	n, err := s.rdb.ZCard(context.Background(), "relayq:jobs:all").Result()
	require.NoError(t, err)
	require.Zero(t, n, "a refused request stores no job")

	// Accepted (the API's view allows it), refused where it counts.
	hookAPI(t, s, hookSecret, hookLoopback)
	j := s.submit(body(rcv.URL + "/hook"))
	done := s.wait(j.ID, jobs.Confirmed)
	want := expectedEvents(done)
	require.Len(t, want, 2)
	got := s.waitFor("refusals recorded", nil, func(j jobs.Job) bool { return j.Webhook != nil && j.Webhook.Failures == 2 }, j.ID)
	require.Equal(t, jobs.WebhookRefused, got.Webhook.LastStatus)
	require.Contains(t, got.Webhook.LastError, "127.0.0.1 is loopback: refused")
	require.Zero(t, got.Webhook.Deliveries)
	// Refusals are not retried: the monitor shows the tasks archived, with why.
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	for id := range want {
		info := waitTask(t, insp, id, func(ti *asynq.TaskInfo) bool { return ti.State == asynq.TaskStateArchived })
		require.Contains(t, info.LastErr, "loopback: refused")
		require.Zero(t, info.Retried)
	}
	attempts, _ := rcv.snapshot()
	require.Empty(t, attempts, "the receiver saw nothing")
}

// A 302 is an answer, not an instruction: the other URL is never asked, and
// the delivery fails (and will be retried) with the reason in the job and
// in the monitor.
func TestWebhookRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	s := newHookStack(t, hookOptions{workerAllow: hookLoopback, apiAllow: hookLoopback})
	target := newHookReceiver(t, nil)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/elsewhere", http.StatusFound)
	}))
	t.Cleanup(redirector.Close)

	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","webhook_url":%q}`, s.counter, redirector.URL))
	done := s.wait(j.ID, jobs.Confirmed)
	got := s.waitFor("a failed delivery", nil, func(j jobs.Job) bool { return j.Webhook != nil && j.Webhook.Failures >= 2 }, j.ID)
	require.Equal(t, jobs.WebhookFailed, got.Webhook.LastStatus)
	require.Contains(t, got.Webhook.LastError, "receiver answered 302")
	require.Contains(t, got.Webhook.LastError, "redirects are not followed")
	require.Zero(t, got.Webhook.Deliveries)
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	for id := range expectedEvents(done) {
		info := waitTask(t, insp, id, func(ti *asynq.TaskInfo) bool { return ti.LastErr != "" })
		require.Contains(t, info.LastErr, "302")
		require.NotEqual(t, asynq.TaskStateArchived, info.State, "a redirect is retried")
	}
	attempts, _ := target.snapshot()
	require.Empty(t, attempts, "the redirect's target was never asked")
}

// Deliveries have handlers of their own: receivers that hang on every
// delivery do not stop new jobs from being sent and confirmed.
func TestWebhookHangingReceiverDoesNotStarveSends(t *testing.T) {
	t.Parallel()
	s := newHookStack(t, hookOptions{workerAllow: hookLoopback, apiAllow: hookLoopback, timeout: 5 * time.Minute})
	release := make(chan struct{})
	var mu sync.Mutex
	hung := 0
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hung++
		mu.Unlock()
		<-release
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) }) // runs first: lets the server close

	// More events than the stack has send handlers (8), all hanging.
	var first []string
	for range 6 {
		first = append(first, s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","webhook_url":%q}`, s.counter, hang.URL)).ID)
	}
	for _, id := range first {
		s.wait(id, jobs.Confirmed)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := hung
		mu.Unlock()
		if n >= 8 {
			break
		}
		require.True(t, time.Now().Before(deadline), "deliveries never reached the receiver (%d)", n)
		time.Sleep(50 * time.Millisecond)
	}
	// Sends go on.
	for range 10 {
		j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
		s.wait(j.ID, jobs.Confirmed)
	}
}

// waitTask waits (bounded) until the delivery task of an event is in a
// state cond accepts, and returns it.
func waitTask(t *testing.T, insp *asynq.Inspector, id string, cond func(*asynq.TaskInfo) bool) *asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		info, err := insp.GetTaskInfo(tasks.QueueWebhooks, id)
		if err == nil && cond(info) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: %+v, %v", id, info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The webhook URL is part of what an Idempotency-Key stands for.
func TestWebhookURLIsPartOfTheIdempotencyKey(t *testing.T) {
	t.Parallel()
	s := newHookStack(t, hookOptions{noWorkerRun: true})
	body := func(url string) string {
		return fmt.Sprintf(`{"to":%q,"function":"increment()","webhook_url":%q}`, s.counter, url)
	}
	first := s.submit(body("https://example.com/a"), "Idempotency-Key", "k1")
	require.Equal(t, "https://example.com/a", first.WebhookURL)
	r := s.do(http.MethodPost, "/v1/jobs", body("https://example.com/a"), "Idempotency-Key", "k1")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, first.ID, r.job(t).ID)
	r = s.do(http.MethodPost, "/v1/jobs", body("https://example.com/b"), "Idempotency-Key", "k1")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Equal(t, "idempotency_reuse", r.err(t).Error.Code)
	r = s.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter), "Idempotency-Key", "k1")
	require.Equal(t, http.StatusConflict, r.Status, "without the URL it is another request")
}
