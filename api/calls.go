package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/calldata"
)

// callNode is what reads (POST /v1/calls) and dry runs ("simulate") need
// from the node; Node includes it.
type callNode interface {
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error)
	EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error)
}

// callRequest is the body of POST /v1/calls: a job's call description
// (to, function with its output types, args or data, value, from) and the
// block to run it at.
type callRequest struct {
	To       *string           `json:"to"`
	Function *string           `json:"function"`
	Args     []json.RawMessage `json:"args"`
	Data     *string           `json:"data"`
	Value    json.RawMessage   `json:"value"`
	From     *string           `json:"from"`
	Block    json.RawMessage   `json:"block"`
	ABI      json.RawMessage   `json:"abi"`      // with method: a JSON ABI (contracts.go)
	Chain    *string           `json:"chain"`    // the chain's name or id (chains.go)
	Contract *string           `json:"contract"` // with method: a registered contract
	Method   *string           `json:"method"`
}

// callAnswer is the answer of POST /v1/calls. Result is there when the
// function declares output types.
type callAnswer struct {
	Block  *uint64 `json:"block"` // nil for "pending"
	Raw    string  `json:"raw"`
	Result []any   `json:"result,omitempty"`
}

// Block tags a read may name besides a number.
const (
	blockLatest    = "latest"
	blockPending   = "pending"
	blockSafe      = "safe"
	blockFinalized = "finalized"
)

// Read cache bounds. Results are kept for the chain head only and dropped
// when it moves, so these bound one block's worth of distinct reads.
const (
	// defaultHeadTTL is how long a read of the head number is reused:
	// "latest" may lag the node by this much.
	defaultHeadTTL      = 200 * time.Millisecond
	maxCachedCalls      = 10_000
	maxCachedCallBytes  = 32 << 20
	maxCachedCallResult = 256 << 10
)

// callKey identifies an eth_call at a block.
type callKey struct {
	block    uint64
	from, to common.Address
	value    string
	data     string
}

// callOutcome is what the node answered: data, or an error that is about
// the call (a revert), never a transport failure.
type callOutcome struct {
	raw []byte
	err error
}

// readCache holds the chain head, read at most once per headTTL, and the
// outcomes of calls at that head.
type readCache struct {
	headTTL time.Duration
	now     func() time.Time
	fetch   chan struct{} // a one-slot lock held while the head is read: concurrent readers share one read

	mu       sync.Mutex
	head     *types.Header
	headAt   time.Time
	results  map[callKey]callOutcome
	resBytes int
}

func newReadCache() *readCache {
	return &readCache{headTTL: defaultHeadTTL, now: time.Now, fetch: make(chan struct{}, 1), results: map[callKey]callOutcome{}}
}

// currentHead returns the head block number: the one read within headTTL,
// or (forced) one read after since, or else a new read, which drops every
// cached result when the head changed. It reads the node at most once.
func (r *readCache) currentHead(ctx context.Context, node callNode, force bool, since time.Time) (uint64, error) {
	fresh := func() (uint64, bool) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.head == nil || (force && r.headAt.Before(since)) || (!force && r.now().Sub(r.headAt) >= r.headTTL) {
			return 0, false
		}
		return r.head.Number.Uint64(), true
	}
	if n, ok := fresh(); ok {
		return n, nil
	}
	select {
	case r.fetch <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-r.fetch }()
	if n, ok := fresh(); ok { // another request read it while this one waited
		return n, nil
	}
	h, err := node.HeaderByNumber(ctx, nil)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.head == nil || r.head.Hash() != h.Hash() {
		r.results, r.resBytes = map[callKey]callOutcome{}, 0
	}
	r.head, r.headAt = h, r.now()
	return h.Number.Uint64(), nil
}

// lookup returns the cached outcome of k, if k's block is the head.
func (r *readCache) lookup(k callKey) (callOutcome, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.head == nil || r.head.Number.Uint64() != k.block {
		return callOutcome{}, false
	}
	o, ok := r.results[k]
	return o, ok
}

// store keeps o for k if k's block is still the head and the cache has room.
func (r *readCache) store(k callKey, o callOutcome) {
	size := len(o.raw) + len(k.data) + 128
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.head == nil || r.head.Number.Uint64() != k.block || size > maxCachedCallResult ||
		len(r.results) >= maxCachedCalls || r.resBytes+size > maxCachedCallBytes {
		return
	}
	if _, ok := r.results[k]; !ok {
		r.results[k] = o
		r.resBytes += size
	}
}

// readBody checks the content type and reads the body of a JSON POST,
// answering 413 past the route's body limit.
func readBody(c echo.Context) ([]byte, *Error) {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" && !strings.HasPrefix(strings.ToLower(ct), echo.MIMEApplicationJSON) {
		return nil, invalid("unsupported_media_type", "", "Content-Type must be application/json, got %q", clip(ct))
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		var he *echo.HTTPError
		if errors.As(err, &mbe) || errors.As(err, &he) && he.Code == http.StatusRequestEntityTooLarge {
			return nil, apiError(CodeTooLarge, "request body is too large")
		}
		return nil, invalid("malformed_json", "", "could not read the body: %v", err)
	}
	return body, nil
}

// block is a validated block of a read: a tag, or a number (tag "").
type block struct {
	tag    string
	number uint64
}

