package worker

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"sync"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// noopGas is the gas of a 0-value self-send: what a gap fill or a
// cancellation costs, and so the least a signer must be able to pay to be
// of any use.
const noopGas = 21000

// FundsError means the signer cannot pay for this job now, although it can
// still pay for others: the job waits queued with an insufficient_funds
// warning and its task is retried later without spending its retry budget
// (IsFailure), and the signer is not paused.
type FundsError struct {
	JobID string
	Why   string // the warning's message
}

func (e *FundsError) Error() string {
	return fmt.Sprintf("job %s: %s: %s", e.JobID, jobs.WarnInsufficientFunds, e.Why)
}

// Affordability is what a signer's balance allows for a job.
type Affordability int

// The outcomes of Afford.
const (
	// Affordable: the job's value plus its gas at the fee cap fit the balance.
	Affordable Affordability = iota
	// JobUnaffordable: this job does not fit, a no-op would: the job waits,
	// the signer goes on with its other jobs.
	JobUnaffordable
	// SignerBroke: the signer cannot even pay for a no-op: it pauses.
	SignerBroke
)

// Afford decides from the signer's balance, less what was already promised
// of it to jobs sent since it was read, whether the signer can pay for a
// job sending value with gas at feeCap per gas (invariant 7: a signer
// pauses only when it cannot pay for a no-op). It also returns the job's
// worst-case cost.
func Afford(balance, promised, value *big.Int, gas uint64, feeCap *big.Int) (Affordability, *big.Int) {
	cost := new(big.Int).Mul(new(big.Int).SetUint64(gas), feeCap)
	if value != nil {
		cost.Add(cost, value)
	}
	avail := new(big.Int).Set(balance)
	if promised != nil {
		avail.Sub(avail, promised)
	}
	switch {
	case cost.Cmp(avail) <= 0:
		return Affordable, cost
	case canPayNoop(balance, feeCap):
		return JobUnaffordable, cost
	default:
		return SignerBroke, cost
	}
}

// canPayNoop reports whether balance pays for a no-op at feeCap.
func canPayNoop(balance, feeCap *big.Int) bool {
	return noopCost(feeCap).Cmp(balance) <= 0
}

func noopCost(feeCap *big.Int) *big.Int {
	return new(big.Int).Mul(big.NewInt(noopGas), feeCap)
}

// checkFunds decides, before a nonce is taken, whether a's balance pays
// for j: nil if it does, a FundsError (with the job's warning written) if
// only this job is too dear, a PausedError (with the signer paused) if a
// cannot even pay for a no-op.
func (w *Worker) checkFunds(ctx context.Context, a *Account, j *jobs.Job, value *big.Int, gas uint64, fees txmgr.Fees) error {
	v, cost, bal, promised, err := a.funds.claim(ctx, w.cfg.Backend, a, fees.Head, value, gas, fees.FeeCap)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	switch v {
	case Affordable:
		return nil
	case JobUnaffordable:
		why := fundsWarning(value, gas, fees.FeeCap, cost, bal)
		if promised.Sign() > 0 {
			why += fmt.Sprintf(" less %s ETH promised to jobs sent since block %d", ether(promised), fees.Head)
		}
		return w.waitForFunds(ctx, a, j, why)
	default:
		return w.broke(ctx, a, bal, fees.FeeCap)
	}
}

// estimateShort handles an estimate the node refused for lack of funds
// (nodeErr): this job's problem while a can pay for a no-op, the signer's
// otherwise.
func (w *Worker) estimateShort(ctx context.Context, a *Account, j *jobs.Job, nodeErr error) error {
	fees, err := w.fees.Fees(ctx)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	a.funds.forget() // the node just saw a balance this cache may not have
	bal, err := a.funds.at(ctx, w.cfg.Backend, a, fees.Head)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	if !canPayNoop(bal, fees.FeeCap) {
		return w.broke(ctx, a, bal, fees.FeeCap)
	}
	return w.waitForFunds(ctx, a, j, fmt.Sprintf("the node refused to estimate with balance %s ETH: %s", ether(bal), nodeErr))
}

