package txmgr

import (
	"context"
	"sync"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

// Estimates that arrive while another is in flight travel together: the
// worker estimates each job of a send batch at about the same moment, and
// one HTTP request carrying a JSON-RPC batch of estimates costs relayq and
// the node far less than one request each (the request's parsing, the
// connection, the goroutines on both sides). With no load an estimate goes
// out alone at once and waits for nobody. Each call keeps its own result
// and its own error, of the same type a lone call gets, so Classify and
// the revert decoding see no difference.

// estimateReq is one EstimateGas call waiting for its batch.
type estimateReq struct {
	msg  ethereum.CallMsg
	gas  hexutil.Uint64
	err  error
	done chan struct{}
}

// estimates collects an RPC's concurrent estimates.
type estimates struct {
	mu      sync.Mutex
	pending []*estimateReq
	running bool
}

// estimateBatched hands msg to the collector and waits for its answer (or
// for ctx: the batch still runs, under its own deadline).
func (r *RPC) estimateBatched(ctx context.Context, msg ethereum.CallMsg) (uint64, error) {
	req := &estimateReq{msg: msg, done: make(chan struct{})}
	e := &r.est
	e.mu.Lock()
	e.pending = append(e.pending, req)
	if !e.running {
		e.running = true
		go r.leadEstimates()
	}
	e.mu.Unlock()
	select {
	case <-req.done:
		return uint64(req.gas), req.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// leadEstimates sends what is pending, batch after batch, until nothing is.
func (r *RPC) leadEstimates() {
	e := &r.est
	for {
		e.mu.Lock()
		n := min(len(e.pending), maxBatch)
		if n == 0 {
			e.running = false
			e.pending = nil
			e.mu.Unlock()
			return
		}
		batch := e.pending[:n:n]
		e.pending = e.pending[n:]
		e.mu.Unlock()
		r.sendEstimates(batch)
	}
}

func (r *RPC) sendEstimates(batch []*estimateReq) {
	ctx, cancel := r.deadline(context.Background())
	defer cancel()
	defer func() {
		for _, q := range batch {
			close(q.done)
		}
	}()
	if len(batch) == 1 {
		q := batch[0]
		v, err := r.Client.EstimateGasAtBlock(ctx, q.msg, nil)
		q.gas, q.err = hexutil.Uint64(v), r.redact(err)
		return
	}
	elems := make([]rpc.BatchElem, len(batch))
	for i, q := range batch {
		elems[i] = rpc.BatchElem{Method: "eth_estimateGas", Args: []any{callArg(q.msg), "latest"}, Result: &q.gas}
	}
	err := r.batch(ctx, elems)
	for i, q := range batch {
		q.err = err
		if err == nil {
			q.err = elems[i].Error
		}
	}
}

// callArg is a call's JSON-RPC object, as ethclient writes it.
func callArg(msg ethereum.CallMsg) map[string]any {
	arg := map[string]any{"from": msg.From, "to": msg.To}
	if len(msg.Data) > 0 {
		arg["input"] = hexutil.Bytes(msg.Data)
	}
	if msg.Value != nil {
		arg["value"] = (*hexutil.Big)(msg.Value)
	}
	if msg.Gas != 0 {
		arg["gas"] = hexutil.Uint64(msg.Gas)
	}
	if msg.GasPrice != nil {
		arg["gasPrice"] = (*hexutil.Big)(msg.GasPrice)
	}
	if msg.GasFeeCap != nil {
		arg["maxFeePerGas"] = (*hexutil.Big)(msg.GasFeeCap)
	}
	if msg.GasTipCap != nil {
		arg["maxPriorityFeePerGas"] = (*hexutil.Big)(msg.GasTipCap)
	}
	if msg.AccessList != nil {
		arg["accessList"] = msg.AccessList
	}
	return arg
}
