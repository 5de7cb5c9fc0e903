package txmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// Node is a Backend that holds connections: what a relayq process dials.
type Node interface {
	Backend
	BatchSender
	BlockReceiptser
	Close()
}

var (
	_ Node = (*RPC)(nil)
	_ Node = (*Multi)(nil)
)

// ErrNoEndpoint is returned (wrapping the last fault seen) when every
// endpoint's circuit breaker is open.
var ErrNoEndpoint = errors.New("no rpc endpoint available")

// Defaults of MultiConfig.
const (
	DefaultFailThreshold = 3
	DefaultCooldown      = 5 * time.Second
	DefaultMaxHeadLag    = 3
	DefaultHeadRefresh   = 2 * time.Second
)

// MultiConfig tunes a Multi. Zero fields take the defaults above.
type MultiConfig struct {
	// FailThreshold is how many faults in a row open an endpoint's breaker.
	FailThreshold int
	// Cooldown is how long an open breaker keeps calls away; then one call
	// probes the endpoint (half-open) and its outcome closes or re-opens it.
	Cooldown time.Duration
	// MaxHeadLag is how many blocks an endpoint's head may be behind the
	// best head seen before other endpoints are preferred.
	MaxHeadLag uint64
	// HeadRefresh is how often the heads of endpoints not serving head
	// reads are refreshed in the background, so a lagging endpoint that
	// caught up is noticed.
	HeadRefresh time.Duration
	// Now is the clock (time.Now when nil); tests pass their own.
	Now func() time.Time
	// Log hears of breakers opening and closing (slog.Default when nil).
	Log *slog.Logger
}

// Endpoint is one node behind a Multi.
type Endpoint struct {
	// Name identifies the endpoint in errors, logs and Health; it must not
	// carry secrets (DialMany uses the URL's scheme and host).
	Name    string
	Backend Backend
}

// Multi is a Backend over several endpoints serving the same chain, primary
// first. Reads go to the first endpoint that is healthy (breaker closed,
// head not lagging), in configured order, and fall over to the next one on
// a fault: a transport error, a timeout, HTTP 429/5xx, a rate limit or a
// node that lacks the block. A node's answer (a revert, "nonce too low",
// "already known", any other JSON-RPC error) is returned as it is: another
// node would say the same. Broadcasts go to every available endpoint at
// once.
//
// Order is by configuration, not latency, so that a healthy primary keeps
// all the traffic and reads stay consistent with one node's view.
type Multi struct {
	eps  []*endpoint
	cfg  MultiConfig
	log  *slog.Logger
	stop context.CancelFunc
	bg   context.Context
	wg   sync.WaitGroup

	mu   sync.Mutex // guards every endpoint's state and best
	best uint64     // highest head seen on any endpoint
}

// endpoint is an Endpoint and its health, guarded by Multi.mu.
type endpoint struct {
	Endpoint
	fails      int       // faults in a row
	openUntil  time.Time // zero: breaker closed
	probing    bool      // a half-open probe is in flight
	calls      uint64
	faults     uint64
	latency    time.Duration // moving average of answered calls
	head       uint64
	headAt     time.Time // zero: head never seen
	refreshing bool
	lastErr    error
}

// DialMany connects to every URL (primary first) and returns a Multi over
// them with the default MultiConfig. Every call to one endpoint gets
// timeout as its deadline. The endpoints that answer must agree on the
// chain id: failing over to another chain would be worse than failing.
func DialMany(ctx context.Context, urls []string, timeout time.Duration) (*Multi, error) {
	return dialMany(ctx, urls, timeout, MultiConfig{})
}

