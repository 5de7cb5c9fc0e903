package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/api"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/metrics/metricstest"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
	"github.com/relayq/relayq/worker"
)

// newMetricsStack is a stack whose worker and API share one Metrics, as
// `relayq serve` wires them: the worker's node calls go through
// txmgr.Observed, and the stack's API is replaced by one that serves
// /metrics with the cluster gauges.
func newMetricsStack(t *testing.T, opts stackOptions) (*stack, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	adjust := opts.worker
	opts.worker = func(c *worker.Config) {
		if adjust != nil {
			adjust(c)
		}
		c.Backend = txmgr.Observed(c.Backend, m.RPC)
		c.Metrics = m
	}
	s := newStack(t, opts)
	ctx := context.Background()
	chainID, err := s.node.ChainID(ctx)
	require.NoError(t, err)
	require.NoError(t, m.WatchCluster(metrics.Cluster{Redis: s.rdb, Prefix: "relayq:", ChainID: chainID.Uint64(), Node: s.node, Log: testLogger(t)}))
	srv, err := api.New(ctx, api.Config{
		Redis: s.rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: s.redis.Addr()}, APIKeys: []string{testAPIKey},
		Chains: []api.Chain{{Name: api.DefaultChainName, Prefix: "relayq:", Node: s.node, Confirmations: 1}},
		Log:    testLogger(t), Metrics: m,
	})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	s.api = httptest.NewServer(srv.Handler()) // s.submit, s.wait and s.do now use it
	t.Cleanup(s.api.Close)
	return s, m
}

// scrape reads url (/metrics) without credentials, parses it, and checks
// that no job id of ids appears anywhere in it.
func scrape(t *testing.T, url string, ids ...string) metricstest.Snapshot {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, string(body))
	for _, id := range ids {
		require.NotContains(t, string(body), id, "a job id is in the metrics")
	}
	s, err := metricstest.Parse(strings.NewReader(string(body)))
	require.NoError(t, err)
	return s
}

// delta is how much a counter or gauge moved between two scrapes.
func delta(before, after metricstest.Snapshot, name string, labels ...string) float64 {
	return after.Value(name, labels...) - before.Value(name, labels...)
}

func countDelta(before, after metricstest.Snapshot, name string, labels ...string) uint64 {
	return after.Count(name, labels...) - before.Count(name, labels...)
}

// failFirstSend makes the node refuse the first broadcast with a retryable
// error (txpool full), once.
type failFirstSend struct {
	txmgr.Backend
	once sync.Once
}

func (f *failFirstSend) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	fail := false
	f.once.Do(func() { fail = true })
	if fail {
		return errors.New("txpool is full")
	}
	return f.Backend.SendTransaction(ctx, tx)
}