func parseBlock(raw json.RawMessage) (block, *Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return block{tag: blockLatest}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return block{}, invalid("invalid_block", "block", "block must be a string or an integer")
		}
		switch strings.ToLower(s) {
		case blockLatest, blockPending, blockSafe, blockFinalized:
			return block{tag: strings.ToLower(s)}, nil
		}
		if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
			n, err := hexutil.DecodeUint64(strings.ToLower(s[:2]) + s[2:])
			if err != nil || n > math.MaxInt64 {
				return block{}, invalid("invalid_block", "block", "block %q is not a 0x hex block number", clip(s))
			}
			return block{number: n}, nil
		}
		if s == "" || strings.Trim(s, "0123456789") != "" {
			return block{}, invalid("invalid_block", "block", "block must be latest, pending, safe, finalized or a block number, got %q", clip(s))
		}
	}
	n, err := parseUint(raw, "block", big.NewInt(math.MaxInt64))
	if err != nil {
		err.Code = "invalid_block"
		return block{}, err
	}
	return block{number: n.Uint64()}, nil
}

// call answers POST /v1/calls: an eth_call of the described call, its
// result decoded with the function's output types. Outcomes at the head
// are cached until the head moves.
func (s *Server) call(c echo.Context) error {
	ctx := c.Request().Context()
	started := time.Now()
	body, e := readBody(c)
	if e != nil {
		return e
	}
	var req callRequest
	if e := decodeJSON(body, &req); e != nil {
		return e
	}
	if e := s.checkChain(req.Chain); e != nil {
		return e
	}
	call, e := s.validateRequest(ctx, &jobRequest{To: req.To, Function: req.Function, Args: req.Args, Data: req.Data, Value: req.Value, From: req.From,
		ABI: req.ABI, Contract: req.Contract, Method: req.Method})
	if e != nil {
		return e
	}
	if call.Deploy {
		return invalid("missing_field", "to", "to is required: a read calls a deployed contract (deploy with POST /v1/jobs)")
	}
	var method *abi.Method
	if call.Function != "" {
		m, err := calldata.ParseSignature(call.Function)
		if err != nil { // validate parsed it already
			return invalid("invalid_function", "function", "%v", err)
		}
		method = &m
	}
	blk, e := parseBlock(req.Block)
	if e != nil {
		return e
	}

	// The block to call at: a number (cacheable when it is the head), or
	// pending, which has none.
	var at *big.Int
	var number *uint64
	cacheable := false
	switch blk.tag {
	case blockPending:
		at = big.NewInt(int64(rpc.PendingBlockNumber))
	case blockSafe, blockFinalized:
		tag := rpc.SafeBlockNumber
		if blk.tag == blockFinalized {
			tag = rpc.FinalizedBlockNumber
		}
		h, err := s.chain.Node.HeaderByNumber(ctx, big.NewInt(int64(tag)))
		if err != nil {
			return s.nodeFailure(err, "read the "+blk.tag+" block")
		}
		n := h.Number.Uint64()
		number, at = &n, new(big.Int).SetUint64(n)
	default:
		head, err := s.reads.currentHead(ctx, s.chain.Node, false, started)
		if err != nil {
			return s.nodeFailure(err, "read the head block")
		}
		n := head
		if blk.tag == "" {
			n = blk.number
			if n > head { // the cached head may be a block behind
				if head, err = s.reads.currentHead(ctx, s.chain.Node, true, started); err != nil {
					return s.nodeFailure(err, "read the head block")
				}
				if n > head {
					return invalid("out_of_range", "block", "block %d is ahead of the chain head %d", n, head)
				}
			}
		}
		number, at, cacheable = &n, new(big.Int).SetUint64(n), n == head
	}

	msg := ethereum.CallMsg{To: &call.To, Data: call.Data, Value: call.Value}
	if call.From != nil {
		msg.From = *call.From
	}
	key := callKey{from: msg.From, to: call.To, value: call.Value.String(), data: string(call.Data)}
	if number != nil {
		key.block = *number
	}
	out, hit := callOutcome{}, false
	if cacheable {
		out, hit = s.reads.lookup(key)
	}
	if !hit {
		raw, err := s.chain.Node.CallContract(ctx, msg, at)
		if err != nil && !callAnswered(err) {
			return s.nodeFailure(err, "eth_call")
		}
		out = callOutcome{raw: raw, err: err}
		if cacheable {
			s.reads.store(key, out)
		}
	}
	if out.err != nil {
		return s.callFailure(out.err, "eth_call", call)
	}
	ans := callAnswer{Block: number, Raw: hexutil.Encode(out.raw)}
	if method != nil && len(method.Outputs) > 0 {
		vals, err := calldata.DecodeOutputs(*method, out.raw)
		if err != nil { // the raw result, not a decode that would not fit in memory
			return &Error{Kind: CodeCallFailed, Code: "undecodable_result", Field: "function",
				Message: "the call succeeded but its result does not decode as the function's output types: " + err.Error() + "; raw result " + rawHex(out.raw)}
		}
		ans.Result = vals
	}
	return c.JSON(http.StatusOK, ans)
}

// rawHex is data in hex for an error message, its first 2 KiB when longer.
func rawHex(data []byte) string {
	const most = 2 << 10
	if len(data) > most {
		return hexutil.Encode(data[:most]) + "…"
	}
	return hexutil.Encode(data)
}

// callAnswered reports whether err is the node's verdict on the call itself
// (a revert or a halt, the same at the same block every time), as opposed
// to a failure to get one: only those are cached.
func callAnswered(err error) bool {
	f := classifyNodeError(err)
	return f == failureReverted || f == failureCall
}
