package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/metrics/metricstest"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/tasks"
)

const (
	prefix  = "test:"
	chainID = 31337
)

var (
	signerA = common.HexToAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
	signerB = common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
	other   = common.HexToAddress("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC") // registered on another chain
)

// fakeNode answers balances from a map, or blocks (ignoring its context)
// until release is closed when hang is set.
type fakeNode struct {
	balances map[common.Address]*big.Int
	hang     bool
	release  chan struct{}
	entered  chan struct{} // if set, told of every call that starts to hang
}

func (n *fakeNode) BalanceAt(ctx context.Context, a common.Address, _ *big.Int) (*big.Int, error) {
	if n.hang {
		if n.entered != nil {
			n.entered <- struct{}{}
		}
		<-n.release
		return nil, errors.New("released")
	}
	b, ok := n.balances[a]
	if !ok {
		return nil, errors.New("unknown account")
	}
	return b, nil
}

type clusterSetup struct {
	redis *testenv.RedisServer
	rdb   *redis.Client
	store *jobs.Store
	m     *metrics.Metrics
}

func setupCluster(t *testing.T, node metrics.Balances, timeout time.Duration) clusterSetup {
	t.Helper()
	return setupClusterClock(t, node, timeout, nil)
}

// setupClusterClock is setupCluster with the clock of the balance probe.
func setupClusterClock(t *testing.T, node metrics.Balances, timeout time.Duration, now func() time.Time) clusterSetup {
	t.Helper()
	rs := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	m := metrics.New()
	require.NoError(t, m.WatchCluster(metrics.Cluster{
		Redis: rdb, Prefix: prefix, ChainID: chainID, Node: node, Signers: []common.Address{signerB},
		Timeout: timeout, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: now,
	}))
	return clusterSetup{redis: rs, rdb: rdb, store: jobs.NewStore(rdb, prefix), m: m}
}

func ether(x int64) *big.Int { return new(big.Int).Mul(big.NewInt(x), big.NewInt(1e18)) }

// The cluster gauges read jobs by status, queue depths and each signer's
// in-flight count, paused flag and balance from Redis and the node at
// scrape time.
func TestClusterGaugesReflectRedisAndTheNode(t *testing.T) {
	t.Parallel()
	node := &fakeNode{balances: map[common.Address]*big.Int{signerA: ether(3), signerB: big.NewInt(5e17)}}
	c := setupCluster(t, node, 0)
	ctx := context.Background()

	s := metricstest.Gather(t, c.m.Registry())
	for _, st := range jobs.Statuses {
		require.True(t, s.Has("relayq_jobs", "status", string(st)))
		require.Zero(t, s.Value("relayq_jobs", "status", string(st)))
	}
	require.True(t, s.Has("relayq_queue_tasks", "queue", tasks.QueueSend, "state", "pending"), "the send queue shows before its first task")

	require.Zero(t, s.Value("relayq_webhook_outbox"))
	// Three jobs; one is enqueued, one cancelled (with a webhook: an event
	// in the outbox), one holds a nonce of signer A.
	var ids []string
	for i := range 3 {
		j := &jobs.Job{ChainID: chainID, To: signerB.Hex(), Value: "0"}
		if i == 1 {
			j.WebhookURL = "https://example.com/hook"
		}
		j, _, err := c.store.Create(ctx, j, "")
		require.NoError(t, err)
		ids = append(ids, j.ID)
	}
	task, opts, err := tasks.NewSendTask("", ids[0])
	require.NoError(t, err)
	client := asynq.NewClientFromRedisClient(c.rdb)
	_, err = client.EnqueueContext(ctx, task, opts...)
	require.NoError(t, err)
	require.NoError(t, c.store.TransitionIf(ctx, ids[1], jobs.Queued, jobs.Cancelled, "test", nil, nil))
	require.NoError(t, nonce.NewRegistry(c.rdb, prefix).Register(ctx, chainID, []common.Address{signerA}))
	require.NoError(t, nonce.NewRegistry(c.rdb, prefix).Register(ctx, 1, []common.Address{other}))
	alloc := nonce.New(c.rdb, prefix, chainID, signerA)
	_, err = alloc.Reconcile(ctx, 7)
	require.NoError(t, err)
	_, err = alloc.Reserve(ctx, ids[2], c.store.JobKey(ids[2]))
	require.NoError(t, err)
	require.NoError(t, alloc.SetPaused(ctx, "insufficient funds for gas * price + value"))

	s = metricstest.Gather(t, c.m.Registry())
	require.Equal(t, 2.0, s.Value("relayq_jobs", "status", "queued"))
	require.Equal(t, 1.0, s.Value("relayq_jobs", "status", "cancelled"))
	require.Equal(t, 1.0, s.Value("relayq_webhook_outbox"), "the cancellation's event waits for a dispatcher")
	require.Equal(t, 0.0, s.Value("relayq_jobs", "status", "confirmed"))
	require.Equal(t, 1.0, s.Value("relayq_queue_tasks", "queue", tasks.QueueSend, "state", "pending"))
	require.Equal(t, 0.0, s.Value("relayq_queue_tasks", "queue", tasks.QueueSend, "state", "active"))
	for _, st := range []string{"pending", "active", "scheduled", "retry", "archived"} {
		require.True(t, s.Has("relayq_queue_tasks", "queue", tasks.QueueSend, "state", st), st)
	}
	require.Equal(t, 1.0, s.Value("relayq_signer_in_flight", "signer", signerA.Hex()))
	require.Equal(t, 1.0, s.Value("relayq_signer_paused", "signer", signerA.Hex()))
	require.Equal(t, 0.0, s.Value("relayq_signer_in_flight", "signer", signerB.Hex()), "a configured signer shows without registering")
	require.Equal(t, 0.0, s.Value("relayq_signer_paused", "signer", signerB.Hex()))
	require.Equal(t, 3.0, s.Value("relayq_signer_balance_ether", "signer", signerA.Hex()))
	require.Equal(t, 0.5, s.Value("relayq_signer_balance_ether", "signer", signerB.Hex()))
	require.False(t, s.Has("relayq_signer_in_flight", "signer", other.Hex()), "signers of other chains are left out")
	for _, part := range []string{"jobs", "queues", "signers", "balances"} {
		require.Equal(t, 1.0, s.Value("relayq_cluster_scrape_success", "part", part), part)
	}
	requireBoundedLabels(t, s)

	// The same over HTTP, in the text format a Prometheus server reads.
	srv := httptest.NewServer(c.m.Handler())
	t.Cleanup(srv.Close)
	scraped := metricstest.Scrape(t, srv.URL)
	require.Equal(t, 2.0, scraped.Value("relayq_jobs", "status", "queued"))
	require.Equal(t, 3.0, scraped.Value("relayq_signer_balance_ether", "signer", signerA.Hex()))
}