// Metrics change as jobs run: a confirmed job, one that reverts at
// estimate, an idempotent replay and a bad request each move exactly their
// series, and the cluster gauges agree with Redis and the chain.
func TestMetricsChangeAsJobsRun(t *testing.T) {
	t.Parallel()
	// A loaded machine can leave the job unmined for a few of the
	// simulated chain's blocks, and a fee bump would move the replacement
	// counter this test expects to stay still; bumps have tests of their own.
	s, _ := newMetricsStack(t, stackOptions{worker: func(c *worker.Config) { c.StuckBlocks = 1000 }})
	ctx := context.Background()
	url := s.api.URL + "/metrics"
	before := scrape(t, url)
	require.Equal(t, 1.0, before.Value("relayq_cluster_scrape_success", "part", "jobs"))
	balanceBefore := before.Value("relayq_signer_balance_ether", "signer", s.signer.Hex())
	require.Greater(t, balanceBefore, 0.0, "the signer's balance is reported")

	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)
	ok := s.submit(body, "Idempotency-Key", "metrics-1")
	replay := s.do(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "metrics-1")
	require.Equal(t, http.StatusOK, replay.Status, string(replay.Body))
	bad := s.do(http.MethodPost, "/v1/jobs", `{"to":"0x1234"}`)
	require.Equal(t, http.StatusBadRequest, bad.Status)
	require.Equal(t, "invalid_address", bad.err(t).Error.Code)
	reverts := s.submit(fmt.Sprintf(`{"to":%q,"function":"fail(string)","args":["boom"]}`, s.counter))

	okDone := s.wait(ok.ID, jobs.Confirmed)
	revDone := s.wait(reverts.ID, jobs.Failed)
	require.Equal(t, jobs.ErrCodeRevertedAtEstimate, revDone.Error.Code)
	after := scrape(t, url, ok.ID, reverts.ID)

	// API
	require.Equal(t, 2.0, delta(before, after, "relayq_jobs_accepted_total", "outcome", "created"))
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_accepted_total", "outcome", "replayed"))
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_rejected_total", "code", "invalid_address"))
	require.Equal(t, 3.0, delta(before, after, "relayq_http_requests_total", "method", "POST", "route", "/v1/jobs", "status_class", "2xx"))
	require.Equal(t, 1.0, delta(before, after, "relayq_http_requests_total", "method", "POST", "route", "/v1/jobs", "status_class", "4xx"))
	require.Greater(t, delta(before, after, "relayq_http_requests_total", "method", "GET", "route", "/v1/jobs/:id"), 0.0)
	require.Equal(t, 1.0, delta(before, after, "relayq_http_requests_total", "method", "GET", "route", "/metrics", "status_class", "2xx"), "the first scrape counted itself")

	// Worker: final statuses, stages, attempts.
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_finished_total", "status", "confirmed"))
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_finished_total", "status", "failed"))
	require.Equal(t, 0.0, delta(before, after, "relayq_jobs_finished_total", "status", "cancelled"))
	for _, st := range []string{"broadcast", "mined", "confirmed"} {
		require.Equal(t, uint64(1), countDelta(before, after, "relayq_job_stage_seconds", "stage", st), st)
	}
	require.Equal(t, uint64(1), countDelta(before, after, "relayq_job_attempts", "status", "confirmed"))
	require.Equal(t, float64(len(okDone.Attempts)), after.Sum("relayq_job_attempts", "status", "confirmed")-before.Sum("relayq_job_attempts", "status", "confirmed"))
	require.Equal(t, uint64(1), countDelta(before, after, "relayq_job_attempts", "status", "failed"))
	require.Equal(t, 0.0, after.Sum("relayq_job_attempts", "status", "failed")-before.Sum("relayq_job_attempts", "status", "failed"), "reverted at estimate: nothing signed")
	require.Equal(t, 0.0, delta(before, after, "relayq_tx_replacements_total"), "no replacement was needed")

	// Node calls, by method and class.
	require.GreaterOrEqual(t, delta(before, after, "relayq_rpc_requests_total", "method", "eth_sendRawTransaction"), 1.0)
	require.Equal(t, 0.0, delta(before, after, "relayq_rpc_errors_total", "method", "eth_sendRawTransaction"))
	require.GreaterOrEqual(t, delta(before, after, "relayq_rpc_requests_total", "method", "eth_estimateGas"), 2.0)
	require.Equal(t, 1.0, delta(before, after, "relayq_rpc_errors_total", "method", "eth_estimateGas", "class", "permanent"), "the revert")
	require.Greater(t, delta(before, after, "relayq_rpc_requests_total", "method", "eth_getTransactionReceipt"), 0.0)
	require.Greater(t, delta(before, after, "relayq_rpc_requests_total", "method", "eth_getBlockByNumber"), 0.0)

	// Cluster gauges, against Redis and the chain.
	for _, st := range jobs.Statuses {
		n, err := s.store.Count(ctx, st)
		require.NoError(t, err)
		require.Equal(t, float64(n), after.Value("relayq_jobs", "status", string(st)), st)
	}
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs", "status", "confirmed"))
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs", "status", "failed"))
	require.Equal(t, 0.0, after.Value("relayq_signer_in_flight", "signer", s.signer.Hex()), "the confirmed job released its nonce")
	require.True(t, after.Has("relayq_signer_paused", "signer", s.signer.Hex()))
	require.Equal(t, 0.0, after.Value("relayq_signer_paused", "signer", s.signer.Hex()))
	// The balance is probed at most once a second: scrape until it moves.
	for deadline := time.Now().Add(10 * time.Second); after.Value("relayq_signer_balance_ether", "signer", s.signer.Hex()) >= balanceBefore; {
		require.True(t, time.Now().Before(deadline), "gas was paid")
		time.Sleep(200 * time.Millisecond)
		after = scrape(t, url)
	}
	require.True(t, after.Has("relayq_queue_tasks", "queue", tasks.QueueSend, "state", "pending"))
	require.Equal(t, 0.0, after.Value("relayq_queue_tasks", "queue", tasks.QueueSend, "state", "pending"), "nothing left to send")
}

