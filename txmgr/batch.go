package txmgr

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
)

// BatchSender is a Backend that can broadcast many transactions in one
// round trip.
type BatchSender interface {
	SendTransactions(ctx context.Context, txs []*types.Transaction) []error
}

// SendTransactions broadcasts txs with eth_sendRawTransaction in JSON-RPC
// batches, in order, and returns each one's error (nil when accepted). When
// the batch itself fails, every transaction gets that error: none of them
// is known to have arrived, and re-sending a known one is harmless.
func (r *RPC) SendTransactions(ctx context.Context, txs []*types.Transaction) []error {
	errs := make([]error, len(txs))
	elems := make([]rpc.BatchElem, 0, len(txs))
	idx := make([]int, 0, len(txs))
	for i, tx := range txs {
		raw, err := tx.MarshalBinary()
		if err != nil {
			errs[i] = err
			continue
		}
		elems = append(elems, rpc.BatchElem{Method: "eth_sendRawTransaction", Args: []any{hexutil.Encode(raw)}, Result: new(any)})
		idx = append(idx, i)
	}
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	if err := r.batch(ctx, elems); err != nil {
		for _, i := range idx {
			errs[i] = err
		}
		return errs
	}
	for k, e := range elems {
		errs[idx[k]] = e.Error
	}
	return errs
}

// SendAll broadcasts txs through b: in batches when b is a BatchSender,
// otherwise one call per transaction, concurrently.
func SendAll(ctx context.Context, b Backend, txs []*types.Transaction) []error {
	if bs, ok := b.(BatchSender); ok {
		return bs.SendTransactions(ctx, txs)
	}
	errs := make([]error, len(txs))
	var wg sync.WaitGroup
	for i, tx := range txs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.SendTransaction(ctx, tx)
		}()
	}
	wg.Wait()
	return errs
}

// SendTransactions keeps broadcasts batched through the metrics wrapper;
// each transaction counts as one eth_sendRawTransaction call.
func (o *observed) SendTransactions(ctx context.Context, txs []*types.Transaction) []error {
	start := time.Now()
	errs := SendAll(ctx, o.b, txs)
	for _, err := range errs {
		o.done("eth_sendRawTransaction", start, err)
	}
	return errs
}

// BlockReceiptser is a Backend that can fetch every receipt of a block in
// one call (eth_getBlockReceipts: geth, anvil, reth, erigon).
type BlockReceiptser interface {
	BlockReceipts(ctx context.Context, number uint64) ([]*types.Receipt, error)
}

// BlockReceipts fetches every receipt of block number with
// eth_getBlockReceipts.
func (r *RPC) BlockReceipts(ctx context.Context, number uint64) ([]*types.Receipt, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	rs, err := r.Client.BlockReceipts(ctx, rpc.BlockNumberOrHashWithNumber(rpc.BlockNumber(number)))
	if err != nil {
		return nil, fmt.Errorf("receipts of block %d: %w", number, r.redact(err))
	}
	return rs, nil
}

// BlockReceipts keeps block receipts available through the metrics wrapper.
func (o *observed) BlockReceipts(ctx context.Context, number uint64) ([]*types.Receipt, error) {
	br, ok := o.b.(BlockReceiptser)
	if !ok {
		return nil, fmt.Errorf("receipts of block %d: %w", number, errors.ErrUnsupported)
	}
	start := time.Now()
	rs, err := br.BlockReceipts(ctx, number)
	o.done("eth_getBlockReceipts", start, err)
	return rs, err
}
