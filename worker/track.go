package worker

import (
	"context"
	"errors"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// trackBatch bounds how many in-flight jobs one tick looks at.
const trackBatch = 2000

// Tracker follows one signer's transactions block by block. Instead of
// polling a receipt per job, it reads the signer's latest nonce once per
// block and fetches receipts (in one batch) only for jobs whose nonce is now
// below it: only those can have been mined.
type Tracker struct {
	w        *Worker
	a        *Account
	lease    *Lease
	lastHead common.Hash
}

// NewTracker returns the tracker of account a.
func NewTracker(w *Worker, a *Account) *Tracker {
	return &Tracker{w: w, a: a, lease: NewLease(w.cfg.Redis, a.Nonces.KeyTag()+"tracker", 5*w.cfg.PollInterval+2*time.Second)}
}

// Run ticks every poll interval until ctx ends. Only the process holding the
// signer's lease tracks it, so N workers do not multiply the RPC load.
func (t *Tracker) Run(ctx context.Context) {
	tick := time.NewTicker(t.w.cfg.PollInterval)
	defer tick.Stop()
	defer t.lease.Release(context.WithoutCancel(ctx))
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		held, err := t.lease.Hold(ctx)
		if err != nil || !held {
			continue
		}
		if err := t.Tick(ctx); err != nil && ctx.Err() == nil {
			t.w.log.Warn("tracker tick", "signer", t.a.Signer.Address().Hex(), "err", err)
		}
	}
}

// Tick does one round of tracking if the chain has a new head.
func (t *Tracker) Tick(ctx context.Context) error {
	b := t.w.cfg.Backend
	head, err := b.HeaderByNumber(ctx, nil)
	if err != nil {
		return err
	}
	if head.Hash() == t.lastHead {
		return nil
	}
	addr := t.a.Signer.Address()
	latest, err := b.NonceAt(ctx, addr, nil)
	if err != nil {
		return err
	}
	inflight, err := t.a.Nonces.Below(ctx, latest, trackBatch)
	if err != nil || len(inflight) == 0 {
		if err == nil {
			t.lastHead = head.Hash()
		}
		return err
	}
	ids := make([]string, len(inflight))
	for i, f := range inflight {
		ids[i] = f.JobID
	}
	js, err := t.w.store.GetMany(ctx, ids)
	if err != nil {
		return err
	}
	// One batch of receipts for every hash of every submitted job.
	var hashes []common.Hash
	for _, j := range js {
		if j != nil && j.Status == jobs.Submitted {
			for _, at := range j.Attempts {
				hashes = append(hashes, common.HexToHash(at.Hash))
			}
		}
	}
	receipts := map[common.Hash]*types.Receipt{}
	if len(hashes) > 0 {
		rs, err := b.TransactionReceipts(ctx, hashes)
		if err != nil {
			return err
		}
		for i, r := range rs {
			if r != nil {
				receipts[hashes[i]] = r
			}
		}
	}
	canon := map[uint64]common.Hash{head.Number.Uint64(): head.Hash()}
	var errs []error
	for i, j := range js {
		if j == nil {
			// A record deleted by hand: nothing to track.
			errs = append(errs, t.a.Nonces.Release(ctx, ids[i]))
			continue
		}
		switch j.Status {
		case jobs.Submitted:
			if err := t.mined(ctx, j, receipts); err != nil {
				errs = append(errs, err)
				continue
			}
			if j.Status == jobs.Mined {
				errs = append(errs, t.confirm(ctx, j, head, canon))
			}
		case jobs.Mined:
			errs = append(errs, t.confirm(ctx, j, head, canon))
		case jobs.Confirmed, jobs.Failed, jobs.Cancelled:
			errs = append(errs, t.a.Nonces.Release(ctx, j.ID))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	t.lastHead = head.Hash()
	return nil
}

// mined moves a submitted job whose transaction (any of its attempts) has a
// receipt to mined, or to failed when it reverted. j is updated in place.
func (t *Tracker) mined(ctx context.Context, j *jobs.Job, receipts map[common.Hash]*types.Receipt) error {
	var r *types.Receipt
	for _, at := range j.Attempts {
		if rr := receipts[common.HexToHash(at.Hash)]; rr != nil {
			r = rr
			break
		}
	}
	if r == nil {
		// Its nonce is used but no hash of ours is mined (yet): the node may
		// lag in indexing; the next tick looks again.
		return nil
	}
	fields := jobs.Fields{
		"tx_hash", r.TxHash.Hex(),
		"block_number", r.BlockNumber.Uint64(),
		"block_hash", r.BlockHash.Hex(),
		"gas_used", r.GasUsed,
		"effective_gas_price", bigString(r.EffectiveGasPrice),
	}
	if r.Status == types.ReceiptStatusSuccessful {
		if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, "", fields, nil); err != nil {
			return err
		}
		j.Status, j.BlockHash = jobs.Mined, r.BlockHash.Hex()
		bn := r.BlockNumber.Uint64()
		j.BlockNumber = &bn
		return nil
	}
	jerr := jobs.Error{Code: jobs.ErrCodeRevertedOnChain, Message: "transaction reverted on chain"}
	if tx, err := txmgr.RawTx(j.Raw); err == nil {
		data, cerr := txmgr.ReplayRevert(ctx, t.w.cfg.Backend, tx, t.a.Signer.Address(), r.BlockNumber)
		if len(data) > 0 {
			jerr = revertError(jobs.ErrCodeRevertedOnChain, cerr)
			jerr.Message = "transaction reverted on chain: " + jerr.Message
		} else if cerr != nil {
			jerr.Message += ": " + cerr.Error()
		}
	}
	fields = append(fields, "error", jobs.ErrorField(jerr))
	if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Failed, "reverted on chain", fields, nil); err != nil {
		return err
	}
	j.Status = jobs.Failed
	return t.a.Nonces.Release(ctx, j.ID)
}

// confirm moves a mined job to confirmed once its block is deep enough and
// still canonical; a block that left the canonical chain sends the job back
// to submitted (the one step back the state machine allows).
func (t *Tracker) confirm(ctx context.Context, j *jobs.Job, head *types.Header, canon map[uint64]common.Hash) error {
	if j.BlockNumber == nil {
		return nil
	}
	bn := *j.BlockNumber
	confs := j.Confirmations
	if confs == 0 {
		confs = 1
	}
	if head.Number.Uint64()+1 < bn+confs {
		return nil
	}
	h, ok := canon[bn]
	if !ok {
		hd, err := t.w.cfg.Backend.HeaderByNumber(ctx, new(big.Int).SetUint64(bn))
		if err != nil {
			return err
		}
		h = hd.Hash()
		canon[bn] = h
	}
	if h != common.HexToHash(j.BlockHash) {
		t.w.log.Warn("reorg: block of mined job left the canonical chain", "job_id", j.ID, "block", bn)
		return t.w.store.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Submitted, "reorg: block "+j.BlockHash+" no longer canonical",
			jobs.Fields{"block_number", "", "block_hash", "", "gas_used", "", "effective_gas_price", ""}, nil)
	}
	if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Confirmed, "", nil, nil); err != nil {
		return err
	}
	return t.a.Nonces.Release(ctx, j.ID)
}

func bigString(b *big.Int) string {
	if b == nil {
		return ""
	}
	return b.String()
}