// DialNode dials one URL with Dial, several with DialMany (logging breaker
// changes to log).
func DialNode(ctx context.Context, urls []string, timeout time.Duration, log *slog.Logger) (Node, error) {
	switch len(urls) {
	case 0:
		return nil, errors.New("dial node: no url")
	case 1:
		r, err := Dial(ctx, urls[0], timeout)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	m, err := dialMany(ctx, urls, timeout, MultiConfig{Log: log})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func dialMany(ctx context.Context, urls []string, timeout time.Duration, cfg MultiConfig) (*Multi, error) {
	if len(urls) == 0 {
		return nil, errors.New("dial nodes: no url")
	}
	eps := make([]Endpoint, 0, len(urls))
	closeAll := func() {
		for _, e := range eps {
			e.Backend.(*RPC).Close()
		}
	}
	for i, u := range urls {
		r, err := Dial(ctx, u, timeout)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("endpoint %s: %w", EndpointName(i, u), err)
		}
		eps = append(eps, Endpoint{Name: EndpointName(i, u), Backend: r})
	}
	if err := sameChain(ctx, eps); err != nil {
		closeAll()
		return nil, err
	}
	return NewMulti(eps, cfg), nil
}

// EndpointName names the i-th (0-based) URL without its path, query or
// user info, where providers put API keys: "#1 https://host:port".
func EndpointName(i int, rawURL string) string {
	host := "?"
	scheme := ""
	if u, err := url.Parse(rawURL); err == nil {
		host, scheme = u.Host, u.Scheme+"://"
	}
	return fmt.Sprintf("#%d %s%s", i+1, scheme, host)
}

// sameChain asks every endpoint for its chain id at once; an endpoint that
// does not answer now is not held against it.
func sameChain(ctx context.Context, eps []Endpoint) error {
	ids := make([]*big.Int, len(eps))
	var wg sync.WaitGroup
	for i, e := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], _ = e.Backend.ChainID(ctx)
		}()
	}
	wg.Wait()
	var first *big.Int
	var firstName string
	for i, id := range ids {
		if id == nil {
			continue
		}
		if first == nil {
			first, firstName = id, eps[i].Name
			continue
		}
		if first.Cmp(id) != 0 {
			return fmt.Errorf("endpoint %s serves chain %s but %s serves chain %s", eps[i].Name, id, firstName, first)
		}
	}
	return nil
}

// NewMulti returns a Multi over eps, primary first. Close it to stop its
// background head refreshes and close the endpoints that have a Close.
func NewMulti(eps []Endpoint, cfg MultiConfig) *Multi {
	if cfg.FailThreshold <= 0 {
		cfg.FailThreshold = DefaultFailThreshold
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = DefaultCooldown
	}
	if cfg.MaxHeadLag == 0 {
		cfg.MaxHeadLag = DefaultMaxHeadLag
	}
	if cfg.HeadRefresh <= 0 {
		cfg.HeadRefresh = DefaultHeadRefresh
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Multi{cfg: cfg, log: cfg.Log}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.bg, m.stop = context.WithCancel(context.Background())
	for _, e := range eps {
		m.eps = append(m.eps, &endpoint{Endpoint: e})
	}
	return m
}

// Close stops background work and closes every endpoint.
func (m *Multi) Close() {
	// Under mu, so that no refresh is started (wg.Add) once Wait may run.
	m.mu.Lock()
	m.stop()
	m.mu.Unlock()
	m.wg.Wait()
	for _, e := range m.eps {
		if c, ok := e.Backend.(interface{ Close() }); ok {
			c.Close()
		}
	}
}

// EndpointHealth is a snapshot of one endpoint's health.
type EndpointHealth struct {
	Name string
	// State is the breaker's: "closed" (in use), "open" (kept away until
	// its cool-down ends) or "half-open" (the next call probes it).
	State string
	// ConsecutiveFaults is the run of faults that opens the breaker.
	ConsecutiveFaults int
	// Calls and Faults count calls made to the endpoint and those that
	// failed with a fault.
	Calls, Faults uint64
	// Latency is a moving average of its calls' durations.
	Latency time.Duration
	// Head is its latest block seen (0: never seen) and HeadLag how far
	// that is behind the best head seen on any endpoint.
	Head, HeadLag uint64
	// Lagging reports that HeadLag is over the limit: others are preferred.
	Lagging bool
	// LastError is the last fault's text ("" if none).
	LastError string
}

// Health returns every endpoint's health, in configured order.
func (m *Multi) Health() []EndpointHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	out := make([]EndpointHealth, len(m.eps))
	for i, e := range m.eps {
		h := EndpointHealth{
			Name: e.Name, State: e.state(now), ConsecutiveFaults: e.fails,
			Calls: e.calls, Faults: e.faults, Latency: e.latency,
			Head: e.head, Lagging: m.lagging(e),
		}
		if !e.headAt.IsZero() {
			h.HeadLag = m.best - e.head
		}
		if e.lastErr != nil {
			h.LastError = e.lastErr.Error()
		}
		out[i] = h
	}
	return out
}

