package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/internal/probe"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/tasks"
)

// DefaultClusterTimeout bounds one scrape of the cluster gauges.
const DefaultClusterTimeout = 2 * time.Second

// Balances is what the cluster gauges need from the node.
type Balances interface {
	BalanceAt(ctx context.Context, account common.Address, block *big.Int) (*big.Int, error)
}

// Cluster says where the cluster-wide gauges are read from. They describe
// the whole deployment (every process on this Redis), so every process that
// serves them reports the same values: scrape one, or aggregate with max.
type Cluster struct {
	Redis   redis.UniversalClient
	Prefix  string
	ChainID uint64           // signers registered for other chains are left out
	Node    Balances         // for signer balances; nil: no balance gauge
	Signers []common.Address // signers known to this process besides those the workers registered
	Timeout time.Duration    // bound of one scrape (0: DefaultClusterTimeout)
	Log     *slog.Logger     // nil: slog.Default()
	// Chain, when set, labels every cluster gauge chain="<Chain>", and
	// Queues then names the chain's own queues, the only ones reported: how
	// a process serving several chains registers one Cluster per chain.
	// Unset: no label, and every Asynq queue is reported.
	Chain  string
	Queues tasks.Queues
	// Now is the clock of the balance probes' cache (time.Now when nil):
	// however often /metrics is scraped, the node is asked for a signer's
	// balance at most once per probe.DefaultEvery.
	Now func() time.Time
}

// Parts of a cluster scrape, each read (and able to fail) on its own.
const (
	partJobs     = "jobs"
	partQueues   = "queues"
	partSigners  = "signers"
	partBalances = "balances"
)

var clusterParts = []string{partJobs, partQueues, partSigners, partBalances}

// queueStates are the Asynq task states reported per queue.
var queueStates = []string{"pending", "active", "scheduled", "retry", "archived"}

var (
	descJobs = prometheus.NewDesc("relayq_jobs",
		"Jobs in each status now, from Redis (all processes).", []string{"status"}, nil)
	descOutbox = prometheus.NewDesc("relayq_webhook_outbox",
		"Webhook events written by status changes and not yet handed to the delivery queue; it should stay near 0 while a worker runs.", nil, nil)
	descQueue = prometheus.NewDesc("relayq_queue_tasks",
		"Asynq tasks in each queue and state now (pending, active, scheduled, retry, archived).", []string{"queue", "state"}, nil)
	descInFlight = prometheus.NewDesc("relayq_signer_in_flight",
		"Jobs holding a nonce of the signer whose transaction is not final yet.", []string{"signer"}, nil)
	descPaused = prometheus.NewDesc("relayq_signer_paused",
		"1 while the signer cannot pay for gas (its jobs wait), else 0.", []string{"signer"}, nil)
	descBalance = prometheus.NewDesc("relayq_signer_balance_ether",
		"The signer's balance in ether at the node's latest block.", []string{"signer"}, nil)
	descScrape = prometheus.NewDesc("relayq_cluster_scrape_success",
		"1 if this scrape read the part (jobs, queues, signers, balances) of the cluster gauges, 0 if it failed or took too long.", []string{"part"}, nil)
)

// WatchCluster registers the cluster-wide gauges, read from Redis and the
// node at each scrape: jobs by status, Asynq queue depths, and per signer
// its in-flight count, paused flag and balance. A scrape reads its parts
// concurrently, waits at most c.Timeout, and reports any part it could not
// read in relayq_cluster_scrape_success instead of failing. Does nothing on
// nil Metrics.
func (m *Metrics) WatchCluster(c Cluster) error {
	if m == nil {
		return nil
	}
	if c.Redis == nil {
		return errors.New("metrics: cluster gauges need Redis")
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultClusterTimeout
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	reg := prometheus.Registerer(m.reg)
	if c.Chain != "" {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"chain": c.Chain}, m.reg)
	}
	return reg.Register(&clusterCollector{
		cfg:           c,
		store:         jobs.NewStore(c.Redis, c.Prefix),
		inspector:     asynq.NewInspectorFromRedisClient(c.Redis),
		registry:      nonce.NewRegistry(c.Redis, c.Prefix),
		balanceProbes: map[common.Address]*probe.Cache[*big.Int]{},
	})
}

// clusterCollector is a prometheus.Collector computing the cluster gauges
// at scrape time.
type clusterCollector struct {
	cfg       Cluster
	store     *jobs.Store
	inspector *asynq.Inspector
	registry  *nonce.Registry
	// balanceProbes keep each signer's last balance read: /metrics needs
	// no key, and the node hears of a signer at most once a second.
	mu            sync.Mutex
	balanceProbes map[common.Address]*probe.Cache[*big.Int]
}

// balanceProbe is a's probe cache.
func (cc *clusterCollector) balanceProbe(a common.Address) *probe.Cache[*big.Int] {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	p, ok := cc.balanceProbes[a]
	if !ok {
		p = probe.New[*big.Int](probe.DefaultEvery, cc.cfg.Timeout, cc.cfg.Now)
		cc.balanceProbes[a] = p
	}
	return p
}

// Describe sends every descriptor the collector may emit.
func (cc *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJobs, descQueue, descInFlight, descPaused, descBalance, descScrape} {
		ch <- d
	}
}

// partResult is what reading one part gave.
type partResult struct {
	part    string
	metrics []prometheus.Metric
	err     error
}

