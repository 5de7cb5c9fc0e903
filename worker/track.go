package worker

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/lane"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/txmgr"
)

// trackBatch bounds how many in-flight jobs one tick looks at.
const trackBatch = 2000

// rebroadcastBlocks is how many blocks a pending transaction goes unchecked
// before the tracker asks the node whether it still has it.
const rebroadcastBlocks = 2

// Tracker follows one signer's transactions block by block. Each tick it
// observes the chain (head, the signer's nonce and balance, receipts of the
// jobs whose nonce is now used, the blocks holding disputed nonces), hands
// the lane's jobs and that observation to the decision core (package
// lane), and carries out the actions it returns. The rules live in lane,
// where they are tested without I/O; this file only reads and writes.
type Tracker struct {
	w        *Worker
	a        *Account
	lease    *Lease
	lastHead common.Hash
	memo     *lane.Memo

	absent map[string]int // job id → ticks in a row its bound record could not be read
	cache  jobCache       // the records read at earlier ticks (load)

	scanned         uint64 // the last block whose receipts were read whole (scanBlocks)
	noBlockReceipts bool   // the node does not serve eth_getBlockReceipts
}

// NewTracker returns the tracker of account a.
func NewTracker(w *Worker, a *Account) *Tracker {
	return &Tracker{
		w: w, a: a,
		lease:  NewLease(w.cfg.Redis, a.Nonces.KeyTag()+"tracker", 5*w.cfg.PollInterval+2*time.Second),
		memo:   lane.NewMemo(),
		absent: map[string]int{},
		cache:  jobCache{},
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

// laneConfig is the core's view of the worker's settings.
func (w *Worker) laneConfig() lane.Config {
	return lane.Config{
		StuckBlocks:       w.cfg.StuckBlocks,
		RebroadcastBlocks: rebroadcastBlocks,
		ForeignDepth:      foreignDepth,
		BumpPercent:       w.cfg.BumpPercent,
		MaxFeePerGas:      w.cfg.MaxFeePerGas,
	}
}

// foreignDepth is the least depth of a block holding someone else's
// transaction at a job's nonce before the job is re-signed (its
// confirmations count when larger).
const foreignDepth = 2

// absentTicks is how many ticks in a row a bound job's record must be
// missing before its binding is dropped.
const absentTicks = 5

// maxDisputes bounds the disputed nonces one tick looks up (each costs a
// few calls).
const maxDisputes = 8

// Tick does one round of tracking if the chain has a new head.
func (t *Tracker) Tick(ctx context.Context) error {
	b := t.w.cfg.Backend
	addr := t.a.Signer.Address()
	head, err := b.HeaderByNumber(ctx, nil)
	if err != nil {
		return err
	}
	if head.Hash() == t.lastHead {
		return nil
	}
	latest, err := b.NonceAt(ctx, addr, nil)
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
	js, err := t.load(ctx, ids)
	if err != nil {
		return err
	}
	var errs []error
	records := make(map[string]*jobs.Job, len(js))
	lj := make([]lane.Job, 0, len(js))
	for i, j := range js {
		if j == nil {
			// A record deleted by hand, or a stale read (a replica, a
			// failover): release the binding only after several ticks
			// in a row find nothing, never on one read's absence.
			if t.absent[ids[i]]++; t.absent[ids[i]] >= absentTicks {
				delete(t.absent, ids[i])
				errs = append(errs, t.a.Nonces.Release(ctx, ids[i]))
			}
			continue
		}
		delete(t.absent, j.ID)
		records[j.ID] = j
		lj = append(lj, laneJob(j, inflight[i].Nonce))
	}
	obs, full, err := t.observe(ctx, head, latest, lj)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	acts := lane.Decide(lj, obs, t.memo, t.w.laneConfig())
	errs = append(errs, t.act(ctx, head.Number.Uint64(), records, full, acts))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	t.lastHead = head.Hash()
	return nil
}

// observe reads what the core needs this tick. Reads that fail are left
// out, and the core waits for them; only the receipts are required.
func (t *Tracker) observe(ctx context.Context, head *types.Header, latest uint64, lj []lane.Job) (lane.Observation, map[common.Hash]*types.Receipt, error) {
	b := t.w.cfg.Backend
	addr := t.a.Signer.Address()
	hn := head.Number.Uint64()
	obs := lane.Observation{
		Head: hn, Latest: latest, BaseFee: head.BaseFee,
		Receipts: map[common.Hash]lane.Receipt{}, Canon: map[uint64]common.Hash{hn: head.Hash()},
		Known: map[common.Hash]bool{}, Holders: map[uint64]lane.Holder{},
	}
	if bal, err := b.BalanceAt(ctx, addr, nil); err == nil {
		obs.Balance = bal
	}
	if fees, err := t.w.fees.Fees(ctx); err == nil {
		obs.Fees = fees
	}
	plan := lane.PlanReads(lj, t.memo, t.w.laneConfig(), hn, latest)
	full, err := t.receipts(ctx, hn, plan.Receipts)
	if err != nil {
		return obs, nil, err
	}
	for h, r := range full {
		obs.Receipts[h] = lane.Receipt{TxHash: h, Block: r.BlockNumber.Uint64(), BlockHash: r.BlockHash, Success: r.Status == types.ReceiptStatusSuccessful}
	}
	for _, n := range plan.Canon {
		if _, ok := obs.Canon[n]; ok || n > hn {
			continue
		}
		if hd, err := b.HeaderByNumber(ctx, new(big.Int).SetUint64(n)); err == nil {
			obs.Canon[n] = hd.Hash()
		}
	}
	if len(plan.Known) > 0 {
		if known, err := b.TransactionsKnown(ctx, plan.Known); err == nil {
			for i, h := range plan.Known {
				obs.Known[h] = known[i]
			}
		}
	}
	disputed := lane.Disputed(lj, latest, obs.Receipts)
	for _, n := range disputed[:min(len(disputed), maxDisputes)] {
		if h, ok := t.memo.Holders[n]; ok {
			// Found on an earlier tick: only check its block is still there.
			if hd, err := b.HeaderByNumber(ctx, new(big.Int).SetUint64(h.Block)); err == nil {
				if hd.Hash() == h.BlockHash {
					obs.Holders[n], obs.Canon[h.Block] = h, hd.Hash()
					continue
				}
				delete(t.memo.Holders, n) // reorganised away: search again
			} else {
				continue
			}
		}
		h, ok, err := txmgr.NonceHolder(ctx, b, t.w.chainID, addr, n, hn)
		if err != nil {
			t.w.log.Debug("nonce holder", "signer", addr.Hex(), "nonce", n, "err", err)
			continue
		}
		if ok {
			obs.Holders[n] = h
			if hd, err := b.HeaderByNumber(ctx, new(big.Int).SetUint64(h.Block)); err == nil {
				obs.Canon[h.Block] = hd.Hash()
				if hd.Hash() == h.BlockHash {
					t.memo.Holders[n] = h
				}
			}
		}
	}
	return obs, full, nil
}

// receipts looks up the receipts of hashes: whole blocks' receipts when
// there are many, one lookup per transaction for the rest.
func (t *Tracker) receipts(ctx context.Context, head uint64, hashes []common.Hash) (map[common.Hash]*types.Receipt, error) {
	receipts := map[common.Hash]*types.Receipt{}
	missing := hashes
	if len(hashes) >= blockReceiptsMin {
		missing = t.scanBlocks(ctx, head, hashes, receipts)
	}
	if len(missing) > 0 {
		rs, err := t.w.cfg.Backend.TransactionReceipts(ctx, missing)
		if err != nil {
			return nil, err
		}
		for i, r := range rs {
			if r != nil && r.BlockNumber != nil {
				receipts[missing[i]] = r
			}
		}
	}
	return receipts, nil
}

// laneJob is the core's view of a job record bound to nonce n.
func laneJob(j *jobs.Job, n uint64) lane.Job {
	lj := lane.Job{
		ID: j.ID, Status: j.Status, Nonce: n, Signed: j.Nonce, Confirmations: j.Confirmations,
		CancelRequested: j.CancelRequested, Warning: j.Warning, Value: parseBig(j.Value),
	}
	if j.Abandon != nil {
		lj.Abandon = j.Abandon.Code
	}
	for _, a := range j.Attempts {
		lj.Attempts = append(lj.Attempts, lane.Attempt{
			Hash: common.HexToHash(a.Hash), Nonce: a.Nonce, Kind: a.Kind, Gas: a.Gas,
			Fees: attemptFees(a), SentBlock: a.SentBlock,
		})
	}
	if j.Status == jobs.Mined && j.BlockNumber != nil {
		lj.Mined = &lane.Receipt{
			TxHash: common.HexToHash(j.TxHash), Block: *j.BlockNumber, BlockHash: common.HexToHash(j.BlockHash),
			Success: j.ReceiptStatus == nil || *j.ReceiptStatus == types.ReceiptStatusSuccessful,
		}
	}
	return lj
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

// act carries out the core's actions. Actions that only write a job's own
// record (mined, stepped back, final, released, warned) run concurrently
// across jobs, in order within one job: a block can hold thousands of ours.
// Actions that sign or send run one after another in the core's (nonce)
// order, so broadcasts leave in nonce order.
func (t *Tracker) act(ctx context.Context, head uint64, records map[string]*jobs.Job, receipts map[common.Hash]*types.Receipt, acts []lane.Action) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, trackParallel)
	)
	perJob := map[string][]lane.Action{}
	var order []string
	var sends []lane.Action
	for _, a := range acts {
		id := ""
		switch a := a.(type) {
		case lane.MarkMined:
			id = a.ID
		case lane.StepBack:
			id = a.ID
		case lane.Finalize:
			id = a.ID
		case lane.Release:
			id = a.ID
		case lane.Warn:
			id = a.ID
		default:
			sends = append(sends, a)
			continue
		}
		if len(perJob[id]) == 0 {
			order = append(order, id)
		}
		perJob[id] = append(perJob[id], a)
	}
	for _, id := range order {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			as := perJob[id]
			for k := 0; k < len(as); k++ {
				var err error
				if mm, f, ok := minedAndFinal(as[k:]); ok {
					// Mined and decided at once: one write.
					err = t.mineAndFinalize(ctx, records[id], receipts[mm.Receipt.TxHash], mm, f)
					k++
				} else {
					err = t.record(ctx, records[id], receipts, as[k])
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return // the next tick decides again from what was written
				}
			}
		}()
	}
	wg.Wait()
	failed := map[string]bool{}
	for _, a := range sends {
		if err := t.sendAction(ctx, head, records, a, failed); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// record carries out an action that writes only j's record.
func (t *Tracker) record(ctx context.Context, j *jobs.Job, receipts map[common.Hash]*types.Receipt, a lane.Action) error {
	switch a := a.(type) {
	case lane.MarkMined:
		return t.markMined(ctx, j, receipts[a.Receipt.TxHash], a)
	case lane.StepBack:
		t.w.log.Warn("reorg: block of mined job left the canonical chain", "job_id", j.ID, "block_hash", a.BlockHash.Hex())
		err := t.w.store.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Submitted, "reorg: block "+a.BlockHash.Hex()+" no longer canonical",
			jobs.Fields{"block_number", "", "block_hash", "", "gas_used", "", "effective_gas_price", "", "receipt_status", "", "contract_address", ""}, nil)
		j.Status = jobs.Submitted
		return err
	case lane.Finalize:
		return t.finalize(ctx, j, a)
	case lane.Release:
		return t.a.Nonces.Release(ctx, j.ID)
	case lane.Warn:
		return t.w.store.Update(ctx, j.ID, j.Status, jobs.Fields{"warning", a.Warning}, nil)
	}
	return nil
}