func (e *endpoint) state(now time.Time) string {
	switch {
	case e.openUntil.IsZero():
		return "closed"
	case now.Before(e.openUntil):
		return "open"
	default:
		return "half-open"
	}
}

// lagging reports whether e's head is too far behind; an endpoint whose
// head was never seen is not. Called with m.mu held.
func (m *Multi) lagging(e *endpoint) bool {
	return !e.headAt.IsZero() && m.best > e.head+m.cfg.MaxHeadLag
}

// order returns the endpoints a call may use now, best first: those not
// lagging in configured order, then the lagging ones. An endpoint whose
// breaker is open is left out until its cool-down ends; then it takes its
// usual place, so that a recovered primary is probed and taken back.
func (m *Multi) order() []*endpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var first, later []*endpoint
	for _, e := range m.eps {
		switch e.state(now) {
		case "open":
			continue
		case "half-open":
			if e.probing {
				continue
			}
		}
		if m.lagging(e) {
			later = append(later, e)
		} else {
			first = append(first, e)
		}
	}
	return append(first, later...)
}

// acquire reserves e for one call: always when its breaker is closed, and
// as the one probe when half-open. It reports whether the call may go
// ahead and whether it is the probe.
func (m *Multi) acquire(e *endpoint) (ok, probe bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch e.state(m.cfg.Now()) {
	case "closed":
		return true, false
	case "half-open":
		if e.probing {
			return false, false
		}
		e.probing = true
		return true, true
	}
	return false, false
}

// outcome is what one call says about its endpoint's health.
type outcome int

const (
	answered outcome = iota // the node answered (with a result or an error)
	faulted                 // the node did not answer usefully: fall over
	neutral                 // the caller gave up: says nothing of the node
)

// classify tells the outcome of a call made under ctx that returned err.
func classifyOutcome(ctx context.Context, err error) outcome {
	switch {
	case err == nil:
		return answered
	case ctx.Err() != nil:
		return neutral
	case IsFault(err):
		return faulted
	}
	return answered
}

// IsFault reports whether err says an endpoint failed rather than answered:
// a transport error, a timeout, HTTP 429 or 5xx, a rate limit or a node
// missing the requested block. Such a call may go to another endpoint. A
// revert, a nonce error, "already known" or any other answer of the node is
// not a fault.
func IsFault(err error) bool {
	class, reason := Explain(err)
	if class != ClassRetryable {
		return false
	}
	switch reason {
	case "timeout", "connection failed", "node unavailable", "rate limited", "node behind":
		return true
	}
	return strings.HasPrefix(reason, "http ")
}

// record books one call's outcome on e and releases its probe.
func (m *Multi) record(e *endpoint, probe bool, took time.Duration, o outcome, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	if probe {
		e.probing = false
	}
	switch o {
	case answered:
		e.calls++
		e.latency = movingAverage(e.latency, took)
		if !e.openUntil.IsZero() {
			m.log.Info("rpc endpoint recovered", "endpoint", e.Name)
		}
		e.fails, e.openUntil = 0, time.Time{}
	case faulted:
		e.calls++
		e.faults++
		e.fails++
		e.lastErr = err
		e.latency = movingAverage(e.latency, took)
		switch {
		case probe:
			e.openUntil = now.Add(m.cfg.Cooldown)
		case e.openUntil.IsZero() && e.fails >= m.cfg.FailThreshold:
			e.openUntil = now.Add(m.cfg.Cooldown)
			m.log.Warn("rpc endpoint circuit open", "endpoint", e.Name, "faults", e.fails, "cooldown", m.cfg.Cooldown, "err", err)
		}
	}
}

func movingAverage(avg, took time.Duration) time.Duration {
	if avg == 0 {
		return took
	}
	return (avg*4 + took) / 5
}