// A broadcast the node refuses (txpool full) is counted as a retryable
// error of eth_sendRawTransaction, and the persisted bytes go out again
// (the task's retry or the tracker, whichever comes first).
func TestMetricsCountARefusedBroadcast(t *testing.T) {
	t.Parallel()
	s, _ := newMetricsStack(t, stackOptions{wrap: func(b txmgr.Backend) txmgr.Backend { return &failFirstSend{Backend: b} }})
	url := s.api.URL + "/metrics"
	before := scrape(t, url)
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	done := s.wait(j.ID, jobs.Confirmed)
	require.Len(t, done.Attempts, 1, "sent again, not signed again")
	after := scrape(t, url, j.ID)
	require.Equal(t, 1.0, delta(before, after, "relayq_rpc_errors_total", "method", "eth_sendRawTransaction", "class", "retryable"))
	require.Equal(t, 1.0, delta(before, after, "relayq_rpc_errors_total"), "the one injected fault")
	require.GreaterOrEqual(t, delta(before, after, "relayq_tx_rebroadcasts_total"), 1.0)
	require.GreaterOrEqual(t, delta(before, after, "relayq_rpc_requests_total", "method", "eth_sendRawTransaction"), 2.0)
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_finished_total", "status", "confirmed"))
}

// A stuck transaction's fee bump and a dropped transaction's re-broadcast
// show in the metrics, with the attempts they cost.
func TestMetricsCountFeeBumpsAndRebroadcasts(t *testing.T) {
	t.Parallel()
	// Five blocks before a bump leave the tracker room to notice the
	// dropped transaction (checked every 2 blocks) before it counts as stuck.
	s, _ := newMetricsStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, worker: func(c *worker.Config) { c.StuckBlocks = 5 }})
	url := s.api.URL + "/metrics"
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)
	before := scrape(t, url)

	// Dropped from the pool: the tracker sends the same bytes again.
	dropped := s.submit(body)
	sub := s.waitFor("submitted", nil, status(jobs.Submitted), dropped.ID)
	s.anvil.RPC(t, "anvil_dropTransaction", sub.TxHash)
	mid := scrape(t, url)
	require.Equal(t, 1.0, mid.Value("relayq_signer_in_flight", "signer", s.signer.Hex()), "the submitted job holds a nonce")
	droppedDone := s.waitFor("confirmed", func() { s.anvil.RPC(t, "evm_mine") }, status(jobs.Confirmed), dropped.ID)
	require.Len(t, droppedDone.Attempts, 1, "re-broadcast, not re-signed")
	afterDrop := scrape(t, url, dropped.ID)
	require.Equal(t, 1.0, delta(before, afterDrop, "relayq_tx_rebroadcasts_total", "reason", "dropped"))
	require.Equal(t, 0.0, delta(before, afterDrop, "relayq_tx_replacements_total"))

	// Stuck below the base fee: replaced with higher fees until mined. (anvil
	// also evicts a tx below the base fee, so the tracker may first send it
	// again as a dropped one.)
	stuck := s.submit(body)
	s.waitFor("submitted", nil, status(jobs.Submitted), stuck.ID)
	got, err := s.store.Get(context.Background(), stuck.ID)
	require.NoError(t, err)
	high := new(big.Int).Mul(parseWei(t, got.Attempts[0].GasFeeCap), big.NewInt(20))
	spike := func() {
		s.anvil.RPC(t, "anvil_setNextBlockBaseFeePerGas", hexutil.EncodeBig(high))
		s.anvil.RPC(t, "evm_mine")
	}
	s.waitFor("mined after a bump", spike, func(j jobs.Job) bool { return j.Status == jobs.Mined || j.Status == jobs.Confirmed }, stuck.ID)
	stuckDone := s.waitFor("confirmed", func() { s.anvil.RPC(t, "evm_mine") }, status(jobs.Confirmed), stuck.ID)
	bumps := 0
	for _, k := range kinds(stuckDone) {
		if k == jobs.KindBump {
			bumps++
		}
	}
	require.GreaterOrEqual(t, bumps, 1, "kinds %v", kinds(stuckDone))

	after := scrape(t, url, dropped.ID, stuck.ID)
	require.Equal(t, float64(bumps), delta(before, after, "relayq_tx_replacements_total", "kind", "bump"))
	require.Equal(t, 0.0, delta(before, after, "relayq_tx_replacements_total", "kind", "gap_fill"))
	require.Equal(t, 2.0, delta(before, after, "relayq_jobs_finished_total", "status", "confirmed"))
	require.Equal(t, uint64(2), countDelta(before, after, "relayq_job_attempts", "status", "confirmed"))
	require.Equal(t, float64(1+len(stuckDone.Attempts)), after.Sum("relayq_job_attempts", "status", "confirmed")-before.Sum("relayq_job_attempts", "status", "confirmed"))
	require.GreaterOrEqual(t, delta(before, after, "relayq_rpc_requests_total", "method", "eth_sendRawTransaction"), float64(2+len(stuckDone.Attempts)))
	require.Greater(t, delta(before, after, "relayq_rpc_requests_total", "method", "eth_getTransactionByHash"), 0.0, "the tracker asked whether the node still knew the txs")
	require.Equal(t, 0.0, after.Value("relayq_signer_in_flight", "signer", s.signer.Hex()))
}

