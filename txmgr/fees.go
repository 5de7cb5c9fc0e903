package txmgr

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// Fees are the EIP-1559 fee fields of a transaction.
type Fees struct {
	TipCap *big.Int // max priority fee per gas
	FeeCap *big.Int // max fee per gas
	Head   uint64   // the block number the suggestion was made at
	// BlockGasLimit is the gas limit of that block: no tx may ask for more.
	BlockGasLimit uint64
}

// FeeOracle suggests fees, asking the node at most once per TTL however many
// jobs are signed meanwhile (a per-job eth_gasPrice would double the RPC
// load of the hot path).
type FeeOracle struct {
	backend Backend
	maxFee  *big.Int
	ttl     time.Duration
	now     func() time.Time

	mu     sync.Mutex
	cached Fees
	at     time.Time
}

// NewFeeOracle returns an oracle whose fee cap never exceeds maxFee (wei per
// gas), caching the node's answer for ttl.
func NewFeeOracle(b Backend, maxFee *big.Int, ttl time.Duration) *FeeOracle {
	return &FeeOracle{backend: b, maxFee: maxFee, ttl: ttl, now: time.Now}
}

// Fees returns the current suggestion: the node's tip, and a fee cap of
// twice the latest base fee plus the tip, so the tx stays includable while
// the base fee rises for a few blocks. Both are capped at the ceiling.
func (o *FeeOracle) Fees(ctx context.Context) (Fees, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cached.TipCap != nil && o.now().Sub(o.at) < o.ttl {
		return o.cached, nil
	}
	head, err := o.backend.HeaderByNumber(ctx, nil)
	if err != nil {
		return Fees{}, fmt.Errorf("fees: latest header: %w", err)
	}
	tip, err := o.backend.SuggestGasTipCap(ctx)
	if err != nil {
		return Fees{}, fmt.Errorf("fees: tip: %w", err)
	}
	base := new(big.Int)
	if head.BaseFee != nil {
		base.Set(head.BaseFee)
	}
	f := Fees{TipCap: tip, FeeCap: new(big.Int).Add(new(big.Int).Mul(base, big.NewInt(2)), tip), Head: head.Number.Uint64(), BlockGasLimit: head.GasLimit}
	f = f.Capped(o.maxFee)
	o.cached, o.at = f, o.now()
	return f, nil
}

// Capped returns f with both fields at most max.
func (f Fees) Capped(max *big.Int) Fees {
	out := Fees{TipCap: new(big.Int).Set(f.TipCap), FeeCap: new(big.Int).Set(f.FeeCap), Head: f.Head, BlockGasLimit: f.BlockGasLimit}
	if max == nil {
		return out
	}
	if out.FeeCap.Cmp(max) > 0 {
		out.FeeCap.Set(max)
	}
	if out.TipCap.Cmp(out.FeeCap) > 0 {
		out.TipCap.Set(out.FeeCap)
	}
	return out
}

// MinBumpPercent is the smallest fee increase geth and anvil accept for a
// replacement at the same nonce.
const MinBumpPercent = 10

// ErrFeeCeiling means a replacement cannot be priced higher: the fee cap
// would pass the configured ceiling.
var ErrFeeCeiling = errors.New("fee bump would exceed the max fee per gas ceiling")

// Bump prices a replacement of a transaction that paid old: both the tip and
// the fee cap rise by at least percent (at least MinBumpPercent, rounded
// up), and to at least the current suggestion. It returns ErrFeeCeiling when
// the bumped fee cap would pass max: the node would refuse a smaller bump,
// so there is nothing useful to send.
func Bump(old, current Fees, percent int, max *big.Int) (Fees, error) {
	if percent < MinBumpPercent {
		percent = MinBumpPercent
	}
	up := func(v *big.Int) *big.Int {
		n := new(big.Int).Mul(v, big.NewInt(int64(100+percent)))
		n.Add(n, big.NewInt(99)) // round up: 10 % of 15 wei is 2, not 1
		return n.Div(n, big.NewInt(100))
	}
	tip, feeCap := up(old.TipCap), up(old.FeeCap)
	if current.TipCap != nil && current.TipCap.Cmp(tip) > 0 {
		tip = new(big.Int).Set(current.TipCap)
	}
	if current.FeeCap != nil && current.FeeCap.Cmp(feeCap) > 0 {
		feeCap = new(big.Int).Set(current.FeeCap)
	}
	if feeCap.Cmp(tip) < 0 {
		feeCap = new(big.Int).Set(tip)
	}
	if max != nil && feeCap.Cmp(max) > 0 {
		return Fees{}, ErrFeeCeiling
	}
	return Fees{TipCap: tip, FeeCap: feeCap, Head: current.Head}, nil
}