// call runs f on the best endpoint, falling over to the next on a fault.
func call[T any](ctx context.Context, m *Multi, f func(context.Context, *endpoint) (T, error)) (T, error) {
	var zero T
	var last error
	for _, e := range m.order() {
		ok, probe := m.acquire(e)
		if !ok {
			continue
		}
		start := time.Now()
		v, err := f(ctx, e)
		o := classifyOutcome(ctx, err)
		m.record(e, probe, time.Since(start), o, err)
		if o != faulted {
			return v, err
		}
		last = fmt.Errorf("rpc %s: %w", e.Name, err)
	}
	if last != nil {
		return zero, last
	}
	return zero, m.noEndpoint()
}

// noEndpoint is the error when every breaker is open; it wraps the primary's
// last fault so that Classify still sees a transport error.
func (m *Multi) noEndpoint() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.eps {
		if e.lastErr != nil {
			return fmt.Errorf("%w (%s: %w)", ErrNoEndpoint, e.Name, e.lastErr)
		}
	}
	return ErrNoEndpoint
}

// ChainID asks the best endpoint for the chain id.
func (m *Multi) ChainID(ctx context.Context) (*big.Int, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) (*big.Int, error) { return e.Backend.ChainID(ctx) })
}

// HeaderByNumber returns a header from the best endpoint. A latest-header
// read (nil number) also records the endpoint's head, and refreshes the
// heads of the others when they are stale, for head-lag preference.
func (m *Multi) HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error) {
	h, err := call(ctx, m, func(ctx context.Context, e *endpoint) (*types.Header, error) {
		h, err := e.Backend.HeaderByNumber(ctx, number)
		if err == nil && number == nil && h != nil {
			m.observeHead(e, h.Number.Uint64())
		}
		return h, err
	})
	if number == nil {
		m.refreshHeads()
	}
	return h, err
}

// observeHead records e's latest block.
func (m *Multi) observeHead(e *endpoint, head uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.head, e.headAt = head, m.cfg.Now()
	m.best = max(m.best, head)
}

// refreshHeads reads, in the background, the head of every endpoint whose
// breaker is closed and whose head is older than HeadRefresh.
func (m *Multi) refreshHeads() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.bg.Err() != nil {
		return
	}
	now := m.cfg.Now()
	for _, e := range m.eps {
		if e.refreshing || !e.openUntil.IsZero() || now.Sub(e.headAt) < m.cfg.HeadRefresh {
			continue
		}
		e.refreshing = true
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			start := time.Now()
			h, err := e.Backend.HeaderByNumber(m.bg, nil)
			o := classifyOutcome(m.bg, err)
			m.record(e, false, time.Since(start), o, err)
			if err == nil && h != nil {
				m.observeHead(e, h.Number.Uint64())
			}
			m.mu.Lock()
			e.refreshing = false
			m.mu.Unlock()
		}()
	}
}

// SuggestGasTipCap asks the best endpoint for a priority fee.
func (m *Multi) SuggestGasTipCap(ctx context.Context) (*big.Int, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) (*big.Int, error) { return e.Backend.SuggestGasTipCap(ctx) })
}

// EstimateGas estimates on the best endpoint.
func (m *Multi) EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) (uint64, error) { return e.Backend.EstimateGas(ctx, msg) })
}

// CallContract runs eth_call on the best endpoint.
func (m *Multi) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) ([]byte, error) { return e.Backend.CallContract(ctx, msg, block) })
}

// NonceAt reads the account's nonce from the best endpoint.
func (m *Multi) NonceAt(ctx context.Context, a common.Address, block *big.Int) (uint64, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) (uint64, error) { return e.Backend.NonceAt(ctx, a, block) })
}

// PendingNonceAt reads the account's pending nonce from the best endpoint.
func (m *Multi) PendingNonceAt(ctx context.Context, a common.Address) (uint64, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) (uint64, error) { return e.Backend.PendingNonceAt(ctx, a) })
}

// BalanceAt reads the account's balance from the best endpoint.
func (m *Multi) BalanceAt(ctx context.Context, a common.Address, block *big.Int) (*big.Int, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) (*big.Int, error) { return e.Backend.BalanceAt(ctx, a, block) })
}