// markMined records the receipt that moved a job to mined. Nothing is
// final: the verdict waits until the block is deep (finalize).
func (t *Tracker) markMined(ctx context.Context, j *jobs.Job, r *types.Receipt, a lane.MarkMined) error {
	if r == nil {
		return nil
	}
	st := minedStep(j, r, a)
	if err := t.w.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, st.Note, st.Fields, nil); err != nil {
		return err
	}
	t.minedDone(j, r, a)
	return nil
}

// createdContract reports whether r created j's contract: a deployment's
// contract exists only if the creation succeeded, and a no-op mined in its
// place has no contract address.
func createdContract(j *jobs.Job, r *types.Receipt) bool {
	return j.Deployment() && r.Status == types.ReceiptStatusSuccessful && r.ContractAddress != (common.Address{})
}

// minedStep is the change to mined that r makes to j.
func minedStep(j *jobs.Job, r *types.Receipt, a lane.MarkMined) jobs.PathStep {
	fields := jobs.Fields{
		"tx_hash", r.TxHash.Hex(),
		"block_number", r.BlockNumber.Uint64(),
		"block_hash", r.BlockHash.Hex(),
		"gas_used", r.GasUsed,
		"effective_gas_price", bigString(r.EffectiveGasPrice),
		"receipt_status", r.Status,
	}
	if createdContract(j, r) {
		fields = append(fields, "contract_address", r.ContractAddress.Hex())
	}
	note := ""
	switch {
	case a.Kind == jobs.KindCancel:
		note = "cancellation mined"
	case a.Kind == jobs.KindGapFill:
		note = "no-op in its place mined"
	case r.Status != types.ReceiptStatusSuccessful:
		note = "reverted on chain"
	}
	return jobs.PathStep{To: jobs.Mined, Note: note, Fields: fields}
}

