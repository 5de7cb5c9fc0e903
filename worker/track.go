package worker

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/txmgr"
)

// trackBatch bounds how many in-flight jobs one tick looks at.
const trackBatch = 2000

// rebroadcastBlocks is how many blocks a pending transaction goes unchecked
// before the tracker asks the node whether it still has it.
const rebroadcastBlocks = 2

// Tracker follows one signer's transactions block by block. Instead of
// polling a receipt per job, it reads the signer's latest nonce once per
// block and fetches receipts (in one batch) only for jobs whose nonce is now
// below it: only those can have been mined. Jobs above it are pending: the
// tracker re-broadcasts those the node dropped, replaces stuck ones with
// higher fees, sends cancellations, and fills nonces that a failed or
// cancelled job bound but will never use.
type Tracker struct {
	w        *Worker
	a        *Account
	lease    *Lease
	lastHead common.Hash
	checked  map[string]uint64 // job id → head when its pending tx was last checked or sent
	missing  map[string]uint64 // job id → head when its nonce was first seen used without a receipt of ours
	orphans  map[string]uint64 // job id → head when it was first seen queued while holding a nonce

	scanned         uint64 // the last block whose receipts were read whole (scanBlocks)
	noBlockReceipts bool   // the node does not serve eth_getBlockReceipts
}

// NewTracker returns the tracker of account a.
func NewTracker(w *Worker, a *Account) *Tracker {
	return &Tracker{
		w: w, a: a,
		lease:   NewLease(w.cfg.Redis, a.Nonces.KeyTag()+"tracker", 5*w.cfg.PollInterval+2*time.Second),
		checked: map[string]uint64{},
		missing: map[string]uint64{},
		orphans: map[string]uint64{},
	}
}

// Run runs the tracker's ticks, while this process holds the signer's
// lease, until stop ends. Ticks run under work, which outlives stop until the
// drain deadline, so a shutdown lets the tick in progress finish: a tracker
// stops between ticks, not halfway through a replacement it has persisted.
func (t *Tracker) Run(stop, work context.Context) {
	tick := time.NewTicker(t.w.cfg.PollInterval)
	defer tick.Stop()
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(work), 2*time.Second)
		defer cancel()
		t.lease.Release(ctx) // another process takes over at its next tick
	}()
	for {
		select {
		case <-stop.Done():
			return
		case <-tick.C:
		}
		if stop.Err() != nil {
			return // both were ready; stopping wins
		}
		held, err := t.lease.Hold(work)
		if err != nil || !held {
			continue
		}
		if err := t.Tick(work); err != nil && work.Err() == nil {
			t.w.log.Warn("tracker tick", "signer", t.a.Signer.Address().Hex(), "err", err)
		}
	}
}

