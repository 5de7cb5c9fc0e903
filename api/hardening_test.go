package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/tasks"
)

const (
	testKey  = "test-key-0123456789abcdef"
	otherKey = "other-key-0123456789abcdef"
	// testCounter is any contract address: accepting a job does not look
	// at the chain.
	testCounter = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
)

// bundle is one API on its own redis-server and simulated chain.
type bundle struct {
	t     *testing.T
	cfg   Config
	srv   *Server
	http  *httptest.Server
	redis *testenv.RedisServer
	rdb   *redis.Client
	chain *devchain.Chain
	store *jobs.Store
	logs  *logBuffer
	// signer is the configured signer (the chain's first funded key).
	signer common.Address
}

// setup starts an API with the test key, adjusted by opts.
func setup(t *testing.T, opts ...func(*Config)) *bundle {
	t.Helper()
	b := &bundle{t: t, redis: testenv.Redis(t, testenv.WithoutAOF()), logs: &logBuffer{}}
	b.rdb = redis.NewClient(&redis.Options{Addr: b.redis.Addr()})
	t.Cleanup(func() { b.rdb.Close() })
	chain, err := devchain.Start(devchain.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { chain.Close() })
	b.chain = chain
	b.signer = crypto.PubkeyToAddress(chain.Keys()[0].PublicKey)
	b.cfg = Config{
		Redis: b.rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: b.redis.Addr()}, APIKeys: []string{testKey},
		Chains:  []Chain{{Name: DefaultChainName, Prefix: "relayq:", Node: chain.Client(), Signers: []common.Address{b.signer}, Confirmations: 1}},
		Log:     slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: metrics.New(),
	}
	for _, o := range opts {
		o(&b.cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.srv, err = New(ctx, b.cfg)
	require.NoError(t, err)
	t.Cleanup(func() { b.srv.Close() })
	b.http = httptest.NewServer(b.srv.Handler())
	t.Cleanup(b.http.Close)
	b.store = jobs.NewStore(b.rdb, "relayq:")
	return b
}

// withNode is c with its one chain's node replaced: a copy, so that the
// bundle's own Config keeps its node.
func withNode(c Config, n Node) Config {
	c.Chains = slices.Clone(c.Chains)
	c.Chains[0].Node = n
	return c
}

// response is an API answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// apiErr is the error body.
type apiErr struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Field     string `json:"field"`
	RequestID string `json:"request_id"`
}