// minedDone updates j, the metrics and the log once j is mined.
func (t *Tracker) minedDone(j *jobs.Job, r *types.Receipt, a lane.MarkMined) {
	bn, st := r.BlockNumber.Uint64(), r.Status
	j.Status, j.TxHash, j.BlockNumber, j.BlockHash, j.ReceiptStatus = jobs.Mined, r.TxHash.Hex(), &bn, r.BlockHash.Hex(), &st
	if createdContract(j, r) {
		j.ContractAddress = r.ContractAddress.Hex()
	}
	t.w.cfg.Metrics.Stage(metrics.StageMined, j.CreatedAt)
	t.w.log.Info("mined", "job_id", j.ID, "kind", a.Kind, "tx_hash", r.TxHash.Hex(), "block", r.BlockNumber.Uint64(), "status", r.Status)
}

// minedAndFinal reports whether as begins with a job's MarkMined followed
// by its Finalize.
func minedAndFinal(as []lane.Action) (lane.MarkMined, lane.Finalize, bool) {
	if len(as) < 2 {
		return lane.MarkMined{}, lane.Finalize{}, false
	}
	mm, ok1 := as[0].(lane.MarkMined)
	f, ok2 := as[1].(lane.Finalize)
	return mm, f, ok1 && ok2 && mm.ID == f.ID
}

