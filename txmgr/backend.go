// Package txmgr builds, signs, broadcasts and tracks Ethereum transactions.
// It knows nothing about HTTP or Asynq: it talks to a node through the
// small Backend interface, so tests can hand it the simulated backend,
// anvil, or a wrapper that injects faults.
package txmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/relayq/relayq/internal/nodeurl"
)

// Backend is what txmgr needs from a node.
type Backend interface {
	ChainID(ctx context.Context) (*big.Int, error)
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	SuggestGasTipCap(ctx context.Context) (*big.Int, error)
	EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error)
	CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error)
	SendTransaction(ctx context.Context, tx *types.Transaction) error
	NonceAt(ctx context.Context, account common.Address, block *big.Int) (uint64, error)
	PendingNonceAt(ctx context.Context, account common.Address) (uint64, error)
	BalanceAt(ctx context.Context, account common.Address, block *big.Int) (*big.Int, error)
	// TransactionReceipts fetches receipts in one round trip; a tx the node
	// has not mined is a nil entry, not an error.
	TransactionReceipts(ctx context.Context, hashes []common.Hash) ([]*types.Receipt, error)
	// TransactionsKnown reports, in one round trip, which transactions the
	// node knows (in its pool or mined): a false entry was dropped.
	TransactionsKnown(ctx context.Context, hashes []common.Hash) ([]bool, error)
}

// RPC is a Backend over JSON-RPC with a deadline on every call. Every
// error its Backend methods return names the node only by its redacted URL
// (see nodeError): the embedded ethclient.Client's other methods are for
// tests and tools, not for errors that reach users.
type RPC struct {
	*ethclient.Client
	rpc     *rpc.Client
	timeout time.Duration
	url     string    // never shown: providers put API keys in it
	est     estimates // concurrent EstimateGas calls, batched (estimate.go)
}

var _ Backend = (*RPC)(nil)

// Dial connects to a node's JSON-RPC endpoint. Every call made through the
// returned backend gets timeout as its deadline unless ctx has a sooner one.
func Dial(ctx context.Context, url string, timeout time.Duration) (*RPC, error) {
	// Go's default keeps 2 idle connections per host: with dozens of calls
	// in flight, every other call would open (and the node accept) a new
	// TCP connection. Keep as many as the worker runs at once.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = maxIdleRPCConns, maxIdleRPCConns
	c, err := rpc.DialOptions(ctx, url, rpc.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		return nil, fmt.Errorf("dial node %s: %w", nodeurl.Redact(url), redact(err, url))
	}
	return &RPC{Client: ethclient.NewClient(c), rpc: c, timeout: timeout, url: url}, nil
}

// nodeError is a node's error with the node's URL taken out of its text.
// It unwraps to the original, so errors.Is and errors.As (rpc.DataError,
// rpc.Error, net.Error, syscall errors) and Classify see what they saw.
type nodeError struct {
	msg string
	err error
}

func (e *nodeError) Error() string { return e.msg }
func (e *nodeError) Unwrap() error { return e.err }

// redact is the one place a node's error is made fit to show: Go's HTTP
// client and go-ethereum repeat the whole URL (`Post "https://x/v2/KEY":
// dial tcp …`), and from here errors reach API answers, job records,
// webhooks, metrics and logs. A *url.Error in the chain gets the redacted
// URL too, for whoever unwraps down to it.
func redact(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = nodeurl.Redact(ue.URL)
	}
	msg := err.Error()
	if clean := nodeurl.Scrub(msg, rawURL); clean != msg {
		return &nodeError{msg: clean, err: err}
	}
	return err
}

// redact is redact with r's URL.
func (r *RPC) redact(err error) error { return redact(err, r.url) }

// maxIdleRPCConns is how many idle HTTP connections to the node are kept.
const maxIdleRPCConns = 256

// Close closes the connection.
func (r *RPC) Close() { r.rpc.Close() }

func (r *RPC) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

// ChainID asks the node for its chain id.
func (r *RPC) ChainID(ctx context.Context) (*big.Int, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	v, err := r.Client.ChainID(ctx)
	return v, r.redact(err)
}

// HeaderByNumber returns a header (nil number: latest).
func (r *RPC) HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	v, err := r.Client.HeaderByNumber(ctx, number)
	return v, r.redact(err)
}