func (r response) err(t *testing.T) apiErr {
	t.Helper()
	var e struct {
		Error apiErr `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &e), string(r.Body))
	require.NotEmpty(t, e.Error.Code, string(r.Body))
	require.NotEmpty(t, e.Error.Message, string(r.Body))
	return e.Error
}

func (r response) job(t *testing.T) jobs.Job {
	t.Helper()
	var j jobs.Job
	require.NoError(t, json.Unmarshal(r.Body, &j), string(r.Body))
	return j
}

// do sends a request with the test key; headers are name, value pairs
// that override it ("" removes a header).
func (b *bundle) do(method, path, body string, headers ...string) response {
	b.t.Helper()
	r, err := testenv.Request(nil, b.http.URL, testKey, method, path, body, headers...)
	require.NoError(b.t, err)
	return response(r)
}

func (b *bundle) send(req *http.Request, jsonBody bool, headers ...string) response {
	b.t.Helper()
	r, err := testenv.Send(nil, req, testKey, jsonBody, headers...)
	require.NoError(b.t, err)
	return response(r)
}

// jobCount is how many jobs Redis holds.
func (b *bundle) jobCount() int64 {
	b.t.Helper()
	n, err := b.rdb.ZCard(context.Background(), "relayq:jobs:all").Result()
	require.NoError(b.t, err)
	return n
}

// logBuffer collects JSON log lines; safe for the server's goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines parses every log line, failing on one that is not a JSON object.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "log line is not JSON: %s", sc.Text())
		out = append(out, m)
	}
	return out
}

// requestLines are the request log lines with this request id. The line is
// written after the response, so it may lag the client a little.
func (l *logBuffer) requestLines(t *testing.T, id string) []map[string]any {
	t.Helper()
	var found []map[string]any
	for range 200 {
		found = found[:0]
		for _, m := range l.lines(t) {
			if m["msg"] == "request" && m["request_id"] == id {
				found = append(found, m)
			}
		}
		if len(found) > 0 {
			return found
		}
		time.Sleep(10 * time.Millisecond)
	}
	return found
}

// Every response carries an X-Request-ID; an error body repeats it, and so
// does the request's log line. A caller's printable id is kept; an
// oversized or unprintable one is replaced.
func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodGet, "/v1/jobs/nope", "")
	require.Equal(t, http.StatusNotFound, r.Status)
	id := r.Header.Get(echo.HeaderXRequestID)
	require.NotEmpty(t, id)
	require.Equal(t, id, r.err(t).RequestID)
	require.Len(t, b.logs.requestLines(t, id), 1)

	r = b.do(http.MethodGet, "/v1/jobs/nope", "", echo.HeaderXRequestID, "trace-42")
	require.Equal(t, "trace-42", r.Header.Get(echo.HeaderXRequestID))
	require.Equal(t, "trace-42", r.err(t).RequestID)

	for _, bad := range []string{strings.Repeat("x", maxRequestID+1), "a b", "caf\u00e9"} {
		r = b.do(http.MethodGet, "/v1/jobs/nope", "", echo.HeaderXRequestID, bad)
		got := r.Header.Get(echo.HeaderXRequestID)
		require.NotEqual(t, bad, got)
		require.True(t, printableID(got), got)
		require.Equal(t, got, r.err(t).RequestID)
	}

	r = b.do(http.MethodGet, "/healthz", "")
	require.NotEmpty(t, r.Header.Get(echo.HeaderXRequestID))
}

// A handler that panics is answered 500 with the request id, logged with
// its stack, and the server goes on serving.
func TestPanicIsRecovered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.echo.GET("/test-panic", func(echo.Context) error { panic("boom") })
	r := b.do(http.MethodGet, "/test-panic", "")
	require.Equal(t, http.StatusInternalServerError, r.Status, string(r.Body))
	e := r.err(t)
	require.Equal(t, CodeInternal, e.Code)
	require.NotContains(t, e.Message, "boom", "a panic's details stay in the log")
	require.Equal(t, r.Header.Get(echo.HeaderXRequestID), e.RequestID)
	require.Contains(t, b.logs.String(), `"msg":"panic in handler"`)
	lines := b.logs.requestLines(t, e.RequestID)
	require.Len(t, lines, 1)
	require.EqualValues(t, http.StatusInternalServerError, lines[0]["status"])

	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/healthz", "").Status)
}

// A body over the limit is 413 whether its length is declared or it
// arrives chunked, and nothing is stored.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.BodyLimit = "1K" })
	big := `{"to":"` + testCounter + `","metadata":{"x":"` + strings.Repeat("a", 2<<10) + `"}}`

	r := b.do(http.MethodPost, "/v1/jobs", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, string(r.Body))
	require.Equal(t, CodeTooLarge, r.err(t).Code)

	// No Content-Length: the limit is met while reading.
	req, err := http.NewRequest(http.MethodPost, b.http.URL+"/v1/jobs", io.MultiReader(strings.NewReader(big)))
	require.NoError(t, err)
	req.ContentLength = -1
	r = b.send(req, true)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status, string(r.Body))
	require.Equal(t, CodeTooLarge, r.err(t).Code)

	require.Zero(t, b.jobCount())
	small := `{"to":"` + testCounter + `"}`
	require.Equal(t, http.StatusAccepted, b.do(http.MethodPost, "/v1/jobs", small).Status)
}

// The monitor refuses changes unless MonitorWrite is set: pausing the send
// queue is 405 and leaves it running.
func TestMonitorIsReadOnly(t *testing.T) {
	t.Parallel()
	for _, write := range []bool{false, true} {
		b := setup(t, func(c *Config) { c.MonitorWrite = write })
		require.Equal(t, http.StatusAccepted, b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`"}`).Status)
		b.queued() // the job's batch task is on the queue (sendq.go): the queue exists
		r := b.do(http.MethodPost, "/monitor/api/queues/"+tasks.QueueSend+":pause", "")
		insp := asynq.NewInspectorFromRedisClient(b.rdb)
		q, err := insp.GetQueueInfo(tasks.QueueSend)
		require.NoError(t, err)
		if write {
			require.Less(t, r.Status, 300, string(r.Body))
			require.True(t, q.Paused, "with MonitorWrite the monitor can pause a queue")
		} else {
			require.Equal(t, http.StatusMethodNotAllowed, r.Status, string(r.Body))
			require.False(t, q.Paused, "a read-only monitor changed the queue")
			require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/monitor/api/queues", "").Status, "reading is allowed")
		}
	}
}

// slowNode answers like the chain but blocks every nonce read until the
// caller's context ends: a node that has stopped answering.
type slowNode struct{ Node }

func (slowNode) NonceAt(ctx context.Context, _ common.Address, _ *big.Int) (uint64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

func (slowNode) PendingNonceAt(ctx context.Context, _ common.Address) (uint64, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}

// A request held up by a slow dependency ends at its deadline with 503
// timeout (the handlers' own 5 s deadlines would answer "unavailable"
// much later); a caller's mistake found meanwhile stays a 400.
func TestRequestDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) {
		c.RequestTimeout = 200 * time.Millisecond
		c.Chains[0].Node = slowNode{c.Chains[0].Node}
	})
	for _, rq := range []struct{ method, path string }{
		{http.MethodGet, "/v1/signers"},
		{http.MethodPost, "/v1/signers/" + b.signer.Hex() + "/reconcile"},
	} {
		r := b.do(rq.method, rq.path, "")
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s %s: %s", rq.method, rq.path, r.Body)
		e := r.err(t)
		require.Equal(t, CodeTimeout, e.Code, e.Message)
		require.Contains(t, e.Message, "200ms")
	}
	r := b.do(http.MethodPost, "/v1/signers/0x12/reconcile", "")
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "invalid_address", r.err(t).Code)
	// Fast requests are unaffected.
	require.Equal(t, http.StatusAccepted, b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`"}`).Status)
}

func TestCallerError(t *testing.T) {
	t.Parallel()
	require.True(t, callerError(invalid("x", "", "bad")))
	require.True(t, callerError(apiError(CodeNotFound, "no")))
	require.True(t, callerError(echo.ErrNotFound))
	require.False(t, callerError(apiError(CodeUnavailable, "down")))
	require.False(t, callerError(errors.New("plain")))
	require.False(t, callerError(echo.ErrServiceUnavailable))
}