// A worker process has no API: RELAYQ_METRICS_LISTEN serves its metrics.
// The API process serves its own, and both serve the same cluster gauges.
func TestWorkerProcessServesMetricsOnItsOwnAddress(t *testing.T) {
	t.Parallel()
	c, counter := newCluster(t, clusterOptions{anvilArgs: []string{"--block-time", "1"}})
	workerMetrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", testenv.FreePort(t))
	c.addWorker("RELAYQ_METRICS_LISTEN=" + strings.TrimSuffix(strings.TrimPrefix(workerMetrics, "http://"), "/metrics"))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		res, err := http.Get(workerMetrics)
		if err == nil {
			res.Body.Close()
			break
		}
		require.False(t, time.Now().After(deadline), "worker metrics never answered: %v", err)
	}
	before := scrape(t, workerMetrics)

	code, b, err := c.request(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter))
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code, string(b))
	var j jobs.Job
	require.NoError(t, jsonUnmarshal(b, &j))
	done := c.waitAll([]string{j.ID}, time.Minute)
	require.Equal(t, jobs.Confirmed, done[0].Status)

	w := scrape(t, workerMetrics, j.ID)
	require.Equal(t, 1.0, delta(before, w, "relayq_jobs_finished_total", "status", "confirmed"))
	require.Equal(t, uint64(1), countDelta(before, w, "relayq_job_stage_seconds", "stage", "confirmed"))
	require.GreaterOrEqual(t, delta(before, w, "relayq_rpc_requests_total", "method", "eth_sendRawTransaction"), 1.0)
	require.Equal(t, 0.0, w.Value("relayq_jobs_accepted_total"), "the worker accepts no requests")
	require.Equal(t, 1.0, w.Value("relayq_jobs", "status", "confirmed"))
	signer := crypto.PubkeyToAddress(c.anvil.Keys()[0].PublicKey)
	require.Greater(t, w.Value("relayq_signer_balance_ether", "signer", signer.Hex()), 0.0)

	a := scrape(t, c.apiURL+"/metrics", j.ID) // no credentials needed
	require.Equal(t, 1.0, a.Value("relayq_jobs_accepted_total", "outcome", "created"))
	require.Equal(t, 0.0, a.Value("relayq_jobs_finished_total"), "the API process finishes no jobs")
	require.Equal(t, 1.0, a.Value("relayq_jobs", "status", "confirmed"), "cluster gauges are the same from every process")
	require.True(t, a.Has("relayq_signer_in_flight", "signer", signer.Hex()), "the API learns the signers from the registry")

	// Anything but GET /metrics on the worker's address is a clear 404.
	res, err := http.Get(strings.TrimSuffix(workerMetrics, "/metrics") + "/v1/jobs")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusNotFound, res.StatusCode)
}