// tracked is one in-flight job with the nonce the allocator binds it to.
type tracked struct {
	job   *jobs.Job
	nonce uint64
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
	latest, err := b.NonceAt(ctx, t.a.Signer.Address(), nil)
	if err != nil {
		return err
	}
	inflight, err := t.a.Nonces.All(ctx, trackBatch)
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
	var used, pending []tracked
	var errs []error
	for i, j := range js {
		switch {
		case j == nil: // a record deleted by hand: nothing to track
			errs = append(errs, t.a.Nonces.Release(ctx, ids[i]))
		case inflight[i].Nonce < latest:
			used = append(used, tracked{j, inflight[i].Nonce})
		default:
			pending = append(pending, tracked{j, inflight[i].Nonce})
		}
	}
	errs = append(errs, t.trackUsed(ctx, head, used))
	errs = append(errs, t.trackPending(ctx, head.Number.Uint64(), pending))
	// Forget jobs that are no longer in flight.
	live := make(map[string]bool, len(ids))
	for _, id := range ids {
		live[id] = true
	}
	for id := range t.checked {
		if !live[id] {
			delete(t.checked, id)
		}
	}
	for id := range t.missing {
		if !live[id] {
			delete(t.missing, id)
		}
	}
	for id := range t.orphans {
		if !live[id] {
			delete(t.orphans, id)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	t.lastHead = head.Hash()
	return nil
}

// trackUsed handles jobs whose nonce the chain has used: find which of their
// transactions was mined, confirm it, or notice that none of them was.
func (t *Tracker) trackUsed(ctx context.Context, head *types.Header, used []tracked) error {
	var hashes []common.Hash
	for _, u := range used {
		if u.job.Status == jobs.Submitted {
			for _, at := range u.job.Attempts {
				hashes = append(hashes, common.HexToHash(at.Hash))
			}
		}
	}
	receipts := map[common.Hash]*types.Receipt{}
	missing := hashes
	if len(hashes) >= blockReceiptsMin {
		missing = t.scanBlocks(ctx, head.Number.Uint64(), hashes, receipts)
	}
	if len(missing) > 0 {
		rs, err := t.w.cfg.Backend.TransactionReceipts(ctx, missing)
		if err != nil {
			return err
		}
		for i, r := range rs {
			if r != nil {
				receipts[missing[i]] = r
			}
		}
	}
	canon := &canonCache{m: map[uint64]common.Hash{head.Number.Uint64(): head.Hash()}}
	// A job that a receipt or its own status settles depends on no other:
	// those run concurrently (a block can hold thousands of ours, each a
	// few Redis round trips). The rest, nonces used with none of our hashes
	// mined, are decided one by one.
	var (
		mu      sync.Mutex
		errs    []error
		settled []string
		wg      sync.WaitGroup
		sem     = make(chan struct{}, trackParallel)
	)
	for _, u := range used {
		if u.job.Status == jobs.Submitted && !hasReceipt(u.job, receipts) {
			errs = append(errs, t.foreign(ctx, head.Number.Uint64(), u))
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := t.settle(ctx, u.job, head, receipts, canon)
			mu.Lock()
			errs = append(errs, err)
			settled = append(settled, u.job.ID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, id := range settled {
		delete(t.missing, id)
	}
	return errors.Join(errs...)
}

// blockReceiptsMin is how many of our transactions a tick must look for
// before it reads whole blocks' receipts instead of one receipt per
// transaction: one call per block beats a thousand lookups, but a block
// holding one of ours among hundreds of others' is cheaper looked up alone.
const blockReceiptsMin = 32

// blockScanMax bounds the blocks one tick reads whole.
const blockScanMax = 16

// scanBlocks reads the receipts of the blocks mined since the last scan (at
// most blockScanMax, up to head) with eth_getBlockReceipts, keeps those of
// hashes in receipts, and returns the hashes it did not find there (mined
// earlier, or not at all). A node without the method, or any error, leaves
// every hash to the per-transaction lookup.
func (t *Tracker) scanBlocks(ctx context.Context, head uint64, hashes []common.Hash, receipts map[common.Hash]*types.Receipt) []common.Hash {
	br, ok := t.w.cfg.Backend.(txmgr.BlockReceiptser)
	if !ok || t.noBlockReceipts {
		return hashes
	}
	from := t.scanned + 1
	if t.scanned == 0 || head-t.scanned > blockScanMax {
		from = head - min(head, blockScanMax-1)
	}
	want := make(map[common.Hash]bool, len(hashes))
	for _, h := range hashes {
		want[h] = true
	}
	found := map[common.Hash]*types.Receipt{}
	for n := from; n <= head; n++ {
		rs, err := t.w.receipts.get(ctx, br, n, 3*t.w.cfg.PollInterval)
		if err != nil {
			if txmgr.Classify(err) == txmgr.ClassPermanent || strings.Contains(strings.ToLower(err.Error()), "method not found") {
				t.noBlockReceipts = true // this node cannot: per-transaction lookups from now on
				t.w.log.Info("the node does not serve eth_getBlockReceipts; receipts are looked up one by one", "err", err)
			}
			return hashes
		}
		for _, r := range rs {
			if r != nil && want[r.TxHash] {
				found[r.TxHash] = r
			}
		}
	}
	t.scanned = head
	var missing []common.Hash
	for _, h := range hashes {
		if r, ok := found[h]; ok {
			receipts[h] = r
		} else {
			missing = append(missing, h)
		}
	}
	return missing
}

// trackParallel bounds the jobs one tracker settles at once.
const trackParallel = 16

// settle moves a job whose nonce the chain has used and whose fate is known
// (a receipt of one of its hashes, or its status) forward: mined, confirmed,
// or its nonce released. A queued job whose bound nonce is used was never
// signed: its send task will sign at that nonce, be told "nonce too low",
// and come back here as submitted.
func (t *Tracker) settle(ctx context.Context, j *jobs.Job, head *types.Header, receipts map[common.Hash]*types.Receipt, canon *canonCache) error {
	switch j.Status {
	case jobs.Submitted:
		if _, err := t.mined(ctx, j, receipts); err != nil {
			return err
		}
		if j.Status == jobs.Mined {
			return t.confirm(ctx, j, head, canon)
		}
	case jobs.Mined:
		return t.confirm(ctx, j, head, canon)
	case jobs.Confirmed, jobs.Failed, jobs.Cancelled:
		// Its nonce is used (by its tx, a cancellation or a gap fill).
		return t.a.Nonces.Release(ctx, j.ID)
	}
	return nil
}

func hasReceipt(j *jobs.Job, receipts map[common.Hash]*types.Receipt) bool {
	for _, at := range j.Attempts {
		if receipts[common.HexToHash(at.Hash)] != nil {
			return true
		}
	}
	return false
}

// canonCache holds the canonical block hashes one tick has looked up.
type canonCache struct {
	mu sync.Mutex
	m  map[uint64]common.Hash
}

func (c *canonCache) hash(ctx context.Context, b txmgr.Backend, n uint64) (common.Hash, error) {
	c.mu.Lock()
	h, ok := c.m[n]
	c.mu.Unlock()
	if ok {
		return h, nil
	}
	hd, err := b.HeaderByNumber(ctx, new(big.Int).SetUint64(n))
	if err != nil {
		return common.Hash{}, err
	}
	c.mu.Lock()
	c.m[n] = hd.Hash()
	c.mu.Unlock()
	return hd.Hash(), nil
}

// mined moves a submitted job whose transaction (any of its attempts) has a
// receipt to mined (or cancelled, when its cancellation won), or to failed
// when it reverted. j is updated in place. found is false when no attempt
// has a receipt.
func (t *Tracker) mined(ctx context.Context, j *jobs.Job, receipts map[common.Hash]*types.Receipt) (found bool, err error) {
	var r *types.Receipt
	var won jobs.Attempt
	for _, at := range j.Attempts {
		if rr := receipts[common.HexToHash(at.Hash)]; rr != nil {
			r, won = rr, at
			break
		}
	}
	if r == nil {
		return false, nil
	}
	fields := jobs.Fields{
		"tx_hash", r.TxHash.Hex(),
		"block_number", r.BlockNumber.Uint64(),
		"block_hash", r.BlockHash.Hex(),
		"gas_used", r.GasUsed,
		"effective_gas_price", bigString(r.EffectiveGasPrice),
	}
	if won.Kind == jobs.KindCancel {
		if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Cancelled, "cancellation mined", fields, nil); err != nil {
			return true, err
		}
		j.Status = jobs.Cancelled
		t.w.cfg.Metrics.Finished(jobs.Cancelled, len(j.Attempts), nil)
		return true, t.a.Nonces.Release(ctx, j.ID)
	}
	if r.Status == types.ReceiptStatusSuccessful {
		if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, "", fields, nil); err != nil {
			return true, err
		}
		j.Status, j.BlockHash = jobs.Mined, r.BlockHash.Hex()
		bn := r.BlockNumber.Uint64()
		j.BlockNumber = &bn
		t.w.cfg.Metrics.Stage(metrics.StageMined, j.CreatedAt)
		t.w.log.Info("mined", "job_id", j.ID, "nonce", won.Nonce, "tx_hash", r.TxHash.Hex(), "block", bn)
		return true, nil
	}
	jerr := jobs.Error{Code: jobs.ErrCodeRevertedOnChain, Message: "transaction reverted on chain"}
	if tx, err := txmgr.RawTx(j.Raw); err == nil {
		data, cerr := txmgr.ReplayRevert(ctx, t.w.cfg.Backend, tx, t.a.Signer.Address(), r.BlockNumber)
		if len(data) > 0 {
			jerr = t.w.revertErrorAt(ctx, jobs.ErrCodeRevertedOnChain, cerr, j.To)
			jerr.Message = "transaction reverted on chain: " + jerr.Message
		} else if cerr != nil {
			jerr.Message += ": " + cerr.Error()
		}
	}
	fields = append(fields, "error", jobs.ErrorField(jerr))
	if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Failed, "reverted on chain", fields, nil); err != nil {
		return true, err
	}
	j.Status = jobs.Failed
	t.w.cfg.Metrics.Finished(jobs.Failed, len(j.Attempts), nil)
	return true, t.a.Nonces.Release(ctx, j.ID)
}

// foreign handles a submitted job whose nonce the chain has used while none
// of its hashes has a receipt. After ForeignAfterBlocks blocks (receipts can
// lag) relayq concludes that another sender used the nonce: the job never
// executed, so it gets a fresh nonce and a new signature.
func (t *Tracker) foreign(ctx context.Context, head uint64, u tracked) error {
	first, seen := t.missing[u.job.ID]
	if !seen {
		t.missing[u.job.ID] = head
		return nil
	}
	if head-first < t.w.cfg.ForeignAfterBlocks {
		return nil
	}
	// Before concluding, ask for the transactions themselves: a node whose
	// receipts lag still knows a tx it mined. Only when none of the job's
	// hashes is known anywhere is the nonce someone else's.
	hashes := make([]common.Hash, len(u.job.Attempts))
	for i, a := range u.job.Attempts {
		hashes[i] = common.HexToHash(a.Hash)
	}
	known, err := t.w.cfg.Backend.TransactionsKnown(ctx, hashes)
	if err != nil {
		return err
	}
	for _, k := range known {
		if k {
			t.missing[u.job.ID] = head // ours after all; look again later
			return nil
		}
	}
	log := t.w.log.With("job_id", u.job.ID, "nonce", u.nonce)
	log.Warn("nonce used by a transaction that is not relayq's; giving the job a new nonce")
	if err := t.w.reconcile(ctx, t.a); err != nil {
		return err
	}
	n, err := t.a.Nonces.Rebind(ctx, u.job.ID, u.nonce)
	if errors.Is(err, nonce.ErrNotBound) {
		return nil // rebound meanwhile
	}
	if err != nil {
		return err
	}
	delete(t.missing, u.job.ID)
	return t.resign(ctx, u.job, n)
}

// resign signs a job's call at nonce n (after a rebind), persists it, then
// broadcasts it.
func (t *Tracker) resign(ctx context.Context, j *jobs.Job, n uint64) error {
	call, err := jobCall(j, t.a.Signer.Address())
	if err != nil {
		return err
	}
	fees, err := t.w.fees.Fees(ctx)
	if err != nil {
		return err
	}
	return t.replace(ctx, j, n, j.Gas, fees, call, jobs.KindResign)
}

// trackPending handles jobs whose nonce the chain has not used yet.
func (t *Tracker) trackPending(ctx context.Context, head uint64, pending []tracked) error {
	var check []tracked
	var errs []error
	for _, p := range pending {
		j := p.job
		switch j.Status {
		case jobs.Submitted:
			if j.Nonce != nil && *j.Nonce != p.nonce {
				// A rebind was stored in the allocator but the process died
				// before the job's new transaction was: finish it.
				errs = append(errs, t.resign(ctx, j, p.nonce))
				continue
			}
			if j.CancelRequested && lastKind(j) != jobs.KindCancel {
				errs = append(errs, t.cancel(ctx, j, p.nonce))
				continue
			}
		case jobs.Failed, jobs.Cancelled:
			if !hasNoopAt(j, p.nonce) {
				errs = append(errs, t.fillGap(ctx, j, p.nonce))
				continue
			}
		case jobs.Mined:
			// Its nonce is unused again: the block that held it was
			// reorganised away.
			errs = append(errs, t.unmine(ctx, j))
			continue
		case jobs.Queued:
			// It holds a nonce but has no signed tx: its worker died between
			// the two. Asynq would bring the task back only after its lease
			// (a minute or two) while every later nonce waits, so after a
			// few blocks the tracker finishes the submission itself. That is
			// safe alongside a live or recovered task: both get the same
			// bound nonce and only one signature can be persisted.
			first, seen := t.orphans[j.ID]
			if !seen {
				t.orphans[j.ID] = head
			} else if head >= first+t.w.cfg.StuckBlocks {
				t.w.log.Warn("finishing the submission of a job whose worker died after binding its nonce", "job_id", j.ID, "nonce", p.nonce)
				delete(t.orphans, j.ID)
				errs = append(errs, t.w.submit(ctx, j))
			}
			continue
		default:
			continue
		}
		if head >= t.lastSeen(j)+rebroadcastBlocks {
			check = append(check, p)
		}
	}
	if len(check) == 0 {
		return errors.Join(errs...)
	}
	hashes := make([]common.Hash, len(check))
	for i, c := range check {
		hashes[i] = common.HexToHash(c.job.TxHash)
		if last := lastAttempt(c.job); last != nil {
			hashes[i] = common.HexToHash(last.Hash)
		}
	}
	known, err := t.w.cfg.Backend.TransactionsKnown(ctx, hashes)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for i, c := range check {
		t.checked[c.job.ID] = head
		last := lastAttempt(c.job)
		switch {
		case last != nil && head >= last.SentBlock+t.w.cfg.StuckBlocks:
			// Stuck in the pool, or refused by it since the base fee rose
			// past its fee cap: either way it needs a new price.
			errs = append(errs, t.bump(ctx, c.job, c.nonce, *last))
		case !known[i]:
			// Dropped from the pool (or never broadcast: a crash after the
			// write-ahead). The persisted bytes go out again.
			t.w.log.Info("pending transaction unknown to the node; re-broadcasting", "job_id", c.job.ID, "nonce", c.nonce)
			t.w.cfg.Metrics.Rebroadcast(metrics.RebroadcastDropped)
			errs = append(errs, t.send(ctx, c.job.ID, c.job.Raw))
		}
	}
	return errors.Join(errs...)
}

func (t *Tracker) lastSeen(j *jobs.Job) uint64 {
	if h, ok := t.checked[j.ID]; ok {
		return h
	}
	if last := lastAttempt(j); last != nil {
		return last.SentBlock
	}
	return 0
}

// bump replaces a stuck transaction: same nonce, same call, fees up by at
// least BumpPercent. At the fee ceiling the job stays submitted with a
// warning; it is not failed.
func (t *Tracker) bump(ctx context.Context, j *jobs.Job, n uint64, last jobs.Attempt) error {
	current, err := t.w.fees.Fees(ctx)
	if err != nil {
		return err
	}
	fees, err := txmgr.Bump(attemptFees(last), current, t.w.cfg.BumpPercent, t.w.cfg.MaxFeePerGas)
	if errors.Is(err, txmgr.ErrFeeCeiling) {
		if j.Warning == "" {
			t.w.log.Warn("stuck transaction at the fee ceiling; not bumping", "job_id", j.ID, "nonce", n)
			return t.w.store.Update(ctx, j.ID, j.Status, jobs.Fields{"warning", "stuck: a higher fee would pass RELAYQ_MAX_FEE_GWEI"}, nil)
		}
		return nil
	}
	if err != nil {
		return err
	}
	// A stuck cancellation or gap fill stays one, just pricier.
	call, kind := noop(t.a.Signer.Address()), last.Kind
	if kind != jobs.KindCancel && kind != jobs.KindGapFill {
		kind = jobs.KindBump
		if call, err = jobCall(j, t.a.Signer.Address()); err != nil {
			return err
		}
	}
	t.w.log.Info("replacing stuck transaction", "job_id", j.ID, "nonce", n, "max_fee_per_gas", fees.FeeCap, "kind", kind)
	return t.replace(ctx, j, n, last.Gas, fees, call, kind)
}

// cancel replaces a submitted job's transaction with a 0-value self-send at
// the same nonce, priced as a bump so the node accepts the replacement.
// Whichever is mined decides: the cancellation (cancelled) or the call.
func (t *Tracker) cancel(ctx context.Context, j *jobs.Job, n uint64) error {
	current, err := t.w.fees.Fees(ctx)
	if err != nil {
		return err
	}
	fees := current
	if last := lastAttempt(j); last != nil {
		if fees, err = txmgr.Bump(attemptFees(*last), current, t.w.cfg.BumpPercent, t.w.cfg.MaxFeePerGas); err != nil {
			return t.w.store.Update(ctx, j.ID, jobs.Submitted, jobs.Fields{"warning", "cancel not sent: a replacement fee would pass RELAYQ_MAX_FEE_GWEI"}, nil)
		}
	}
	t.w.log.Info("cancelling job", "job_id", j.ID, "nonce", n)
	return t.replace(ctx, j, n, txmgr.NoopGas, fees, noop(t.a.Signer.Address()), jobs.KindCancel)
}

// fillGap uses a nonce that a failed or cancelled job bound but will never
// use, with a 0-value self-send, so later nonces are not blocked.
func (t *Tracker) fillGap(ctx context.Context, j *jobs.Job, n uint64) error {
	fees, err := t.w.fees.Fees(ctx)
	if err != nil {
		return err
	}
	// A rejected original may still sit in some pool: price above it.
	if last := lastAttempt(j); last != nil && last.Nonce == n {
		if bumped, err := txmgr.Bump(attemptFees(*last), fees, t.w.cfg.BumpPercent, t.w.cfg.MaxFeePerGas); err == nil {
			fees = bumped
		}
	}
	t.w.log.Info("filling nonce gap", "job_id", j.ID, "nonce", n)
	return t.replace(ctx, j, n, txmgr.NoopGas, fees, noop(t.a.Signer.Address()), jobs.KindGapFill)
}

// unmine sends a mined job back to submitted if its block is no longer
// canonical.
func (t *Tracker) unmine(ctx context.Context, j *jobs.Job) error {
	if j.BlockNumber == nil {
		return nil
	}
	hd, err := t.w.cfg.Backend.HeaderByNumber(ctx, new(big.Int).SetUint64(*j.BlockNumber))
	if err == nil && hd.Hash() == common.HexToHash(j.BlockHash) {
		return nil
	}
	if err != nil && !errors.Is(err, ethereum.NotFound) {
		return err
	}
	return t.reorged(ctx, j)
}

// reorged takes a mined job whose block left the canonical chain back to
// submitted: the one step back the state machine allows, recorded.
func (t *Tracker) reorged(ctx context.Context, j *jobs.Job) error {
	t.w.log.Warn("reorg: block of mined job left the canonical chain", "job_id", j.ID, "block", *j.BlockNumber)
	return t.w.store.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Submitted, "reorg: block "+j.BlockHash+" no longer canonical",
		jobs.Fields{"block_number", "", "block_hash", "", "gas_used", "", "effective_gas_price", ""}, nil)
}

// replace signs call at nonce n, persists it as the job's newest attempt
// (write-ahead), then broadcasts it.
func (t *Tracker) replace(ctx context.Context, j *jobs.Job, n, gas uint64, fees txmgr.Fees, call txmgr.Call, kind string) error {
	if j.From != "" && common.HexToAddress(j.From) != t.a.Signer.Address() {
		// Never sign a job with a key other than the one its nonce is bound to.
		return fmt.Errorf("job %s belongs to signer %s, not %s", j.ID, j.From, t.a.Signer.Address())
	}
	tx, raw, err := txmgr.Sign(ctx, t.a.Signer, t.w.chainID, n, gas, fees, call)
	if err != nil {
		return err
	}
	fields := jobs.Fields{"raw", hexutil.Encode(raw), "warning", ""}
	if kind == jobs.KindBump || kind == jobs.KindResign {
		fields = append(fields, "tx_hash", tx.Hash().Hex(), "nonce", n)
	}
	if kind == jobs.KindResign {
		// A new nonce: record it only where the allocator binds it to the
		// job (a rebind lost in a failover must not be signed).
		err = t.w.store.UpdateBound(ctx, j.ID, j.Status, fields, newAttempt(tx, kind, fees.Head), t.a.Nonces.KeyTag()+"bound")
	} else {
		err = t.w.store.Update(ctx, j.ID, j.Status, fields, newAttempt(tx, kind, fees.Head))
	}
	if err != nil {
		var bad *jobs.BadTransitionError
		if errors.As(err, &bad) {
			return nil // the job moved on meanwhile; the next tick sees it
		}
		return err
	}
	t.checked[j.ID] = fees.Head
	t.w.cfg.Metrics.Replaced(kind)
	t.w.crashPoint("after_replace_persist")
	// Update waited for the replicas (jobs.WithReplicas) already.
	return t.broadcast(ctx, j.ID, hexutil.Encode(raw))
}

// send broadcasts bytes persisted earlier, once the Redis replicas hold
// them (jobs.Store.Replicated; at once without WithReplicas): bytes whose
// write a failover could still lose must not reach a node, or the job
// could be signed again at another nonce.
func (t *Tracker) send(ctx context.Context, id, raw string) error {
	if err := t.w.store.Replicated(ctx, id, "raw", raw); errors.Is(err, jobs.ErrChanged) {
		return nil // replaced meanwhile; the next tick looks at the new bytes
	} else if err != nil {
		return fmt.Errorf("re-broadcast %s: %w", id, err)
	}
	return t.broadcast(ctx, id, raw)
}

// broadcast sends persisted bytes and classifies the answer; the tracker
// looks again next block whatever happens.
func (t *Tracker) broadcast(ctx context.Context, id, raw string) error {
	tx, err := txmgr.RawTx(raw)
	if err != nil {
		return err
	}
	err = t.w.cfg.Backend.SendTransaction(ctx, tx)
	switch txmgr.Classify(err) {
	case txmgr.ClassNone, txmgr.ClassAlreadyKnown:
		t.a.pause(ctx, "")
		return nil
	case txmgr.ClassNonceTooLow:
		return nil // mined meanwhile, or used by someone else: the next tick tells
	case txmgr.ClassPaused:
		t.a.pause(ctx, err.Error())
		return nil
	default:
		t.w.log.Warn("tracker broadcast failed", "job_id", id, "tx_hash", tx.Hash().Hex(), "err", err)
		return nil
	}
}

// confirm moves a mined job to confirmed once its block is deep enough and
// still canonical; a block that left the canonical chain sends the job back
// to submitted.
func (t *Tracker) confirm(ctx context.Context, j *jobs.Job, head *types.Header, canon *canonCache) error {
	if j.BlockNumber == nil {
		return nil
	}
	bn := *j.BlockNumber
	confs := max(j.Confirmations, 1)
	if head.Number.Uint64()+1 < bn+confs {
		return nil
	}
	h, err := canon.hash(ctx, t.w.cfg.Backend, bn)
	if err != nil {
		return err
	}
	if h != common.HexToHash(j.BlockHash) {
		return t.reorged(ctx, j)
	}
	if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Confirmed, "", nil, nil); err != nil {
		return err
	}
	t.w.cfg.Metrics.Finished(jobs.Confirmed, len(j.Attempts), nil)
	t.w.cfg.Metrics.Stage(metrics.StageConfirmed, j.CreatedAt)
	t.w.log.Info("confirmed", "job_id", j.ID, "tx_hash", j.TxHash, "block", bn)
	return t.a.Nonces.Release(ctx, j.ID)
}