// With Redis gone, a scrape still answers 200 with the process's own
// metrics; the Redis parts are reported failed instead of made up.
func TestClusterGaugesWhenRedisIsDown(t *testing.T) {
	t.Parallel()
	node := &fakeNode{balances: map[common.Address]*big.Int{signerB: ether(1)}}
	c := setupCluster(t, node, 0)
	c.m.JobAccepted(false)
	c.redis.Kill()

	srv := httptest.NewServer(c.m.Handler())
	t.Cleanup(srv.Close)
	s := metricstest.Scrape(t, srv.URL)
	require.Equal(t, 1.0, s.Value("relayq_jobs_accepted_total", "outcome", "created"), "process metrics survive")
	for _, part := range []string{"jobs", "queues", "signers", "balances"} {
		require.True(t, s.Has("relayq_cluster_scrape_success", "part", part), part)
		require.Equal(t, 0.0, s.Value("relayq_cluster_scrape_success", "part", part), part)
	}
	require.False(t, s.Has("relayq_jobs"), "no made-up job counts")
	require.False(t, s.Has("relayq_signer_in_flight"))
}

// A node that never answers cannot hold a scrape: the balances part is
// abandoned at the timeout and reported failed; the others still report.
func TestClusterScrapeIsBoundedWhenTheNodeHangs(t *testing.T) {
	t.Parallel()
	node := &fakeNode{hang: true, release: make(chan struct{})}
	t.Cleanup(func() { close(node.release) })
	c := setupCluster(t, node, 300*time.Millisecond)

	srv := httptest.NewServer(c.m.Handler())
	t.Cleanup(srv.Close)
	got := make(chan metricstest.Snapshot, 1)
	go func() {
		res, err := http.Get(srv.URL)
		if err != nil {
			got <- nil
			return
		}
		defer res.Body.Close()
		s, _ := metricstest.Parse(res.Body)
		got <- s
	}()
	var s metricstest.Snapshot
	select {
	case s = <-got:
	case <-time.After(30 * time.Second): // a bound for the test, not a speed check
		t.Fatal("scrape still waiting for a node that never answers")
	}
	require.NotNil(t, s)
	require.Equal(t, 0.0, s.Value("relayq_cluster_scrape_success", "part", "balances"))
	require.True(t, s.Has("relayq_cluster_scrape_success", "part", "balances"))
	require.Equal(t, 1.0, s.Value("relayq_cluster_scrape_success", "part", "jobs"))
	require.Equal(t, 1.0, s.Value("relayq_cluster_scrape_success", "part", "signers"))
	require.True(t, s.Has("relayq_signer_in_flight", "signer", signerB.Hex()))
	require.False(t, s.Has("relayq_signer_balance_ether"))
}