// SuggestGasTipCap asks for a priority fee.
func (r *RPC) SuggestGasTipCap(ctx context.Context) (*big.Int, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	v, err := r.Client.SuggestGasTipCap(ctx)
	return v, r.redact(err)
}

// EstimateGas estimates a call's gas on the latest block; a revert comes
// back as an error with revert data.
//
// The block is named because nodes differ: geth estimates on "latest" by
// default, anvil on "pending", which it builds by executing every pending
// transaction. With a thousand of a signer's own transactions in the pool,
// an estimate on pending cost anvil 3.9 ms of CPU against 0.15 ms on latest
// (measured here), and made the node, not relayq, the bottleneck.
//
// Concurrent estimates share one JSON-RPC batch (estimate.go).
func (r *RPC) EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error) {
	return r.estimateBatched(ctx, msg)
}

// CallContract runs eth_call.
func (r *RPC) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	v, err := r.Client.CallContract(ctx, msg, block)
	return v, r.redact(err)
}

// SendTransaction broadcasts a signed transaction.
func (r *RPC) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	return r.redact(r.Client.SendTransaction(ctx, tx))
}

// NonceAt returns the account's nonce at a block (nil: latest).
func (r *RPC) NonceAt(ctx context.Context, a common.Address, block *big.Int) (uint64, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	v, err := r.Client.NonceAt(ctx, a, block)
	return v, r.redact(err)
}

// PendingNonceAt returns the account's nonce including the node's pool.
func (r *RPC) PendingNonceAt(ctx context.Context, a common.Address) (uint64, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	v, err := r.Client.PendingNonceAt(ctx, a)
	return v, r.redact(err)
}

// BalanceAt returns the account's balance.
func (r *RPC) BalanceAt(ctx context.Context, a common.Address, block *big.Int) (*big.Int, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	v, err := r.Client.BalanceAt(ctx, a, block)
	return v, r.redact(err)
}

// TransactionReceipts fetches receipts in JSON-RPC batches.
func (r *RPC) TransactionReceipts(ctx context.Context, hashes []common.Hash) ([]*types.Receipt, error) {
	out, errs, err := batchByHash[*types.Receipt](ctx, r, "eth_getTransactionReceipt", hashes)
	if err != nil {
		return nil, fmt.Errorf("receipts batch: %w", err)
	}
	for i, e := range errs {
		// geth answers "transaction indexing is in progress" for a tx it
		// has not indexed yet: the same as not mined for us.
		if e != nil && !isNotYet(e) {
			return nil, fmt.Errorf("receipt of %s: %w", hashes[i], e)
		}
		if e != nil {
			out[i] = nil
		}
	}
	return out, nil
}

// TransactionsKnown asks eth_getTransactionByHash for every hash, in
// JSON-RPC batches.
func (r *RPC) TransactionsKnown(ctx context.Context, hashes []common.Hash) ([]bool, error) {
	res, errs, err := batchByHash[*json.RawMessage](ctx, r, "eth_getTransactionByHash", hashes)
	if err != nil {
		return nil, fmt.Errorf("transactions batch: %w", err)
	}
	known := make([]bool, len(hashes))
	for i, e := range errs {
		if e != nil {
			return nil, fmt.Errorf("transaction %s: %w", hashes[i], e)
		}
		known[i] = res[i] != nil && string(*res[i]) != "null"
	}
	return known, nil
}

// batchByHash calls method once per hash, batched, under one deadline, and
// returns each answer with each call's own error.
func batchByHash[T any](ctx context.Context, r *RPC, method string, hashes []common.Hash) ([]T, []error, error) {
	if len(hashes) == 0 {
		return nil, nil, nil
	}
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	out := make([]T, len(hashes))
	elems := make([]rpc.BatchElem, len(hashes))
	for i, h := range hashes {
		elems[i] = rpc.BatchElem{Method: method, Args: []any{h}, Result: &out[i]}
	}
	if err := r.batch(ctx, elems); err != nil {
		return nil, nil, err
	}
	errs := make([]error, len(hashes))
	for i, e := range elems {
		errs[i] = e.Error
	}
	return out, errs, nil
}

// maxBatch is the most calls sent in one JSON-RPC batch: geth refuses
// batches over 1,000 by default, and providers often allow fewer.
const maxBatch = 200