// A job the node rejects for good after its nonce was bound is given up: a
// no-op takes its nonce, and once that is mined the job fails (counted, with
// the node's permanent error).
func TestMetricsCountARejectionAndItsGapFill(t *testing.T) {
	t.Parallel()
	s, _ := newMetricsStack(t, stackOptions{wrap: func(b txmgr.Backend) txmgr.Backend { return &rejectFirst{Backend: b} }})
	url := s.api.URL + "/metrics"
	before := scrape(t, url)
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)
	rejected := s.wait(s.submit(body).ID, jobs.Failed)
	require.Equal(t, jobs.ErrCodeRejected, rejected.Error.Code)
	next := s.wait(s.submit(body).ID, jobs.Confirmed)
	filled := s.waitFor("gap filled", nil, func(j jobs.Job) bool { return slices.Contains(kinds(j), jobs.KindGapFill) }, rejected.ID)

	after := scrape(t, url, rejected.ID, next.ID)
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_finished_total", "status", "failed"))
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_finished_total", "status", "confirmed"))
	require.Equal(t, 1.0, delta(before, after, "relayq_rpc_errors_total", "method", "eth_sendRawTransaction", "class", "permanent"))
	require.Equal(t, float64(len(filled.Attempts)-1), delta(before, after, "relayq_tx_replacements_total", "kind", "gap_fill"))
	require.Equal(t, uint64(1), countDelta(before, after, "relayq_job_attempts", "status", "failed"), "failed by the tracker once its no-op was mined: attempts observed")
	require.Equal(t, uint64(1), countDelta(before, after, "relayq_job_attempts", "status", "confirmed"))
}

// Cancelling a submitted job sends a replacement, counted as a cancel, and
// the job ends cancelled with both its transactions counted as attempts.
func TestMetricsCountACancel(t *testing.T) {
	t.Parallel()
	s, _ := newMetricsStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, noWorkerRun: true})
	ctx := context.Background()
	url := s.api.URL + "/metrics"
	before := scrape(t, url)
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	require.NoError(t, s.worker.Send(ctx, j.ID))
	r := s.do(http.MethodPost, "/v1/jobs/"+j.ID+"/cancel", "")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	s.runWorker()
	s.waitSent(s.waitFor("cancel sent", nil, func(j jobs.Job) bool { return len(j.Attempts) == 2 }, j.ID).Attempts[1].Hash)
	done := s.waitFor("cancelled", s.mine, status(jobs.Cancelled), j.ID)
	require.Equal(t, []string{jobs.KindOriginal, jobs.KindCancel}, kinds(done))

	after := scrape(t, url, j.ID)
	require.Equal(t, 1.0, delta(before, after, "relayq_tx_replacements_total", "kind", "cancel"))
	require.Equal(t, 1.0, delta(before, after, "relayq_jobs_finished_total", "status", "cancelled"))
	require.Equal(t, 2.0, after.Sum("relayq_job_attempts", "status", "cancelled")-before.Sum("relayq_job_attempts", "status", "cancelled"))
	require.Equal(t, 1.0, delta(before, after, "relayq_http_requests_total", "method", "POST", "route", "/v1/jobs/:id/cancel", "status_class", "2xx"))
	require.Equal(t, 1.0, after.Value("relayq_jobs", "status", "cancelled"))
	require.Equal(t, 0.0, after.Value("relayq_signer_in_flight", "signer", s.signer.Hex()))
}