// No metric, however the helpers and the cluster gauges are fed, carries a
// job id, a hash or a label outside the bounded set.
func TestNoMetricCarriesAJobID(t *testing.T) {
	t.Parallel()
	node := &fakeNode{balances: map[common.Address]*big.Int{signerA: ether(1), signerB: ether(2)}}
	c := setupCluster(t, node, 0)
	ctx := context.Background()
	require.NoError(t, nonce.NewRegistry(c.rdb, prefix).Register(ctx, chainID, []common.Address{signerA}))
	for range 5 {
		j, _, err := c.store.Create(ctx, &jobs.Job{ChainID: chainID, To: signerB.Hex(), Value: "0"}, "")
		require.NoError(t, err)
		c.m.Stage(metrics.StageBroadcast, metrics.AcceptedAt(j.ID))
		c.m.Stage(metrics.StageMined, j.CreatedAt)
		require.NoError(t, c.m.Finished(jobs.Confirmed, 2, nil))
		c.m.HTTPRequest(http.MethodGet, "/v1/jobs/:id", http.StatusOK, time.Millisecond)
	}
	c.m.JobAccepted(true)
	c.m.JobRejected("invalid_argument")
	for _, k := range []string{jobs.KindBump, jobs.KindCancel, jobs.KindResign, jobs.KindGapFill} {
		c.m.Replaced(k)
	}
	c.m.Rebroadcast(metrics.RebroadcastRetry)
	c.m.RPC("eth_getTransactionReceipt", time.Millisecond, errors.New("transaction indexing is in progress"))

	s := metricstest.Gather(t, c.m.Registry())
	require.Equal(t, 5.0, s.Value("relayq_jobs", "status", "queued"))
	requireBoundedLabels(t, s)
}

// /metrics needs no key, and each scrape costs Redis and node calls: past
// a few scrapes at once, more are refused with 503 instead of piling up.
func TestConcurrentScrapesAreBounded(t *testing.T) {
	t.Parallel()
	node := &fakeNode{hang: true, release: make(chan struct{}), entered: make(chan struct{}, 16)}
	// The scrapes share one balance probe (the node hears of one); the
	// probe's clock, read once per scrape, tells that a scrape got there.
	asked := make(chan struct{}, 16)
	c := setupClusterClock(t, node, 20*time.Second, func() time.Time {
		asked <- struct{}{}
		return time.Unix(1_700_000_000, 0)
	})
	srv := httptest.NewServer(c.m.Handler())
	t.Cleanup(srv.Close)

	const inFlight = 4 // the handler's limit
	finished := make(chan int, inFlight)
	for range inFlight {
		go func() {
			res, err := http.Get(srv.URL)
			if err != nil {
				finished <- 0
				return
			}
			res.Body.Close()
			finished <- res.StatusCode
		}()
	}
	for range inFlight {
		select {
		case <-asked:
		case <-time.After(30 * time.Second):
			t.Fatal("scrapes never reached the balances")
		}
	}
	<-node.entered
	require.Empty(t, node.entered, "the scrapes in flight share one probe of the node")
	res, err := http.Get(srv.URL)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode, "a fifth scrape at once is refused")

	close(node.release)
	for range inFlight {
		select {
		case code := <-finished:
			require.Equal(t, http.StatusOK, code)
		case <-time.After(30 * time.Second):
			t.Fatal("scrapes did not finish once the node answered")
		}
	}
}

// A process serving two chains registers one Cluster per chain: each
// chain's gauges carry chain="<name>", read that chain's keys only, and
// report only its own queues.
func TestClusterGaugesPerChain(t *testing.T) {
	t.Parallel()
	rs := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	m := metrics.New()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, ch := range []struct {
		name string
		id   uint64
	}{{"a", 1}, {"b", 2}} {
		require.NoError(t, m.WatchCluster(metrics.Cluster{
			Redis: rdb, Prefix: fmt.Sprintf("%sc%d:", prefix, ch.id), ChainID: ch.id, Log: log,
			Chain: ch.name, Queues: tasks.ChainQueues(prefix, ch.id),
		}))
	}
	storeB := jobs.NewStore(rdb, prefix+"c2:")
	for range 2 {
		j, _, err := storeB.Create(ctx, &jobs.Job{ChainID: 2, To: signerB.Hex(), Value: "0"}, "")
		require.NoError(t, err)
		task, opts, err := tasks.NewSendTask(tasks.ChainQueues(prefix, 2).Send, j.ID)
		require.NoError(t, err)
		_, err = asynq.NewClientFromRedisClient(rdb).EnqueueContext(ctx, task, opts...)
		require.NoError(t, err)
	}
	s := metricstest.Gather(t, m.Registry())
	require.Equal(t, 0.0, s.Value("relayq_jobs", "chain", "a", "status", "queued"))
	require.Equal(t, 2.0, s.Value("relayq_jobs", "chain", "b", "status", "queued"))
	require.Equal(t, 2.0, s.Value("relayq_queue_tasks", "chain", "b", "queue", "test-2", "state", "pending"))
	require.True(t, s.Has("relayq_queue_tasks", "chain", "a", "queue", "test-1", "state", "pending"), "a chain's send queue shows before its first task")
	require.False(t, s.Has("relayq_queue_tasks", "chain", "a", "queue", "test-2", "state", "pending"), "chain a does not report b's queue")
}