// TransactionReceipts fetches receipts from the best endpoint.
func (m *Multi) TransactionReceipts(ctx context.Context, hashes []common.Hash) ([]*types.Receipt, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	return call(ctx, m, func(ctx context.Context, e *endpoint) ([]*types.Receipt, error) {
		return e.Backend.TransactionReceipts(ctx, hashes)
	})
}

// TransactionsKnown asks the best endpoint which transactions it knows.
// Broadcasts go to every endpoint, so any of them should know ours.
func (m *Multi) TransactionsKnown(ctx context.Context, hashes []common.Hash) ([]bool, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	return call(ctx, m, func(ctx context.Context, e *endpoint) ([]bool, error) {
		return e.Backend.TransactionsKnown(ctx, hashes)
	})
}

// BlockReceipts fetches a block's receipts from the best endpoint.
func (m *Multi) BlockReceipts(ctx context.Context, number uint64) ([]*types.Receipt, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) ([]*types.Receipt, error) {
		br, ok := e.Backend.(BlockReceiptser)
		if !ok {
			return nil, fmt.Errorf("receipts of block %d: %w", number, errors.ErrUnsupported)
		}
		return br.BlockReceipts(ctx, number)
	})
}

// SendTransaction broadcasts tx to every available endpoint at once; see
// CombineBroadcast for the answer.
func (m *Multi) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	return m.SendTransactions(ctx, []*types.Transaction{tx})[0]
}

// SendTransactions broadcasts txs to every available endpoint at once (in
// batches where the endpoint can) and returns, for each transaction, the
// endpoints' answers combined by CombineBroadcast.
func (m *Multi) SendTransactions(ctx context.Context, txs []*types.Transaction) []error {
	out := make([]error, len(txs))
	if len(txs) == 0 {
		return out
	}
	type use struct {
		e     *endpoint
		probe bool
		errs  []error
	}
	var uses []*use
	for _, e := range m.order() {
		if ok, probe := m.acquire(e); ok {
			uses = append(uses, &use{e: e, probe: probe})
		}
	}
	if len(uses) == 0 {
		err := m.noEndpoint()
		for i := range out {
			out[i] = err
		}
		return out
	}
	var wg sync.WaitGroup
	for _, u := range uses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			u.errs = SendAll(ctx, u.e.Backend, txs)
			o, err := broadcastOutcome(ctx, u.errs)
			m.record(u.e, u.probe, time.Since(start), o, err)
		}()
	}
	wg.Wait()
	answers := make([]error, len(uses))
	for i := range txs {
		for k, u := range uses {
			answers[k] = u.errs[i]
		}
		out[i] = CombineBroadcast(answers...)
	}
	return out
}

// broadcastOutcome reads one endpoint's answers to a broadcast: a fault
// only when no transaction got an answer.
func broadcastOutcome(ctx context.Context, errs []error) (outcome, error) {
	var first error
	for _, err := range errs {
		o := classifyOutcome(ctx, err)
		if o != faulted {
			return o, err
		}
		if first == nil {
			first = err
		}
	}
	return faulted, first
}

// CombineBroadcast folds the answers of several endpoints to one broadcast
// into one. Accepted anywhere is accepted (nil). Otherwise the most telling
// answer wins, in this order: "already known" (the transaction is in a pool:
// as good as sent), "nonce too low" (the nonce is used: reconcile), a
// permanent rejection, "insufficient funds", another retryable answer of a
// node (underpriced, pool full), and last a fault (transport, timeout,
// 429/5xx), which says nothing about the transaction. Ties go to the
// earlier endpoint.
func CombineBroadcast(errs ...error) error {
	var best error
	bestRank := -1
	for _, err := range errs {
		if err == nil {
			return nil
		}
		if r := broadcastRank(err); r > bestRank {
			best, bestRank = err, r
		}
	}
	return best
}

func broadcastRank(err error) int {
	switch Classify(err) {
	case ClassAlreadyKnown:
		return 5
	case ClassNonceTooLow:
		return 4
	case ClassPermanent:
		return 3
	case ClassPaused:
		return 2
	}
	if IsFault(err) {
		return 0
	}
	return 1
}