// mineAndFinalize is markMined and finalize in one write, for a job whose
// receipt is deep enough for its verdict at the tick that finds it (with
// confirmations 1, every job): the same changes, history and webhook
// events, in one script.
func (t *Tracker) mineAndFinalize(ctx context.Context, j *jobs.Job, r *types.Receipt, a lane.MarkMined, f lane.Finalize) error {
	if r == nil {
		return nil
	}
	mined := minedStep(j, r, a)
	final := t.finalStep(ctx, j, f)
	if err := t.w.store.TransitionPath(ctx, j.ID, jobs.Submitted, []jobs.PathStep{mined, final}); err != nil {
		return err
	}
	t.minedDone(j, r, a)
	t.finalDone(j, f)
	return nil
}

// finalize gives a job its verdict, now that the chain has decided.
func (t *Tracker) finalize(ctx context.Context, j *jobs.Job, f lane.Finalize) error {
	from := j.Status
	st := t.finalStep(ctx, j, f)
	if err := t.w.store.TransitionIf(ctx, j.ID, from, f.To, st.Note, st.Fields, nil); err != nil {
		return err
	}
	t.finalDone(j, f)
	return nil
}

// finalStep is the change that gives j its verdict.
func (t *Tracker) finalStep(ctx context.Context, j *jobs.Job, f lane.Finalize) jobs.PathStep {
	var fields jobs.Fields
	note := ""
	switch {
	case f.To == jobs.Failed && f.Code == lane.CodeReverted:
		jerr := jobs.Error{Code: jobs.ErrCodeRevertedOnChain, Message: "transaction reverted on chain"}
		if call, err := jobCall(j, t.a.Signer.Address()); err == nil && f.Receipt != nil {
			// The call is the same in every attempt; replay it on the state
			// before its block to read why it reverted.
			tx := types.NewTx(&types.DynamicFeeTx{To: call.Target(), Value: call.Value, Data: call.Data, Gas: j.Gas})
			data, cerr := txmgr.ReplayRevert(ctx, t.w.cfg.Backend, tx, t.a.Signer.Address(), new(big.Int).SetUint64(f.Receipt.Block))
			if len(data) > 0 {
				jerr = t.w.revertErrorAt(ctx, jobs.ErrCodeRevertedOnChain, cerr, j.To)
				jerr.Message = "transaction reverted on chain: " + jerr.Message
			}
		}
		fields, note = jobs.Fields{"error", jobs.ErrorField(jerr)}, "reverted on chain"
	case f.To == jobs.Failed:
		jerr := jobs.Error{Code: f.Code, Message: "a 0-value self-send used the job's nonce in its place"}
		if j.Abandon != nil && j.Abandon.Code == f.Code {
			jerr = *j.Abandon
		}
		if f.Receipt == nil {
			jerr.Message = "the job's nonce was used by a transaction that is not relayq's: " + jerr.Message
		}
		fields, note = jobs.Fields{"error", jobs.ErrorField(jerr)}, f.Code
	case f.To == jobs.Cancelled && f.Receipt == nil:
		note = "cancelled: the job's nonce was used by a transaction that is not relayq's"
	}
	return jobs.PathStep{To: f.To, Note: note, Fields: fields}
}

