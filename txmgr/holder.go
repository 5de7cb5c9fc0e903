package txmgr

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
)

// BlockReader is a Backend that can read a whole block with its
// transactions (eth_getBlockByNumber with full transactions).
type BlockReader interface {
	BlockByNumber(ctx context.Context, number *big.Int) (*types.Block, error)
}

// BlockByNumber reads a block with its transactions.
func (r *RPC) BlockByNumber(ctx context.Context, number *big.Int) (*types.Block, error) {
	ctx, cancel := r.deadline(ctx)
	defer cancel()
	b, err := r.Client.BlockByNumber(ctx, number)
	return b, r.redact(err)
}

// BlockByNumber keeps block reads available through the metrics wrapper.
func (o *observed) BlockByNumber(ctx context.Context, number *big.Int) (*types.Block, error) {
	br, ok := o.b.(BlockReader)
	if !ok {
		return nil, fmt.Errorf("block %v: %w", number, errors.ErrUnsupported)
	}
	start := time.Now()
	b, err := br.BlockByNumber(ctx, number)
	o.done("eth_getBlockByNumber", start, err)
	return b, err
}

// BlockByNumber reads a block from the best endpoint.
func (m *Multi) BlockByNumber(ctx context.Context, number *big.Int) (*types.Block, error) {
	return call(ctx, m, func(ctx context.Context, e *endpoint) (*types.Block, error) {
		br, ok := e.Backend.(BlockReader)
		if !ok {
			return nil, fmt.Errorf("block %v: %w", number, errors.ErrUnsupported)
		}
		return br.BlockByNumber(ctx, number)
	})
}

// Holder is the transaction that holds a signer's nonce in the canonical
// chain.
type Holder struct {
	TxHash    common.Hash
	Block     uint64
	BlockHash common.Hash
}

// NonceHolder finds, in the canonical chain up to head, the transaction of
// from that used nonce n: the first block after which from's nonce exceeds
// n holds it. It searches back from head (recent blocks first, since a
// node without archive state cannot answer for old ones), then reads that
// block. ok is false when the node cannot show it yet — its state or block
// lags the nonce it reported — and the caller must wait, not conclude.
func NonceHolder(ctx context.Context, b Backend, chainID *big.Int, from common.Address, n, head uint64) (h Holder, ok bool, err error) {
	br, can := b.(BlockReader)
	if !can {
		return Holder{}, false, nil
	}
	nonceAt := func(block uint64) (uint64, error) {
		return b.NonceAt(ctx, from, new(big.Int).SetUint64(block))
	}
	top, err := nonceAt(head)
	if err != nil {
		return Holder{}, false, fmt.Errorf("nonce holder %d: %w", n, err)
	}
	if top <= n {
		return Holder{}, false, nil // this node has not seen it used
	}
	// hi: a block after which the nonce is used; lo: one before which it
	// is not (or -1: none found yet).
	hi, lo := head, int64(-1)
	for step := uint64(1); ; step *= 2 {
		if step > hi {
			if v, err := nonceAt(0); err != nil {
				return Holder{}, false, fmt.Errorf("nonce holder %d: %w", n, err)
			} else if v > n {
				hi = 0
			} else {
				lo = 0
			}
			break
		}
		at := hi - step
		v, err := nonceAt(at)
		if err != nil {
			return Holder{}, false, fmt.Errorf("nonce holder %d: %w", n, err)
		}
		if v <= n {
			lo = int64(at)
			break
		}
		hi = at
	}
	for lo >= 0 && uint64(lo)+1 < hi {
		mid := (uint64(lo) + hi) / 2
		v, err := nonceAt(mid)
		if err != nil {
			return Holder{}, false, fmt.Errorf("nonce holder %d: %w", n, err)
		}
		if v > n {
			hi = mid
		} else {
			lo = int64(mid)
		}
	}
	blk, err := br.BlockByNumber(ctx, new(big.Int).SetUint64(hi))
	if errors.Is(err, ethereum.NotFound) {
		return Holder{}, false, nil
	}
	if err != nil {
		return Holder{}, false, fmt.Errorf("nonce holder %d: block %d: %w", n, hi, err)
	}
	signer := types.LatestSignerForChainID(chainID)
	for _, tx := range blk.Transactions() {
		if tx.Nonce() == n {
			if s, err := types.Sender(signer, tx); err == nil && s == from {
				return Holder{TxHash: tx.Hash(), Block: hi, BlockHash: blk.Hash()}, true, nil
			}
		}
		// An EIP-7702 authorisation signed by the key also uses its nonce,
		// inside someone else's transaction: that is foreign use too.
		for _, auth := range tx.SetCodeAuthorizations() {
			if auth.Nonce == n {
				if a, err := auth.Authority(); err == nil && a == from {
					return Holder{TxHash: tx.Hash(), Block: hi, BlockHash: blk.Hash()}, true, nil
				}
			}
		}
	}
	return Holder{}, false, nil // the block the state points at does not show it: a lagging read
}
