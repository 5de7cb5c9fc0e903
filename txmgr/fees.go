package txmgr

import (
	"context"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// Fees are the EIP-1559 fee fields of a transaction.
type Fees struct {
	TipCap *big.Int // max priority fee per gas
	FeeCap *big.Int // max fee per gas
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
	f := Fees{TipCap: tip, FeeCap: new(big.Int).Add(new(big.Int).Mul(base, big.NewInt(2)), tip)}
	f = f.Capped(o.maxFee)
	o.cached, o.at = f, o.now()
	return f, nil
}

// Capped returns f with both fields at most max.
func (f Fees) Capped(max *big.Int) Fees {
	out := Fees{TipCap: new(big.Int).Set(f.TipCap), FeeCap: new(big.Int).Set(f.FeeCap)}
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