// finalDone updates j, the metrics and the log once j has its verdict.
func (t *Tracker) finalDone(j *jobs.Job, f lane.Finalize) {
	j.Status = f.To
	t.w.cfg.Metrics.Finished(f.To, len(j.Attempts), nil)
	if f.To == jobs.Confirmed {
		t.w.cfg.Metrics.Stage(metrics.StageConfirmed, j.CreatedAt)
	}
	t.w.log.Info("final", "job_id", j.ID, "status", f.To, "code", f.Code, "tx_hash", j.TxHash)
}

// sendAction carries out an action that signs or sends. A job whose
// earlier action failed this tick is skipped (failed).
func (t *Tracker) sendAction(ctx context.Context, head uint64, records map[string]*jobs.Job, a lane.Action, failed map[string]bool) error {
	self := t.a.Signer.Address()
	switch a := a.(type) {
	case lane.GiveUp:
		j := records[a.ID]
		t.w.log.Warn("giving up on job; a no-op replaces it at its nonce", "job_id", j.ID, "code", a.Code, "reason", a.Message)
		jerr := jobs.Error{Code: a.Code, Message: a.Message}
		if err := t.w.giveUp(ctx, j.ID, jerr); err != nil {
			failed[j.ID] = true
			return err
		}
		j.Abandon = &jerr
	case lane.Replace:
		j := records[a.ID]
		if failed[j.ID] {
			return nil
		}
		call := noop(self)
		if !a.Noop() {
			c, err := jobCall(j, self)
			if err != nil {
				return err
			}
			call = c
		}
		t.w.log.Info("replacing", "job_id", j.ID, "nonce", a.Nonce, "kind", a.Kind, "max_fee_per_gas", a.Fees.FeeCap)
		return t.replace(ctx, j, a.Nonce, a.Gas, a.Fees, call, a.Kind)
	case lane.Resign:
		j := records[a.ID]
		t.w.log.Warn("nonce used by a transaction that is not relayq's (seen in its block); giving the job a new nonce", "job_id", j.ID, "nonce", a.Old)
		if err := t.w.reconcile(ctx, t.a); err != nil {
			return err
		}
		n, err := t.a.Nonces.Rebind(ctx, j.ID, a.Old)
		if errors.Is(err, nonce.ErrNotBound) {
			return nil // rebound meanwhile
		}
		if err != nil {
			return err
		}
		call, err := jobCall(j, self)
		if err != nil {
			return err
		}
		fees, err := t.w.fees.Fees(ctx)
		if err != nil {
			return err
		}
		if t.w.cfg.MaxFeePerGas != nil {
			fees = fees.Capped(t.w.cfg.MaxFeePerGas)
		}
		return t.replace(ctx, j, n, j.Gas, fees, call, jobs.KindResign)
	case lane.Rebroadcast:
		j := records[a.ID]
		t.w.log.Info("pending transaction unknown to the node; re-broadcasting", "job_id", j.ID)
		t.w.cfg.Metrics.Rebroadcast(metrics.RebroadcastDropped)
		return t.send(ctx, j.ID, j.Raw)
	case lane.FinishSubmit:
		j := records[a.ID]
		t.w.log.Warn("finishing the submission of a job whose worker died after binding its nonce", "job_id", j.ID)
		return t.w.submit(ctx, j)
	case lane.FillGap:
		// No job holds this nonce (someone else's transaction there was
		// dropped after the allocator moved past it): a no-op keeps the
		// later ones going. It executes nothing, so it needs no write-ahead.
		tx, _, err := txmgr.Sign(ctx, t.a.Signer, t.w.chainID, a.Nonce, txmgr.NoopGas, a.Fees, noop(self))
		if err != nil {
			return err
		}
		t.w.log.Warn("filling a nonce no job holds", "signer", self.Hex(), "nonce", a.Nonce)
		t.w.cfg.Metrics.Replaced(jobs.KindGapFill)
		if err := t.w.cfg.Backend.SendTransaction(ctx, tx); err != nil {
			t.w.log.Warn("gap fill broadcast", "nonce", a.Nonce, "err", err)
		}
	case lane.Pause:
		switch {
		case a.Reason != "":
			t.a.pause(ctx, a.Reason)
			t.a.fundsPaused.Store(true)
		case t.a.fundsPaused.Load():
			t.a.pause(ctx, "")
			t.a.fundsPaused.Store(false)
		}
	}
	return nil
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
	t.w.cfg.Metrics.Replaced(kind)
	t.w.crashPoint("after_replace_persist")
	// Update waited for the replicas (jobs.WithReplicas) already.
	return t.broadcast(ctx, j.ID, hexutil.Encode(raw), kind)
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
	return t.broadcast(ctx, id, raw, "")
}