// waitForFunds records why j waits (its warning, written when it changed)
// and returns the FundsError that retries its task later. A job that
// already holds a nonce (an earlier run crashed after reserving it) must
// not wait on it, since every later nonce of the signer would wait too: it
// fails insufficient_funds, and the tracker fills its nonce with a no-op.
func (w *Worker) waitForFunds(ctx context.Context, a *Account, j *jobs.Job, why string) error {
	if _, bound, err := a.Nonces.Bound(ctx, j.ID); err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	} else if bound {
		w.log.Warn("job holds a nonce its signer cannot pay for; job failed", "job_id", j.ID, "why", why)
		return w.failQueued(ctx, j.ID, len(j.Attempts), "insufficient funds", jobs.Error{Code: jobs.ErrCodeInsufficientFunds, Message: why})
	}
	warning := jobs.WarnInsufficientFunds + ": " + why
	if j.Warning != warning {
		if err := w.store.Update(ctx, j.ID, jobs.Queued, jobs.Fields{"warning", warning}, nil); err != nil {
			return fmt.Errorf("job %s: warn: %w", j.ID, err)
		}
		w.log.Warn("signer cannot pay for this job; it waits", "job_id", j.ID, "signer", j.From, "why", why)
	}
	return &FundsError{JobID: j.ID, Why: why}
}

// broke pauses a, which cannot pay for a no-op: every job of it waits.
func (w *Worker) broke(ctx context.Context, a *Account, bal, feeCap *big.Int) error {
	reason := fmt.Sprintf("insufficient funds: balance %s ETH cannot pay a no-op (%d gas × %s gwei)", ether(bal), noopGas, gwei(feeCap))
	a.pause(ctx, reason)
	return &PausedError{Err: fmt.Errorf("%s: %s", a.Signer.Address(), reason)}
}

// balanceCache holds an account's balance at one block head, so a batch of
// hundreds of jobs costs one eth_getBalance per block, not one per job, and
// what this process promised of it since: the worst-case cost of each job
// it let through, so a burst of jobs that fit one by one but not together
// does not overdraw the signer. Jobs sent by other processes, or still
// pending from earlier blocks, are not counted: the node refuses what they
// overdraw at broadcast.
type balanceCache struct {
	mu       sync.Mutex
	head     uint64
	balance  *big.Int
	promised *big.Int
}

// claim decides (Afford) whether the account can pay for a job at head,
// reading the balance again when head moved on (concurrent callers at a
// new head wait for one read), and promises the job's cost when it can. It
// returns the verdict, the cost, and the balance and promised amount it
// decided on.
func (c *balanceCache) claim(ctx context.Context, b txmgr.Backend, a *Account, head uint64, value *big.Int, gas uint64, feeCap *big.Int) (Affordability, *big.Int, *big.Int, *big.Int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refresh(ctx, b, a, head); err != nil {
		return 0, nil, nil, nil, err
	}
	promised := new(big.Int).Set(c.promised)
	v, cost := Afford(c.balance, promised, value, gas, feeCap)
	if v == Affordable {
		c.promised.Add(c.promised, cost)
	}
	return v, cost, c.balance, promised, nil
}

// at returns the account's balance at head (see claim).
func (c *balanceCache) at(ctx context.Context, b txmgr.Backend, a *Account, head uint64) (*big.Int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refresh(ctx, b, a, head); err != nil {
		return nil, err
	}
	return c.balance, nil
}

func (c *balanceCache) refresh(ctx context.Context, b txmgr.Backend, a *Account, head uint64) error {
	if c.balance != nil && c.head == head {
		return nil
	}
	bal, err := b.BalanceAt(ctx, a.Signer.Address(), nil)
	if err != nil {
		return fmt.Errorf("balance of %s: %w", a.Signer.Address(), err)
	}
	c.head, c.balance, c.promised = head, bal, new(big.Int)
	return nil
}

// forget drops the cached balance: after a refusal for lack of funds the
// next check reads the chain again even within the same block.
func (c *balanceCache) forget() {
	c.mu.Lock()
	c.balance = nil
	c.mu.Unlock()
}

// fundsWarning is the job's warning when its signer cannot pay for it.
func fundsWarning(value *big.Int, gas uint64, feeCap, cost, balance *big.Int) string {
	return fmt.Sprintf("value+gas*fee %s ETH (value %s ETH + %d gas × %s gwei) exceeds balance %s ETH",
		ether(cost), ether(value), gas, gwei(feeCap), ether(balance))
}

// ether formats wei as ether with up to 18 decimals and no trailing zeros.
func ether(wei *big.Int) string { return decimal(wei, 18) }

// gwei formats wei as gwei.
func gwei(wei *big.Int) string { return decimal(wei, 9) }

func decimal(n *big.Int, places int) string {
	if n == nil {
		n = new(big.Int)
	}
	neg := n.Sign() < 0
	s := new(big.Int).Abs(n).String()
	if len(s) <= places {
		s = strings.Repeat("0", places-len(s)+1) + s
	}
	whole, frac := s[:len(s)-places], strings.TrimRight(s[len(s)-places:], "0")
	if frac != "" {
		whole += "." + frac
	}
	if neg {
		whole = "-" + whole
	}
	return whole
}