// batch sends elems in JSON-RPC batches of at most maxBatch calls.
func (r *RPC) batch(ctx context.Context, elems []rpc.BatchElem) error {
	for len(elems) > 0 {
		n := min(len(elems), maxBatch)
		if err := r.rpc.BatchCallContext(ctx, elems[:n]); err != nil {
			return r.redact(err)
		}
		for i := range elems[:n] {
			elems[i].Error = r.redact(elems[i].Error)
		}
		elems = elems[n:]
	}
	return nil
}

func isNotYet(err error) bool {
	return errors.Is(err, ethereum.NotFound) || strings.Contains(strings.ToLower(err.Error()), "transaction indexing is in progress")
}

// RawTx decodes a persisted signed transaction.
func RawTx(raw string) (*types.Transaction, error) {
	b, err := hexutil.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("decode raw tx: %w", err)
	}
	tx := new(types.Transaction)
	if err := tx.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("decode raw tx: %w", err)
	}
	return tx, nil
}

// Observer hears of one call to the node: its JSON-RPC method, how long it
// took and its error (nil on success). metrics.Metrics.RPC is one.
type Observer func(method string, took time.Duration, err error)

// Observed wraps b so that observe hears of every call made through it. It
// is the one place node calls are measured; txmgr itself knows nothing of
// metrics.
func Observed(b Backend, observe Observer) Backend {
	if observe == nil {
		return b
	}
	return &observed{b: b, observe: observe}
}

type observed struct {
	b       Backend
	observe Observer
}

func (o *observed) done(method string, start time.Time, err error) {
	o.observe(method, time.Since(start), err)
}

func (o *observed) ChainID(ctx context.Context) (*big.Int, error) {
	start := time.Now()
	v, err := o.b.ChainID(ctx)
	o.done("eth_chainId", start, err)
	return v, err
}

func (o *observed) HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error) {
	start := time.Now()
	v, err := o.b.HeaderByNumber(ctx, number)
	o.done("eth_getBlockByNumber", start, err)
	return v, err
}

func (o *observed) SuggestGasTipCap(ctx context.Context) (*big.Int, error) {
	start := time.Now()
	v, err := o.b.SuggestGasTipCap(ctx)
	o.done("eth_maxPriorityFeePerGas", start, err)
	return v, err
}

func (o *observed) EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error) {
	start := time.Now()
	v, err := o.b.EstimateGas(ctx, msg)
	o.done("eth_estimateGas", start, err)
	return v, err
}

func (o *observed) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	start := time.Now()
	v, err := o.b.CallContract(ctx, msg, block)
	o.done("eth_call", start, err)
	return v, err
}

func (o *observed) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	start := time.Now()
	err := o.b.SendTransaction(ctx, tx)
	o.done("eth_sendRawTransaction", start, err)
	return err
}

func (o *observed) NonceAt(ctx context.Context, a common.Address, block *big.Int) (uint64, error) {
	start := time.Now()
	v, err := o.b.NonceAt(ctx, a, block)
	o.done("eth_getTransactionCount", start, err)
	return v, err
}

func (o *observed) PendingNonceAt(ctx context.Context, a common.Address) (uint64, error) {
	start := time.Now()
	v, err := o.b.PendingNonceAt(ctx, a)
	o.done("eth_getTransactionCount", start, err)
	return v, err
}

func (o *observed) BalanceAt(ctx context.Context, a common.Address, block *big.Int) (*big.Int, error) {
	start := time.Now()
	v, err := o.b.BalanceAt(ctx, a, block)
	o.done("eth_getBalance", start, err)
	return v, err
}

// TransactionReceipts counts one call per request, however many receipts
// it batches; an empty request makes no call and is not counted.
func (o *observed) TransactionReceipts(ctx context.Context, hashes []common.Hash) ([]*types.Receipt, error) {
	if len(hashes) == 0 {
		return o.b.TransactionReceipts(ctx, hashes)
	}
	start := time.Now()
	v, err := o.b.TransactionReceipts(ctx, hashes)
	o.done("eth_getTransactionReceipt", start, err)
	return v, err
}

// TransactionsKnown counts like TransactionReceipts.
func (o *observed) TransactionsKnown(ctx context.Context, hashes []common.Hash) ([]bool, error) {
	if len(hashes) == 0 {
		return o.b.TransactionsKnown(ctx, hashes)
	}
	start := time.Now()
	v, err := o.b.TransactionsKnown(ctx, hashes)
	o.done("eth_getTransactionByHash", start, err)
	return v, err
}