// Collect reads every part concurrently and emits those that finished in
// time. A part still running at the deadline is abandoned: its goroutine
// ends on its own (its calls carry the same deadline) and its result is
// dropped, never sent on ch after Collect returned.
func (cc *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), cc.cfg.Timeout)
	defer cancel()
	readers := map[string]func(context.Context) ([]prometheus.Metric, error){
		partJobs: cc.jobs, partQueues: cc.queues, partSigners: cc.signers, partBalances: cc.balances,
	}
	if cc.cfg.Node == nil {
		delete(readers, partBalances)
	}
	results := make(chan partResult, len(readers)) // buffered: a late reader never blocks
	for part, read := range readers {
		go func() {
			ms, err := read(ctx)
			results <- partResult{part, ms, err}
		}()
	}
	done, ok := map[string]bool{}, map[string]bool{}
wait:
	for range readers {
		select {
		case r := <-results:
			done[r.part] = true
			if r.err != nil {
				cc.cfg.Log.Warn("metrics: cluster gauges", "part", r.part, "err", r.err)
				continue
			}
			ok[r.part] = true
			for _, mt := range r.metrics {
				ch <- mt
			}
		case <-ctx.Done():
			break wait
		}
	}
	for _, part := range clusterParts {
		if _, read := readers[part]; !read {
			continue
		}
		if !done[part] {
			cc.cfg.Log.Warn("metrics: cluster gauges took too long", "part", part, "timeout", cc.cfg.Timeout)
		}
		ch <- gauge(descScrape, boolFloat(ok[part]), part)
	}
}

func (cc *clusterCollector) jobs(ctx context.Context) ([]prometheus.Metric, error) {
	out := make([]prometheus.Metric, 0, len(jobs.Statuses))
	for _, st := range jobs.Statuses {
		n, err := cc.store.Count(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("count %s jobs: %w", st, err)
		}
		out = append(out, gauge(descJobs, float64(n), string(st)))
	}
	n, err := cc.store.OutboxLen(ctx)
	if err != nil {
		return nil, fmt.Errorf("webhook outbox: %w", err)
	}
	return append(out, gauge(descOutbox, float64(n))), nil
}

// queues reads Asynq's queue sizes. The Inspector takes no context, so the
// collector's deadline bounds the wait, not the calls.
func (cc *clusterCollector) queues(ctx context.Context) ([]prometheus.Metric, error) {
	names, err := cc.inspector.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	send := tasks.QueueSend
	if cc.cfg.Chain != "" {
		q := cc.cfg.Queues.OrDefault()
		send = q.Send
		names = slices.DeleteFunc(names, func(n string) bool { return n != q.Send && n != q.Webhooks })
	}
	var out []prometheus.Metric
	for _, q := range names {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		info, err := cc.inspector.GetQueueInfo(q)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		for i, n := range []int{info.Pending, info.Active, info.Scheduled, info.Retry, info.Archived} {
			out = append(out, gauge(descQueue, float64(n), q, queueStates[i]))
		}
	}
	if !slices.Contains(names, send) {
		// Asynq lists a queue once a task was enqueued on it; until then the
		// send queue is empty, not unknown.
		for _, s := range queueStates {
			out = append(out, gauge(descQueue, 0, send, s))
		}
	}
	return out, nil
}

// signerList is every signer of this chain: registered by a worker, or
// configured in this process.
func (cc *clusterCollector) signerList(ctx context.Context) ([]common.Address, error) {
	reg, err := cc.registry.Signers(ctx)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(cc.cfg.Signers)
	for a, chain := range reg {
		if chain == cc.cfg.ChainID && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b common.Address) int { return a.Cmp(b) })
	return out, nil
}

func (cc *clusterCollector) signers(ctx context.Context) ([]prometheus.Metric, error) {
	addrs, err := cc.signerList(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]prometheus.Metric, 0, 2*len(addrs))
	for _, a := range addrs {
		alloc := nonce.New(cc.cfg.Redis, cc.cfg.Prefix, cc.cfg.ChainID, a)
		n, err := alloc.Count(ctx)
		if err != nil {
			return nil, fmt.Errorf("in-flight of %s: %w", a.Hex(), err)
		}
		reason, err := alloc.Paused(ctx)
		if err != nil {
			return nil, fmt.Errorf("paused of %s: %w", a.Hex(), err)
		}
		out = append(out, gauge(descInFlight, float64(n), a.Hex()), gauge(descPaused, boolFloat(reason != ""), a.Hex()))
	}
	return out, nil
}

func (cc *clusterCollector) balances(ctx context.Context) ([]prometheus.Metric, error) {
	addrs, err := cc.signerList(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]prometheus.Metric, 0, len(addrs))
	for _, a := range addrs {
		wei, err := cc.balanceProbe(a).Get(ctx, func(ctx context.Context) (*big.Int, error) { return cc.cfg.Node.BalanceAt(ctx, a, nil) })
		if err != nil {
			return nil, fmt.Errorf("balance of %s: %w", a.Hex(), err)
		}
		out = append(out, gauge(descBalance, Ether(wei), a.Hex()))
	}
	return out, nil
}

// weiPerEther is 10^18.
var weiPerEther = new(big.Float).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil))

// Ether converts wei to ether as a float (precise to float64, plenty for a
// gauge).
func Ether(wei *big.Int) float64 {
	if wei == nil {
		return 0
	}
	f, _ := new(big.Float).Quo(new(big.Float).SetInt(wei), weiPerEther).Float64()
	return f
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