// broadcast sends persisted bytes of an attempt of kind ("" when not
// known) and classifies the answer; the tracker looks again next block
// whatever happens. The answer never decides a job's verdict: a re-signed
// call refused for good is given up (a no-op will replace it, and the chain
// decides), a refused replacement only warns.
func (t *Tracker) broadcast(ctx context.Context, id, raw, kind string) error {
	tx, err := txmgr.RawTx(raw)
	if err != nil {
		return err
	}
	err = t.w.cfg.Backend.SendTransaction(ctx, tx)
	switch txmgr.Classify(err) {
	case txmgr.ClassNone, txmgr.ClassAlreadyKnown, txmgr.ClassNonceTooLow:
		return nil // nonce too low: mined meanwhile, or used by someone else; the next tick tells
	case txmgr.ClassPermanent:
		t.w.log.Warn("node refused a replacement for good", "job_id", id, "kind", kind, "tx_hash", tx.Hash().Hex(), "err", err)
		switch kind {
		case jobs.KindResign, "":
			// A re-signed call, or persisted bytes sent again, refused for
			// good: a no-op replaces it and the chain decides (a job that is
			// not submitted any more is left as it is).
			return t.w.giveUp(ctx, id, t.w.revertError(jobs.ErrCodeRejected, err))
		case jobs.KindBump:
			return t.w.refusedReplacement(ctx, id, err)
		}
		return nil
	default:
		t.w.log.Warn("tracker broadcast failed", "job_id", id, "tx_hash", tx.Hash().Hex(), "err", err)
		return nil
	}
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