func noop(self common.Address) txmgr.Call {
	return txmgr.Call{From: self, To: self, Value: new(big.Int)}
}

func lastAttempt(j *jobs.Job) *jobs.Attempt {
	if len(j.Attempts) == 0 {
		return nil
	}
	return &j.Attempts[len(j.Attempts)-1]
}

func lastKind(j *jobs.Job) string {
	if a := lastAttempt(j); a != nil {
		return a.Kind
	}
	return ""
}

// hasNoopAt reports whether the job already sent a 0-value self-send (gap
// fill or cancellation) at nonce n: then its nonce needs no filling, only
// watching like any pending tx.
func hasNoopAt(j *jobs.Job, n uint64) bool {
	for _, a := range j.Attempts {
		if a.Nonce == n && (a.Kind == jobs.KindGapFill || a.Kind == jobs.KindCancel) {
			return true
		}
	}
	return false
}

// attemptFees are the fees an attempt was signed with.
func attemptFees(a jobs.Attempt) txmgr.Fees {
	return txmgr.Fees{TipCap: parseBig(a.GasTipCap), FeeCap: parseBig(a.GasFeeCap)}
}

func parseBig(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		return new(big.Int)
	}
	return n
}

func bigString(b *big.Int) string {
	if b == nil {
		return ""
	}
	return b.String()
}
