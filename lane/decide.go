package lane

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// Decide returns what to do this tick, in order, and updates memo. It reads
// nothing but its arguments.
func Decide(js []Job, obs Observation, memo *Memo, cfg Config) []Action {
	d := decider{obs: obs, memo: memo, cfg: cfg}
	live := map[string]bool{}
	bound := map[uint64]bool{}
	for _, j := range sorted(js) {
		live[j.ID], bound[j.Nonce] = true, true
		d.job(j)
	}
	for n := range memo.Holders {
		if !bound[n] {
			delete(memo.Holders, n)
		}
	}
	d.gap(js)
	d.pause()
	for _, m := range []map[string]uint64{memo.Checked, memo.Orphans, memo.Unaffordable} {
		for id := range m {
			if !live[id] {
				delete(m, id)
			}
		}
	}
	return d.out
}

type decider struct {
	obs  Observation
	memo *Memo
	cfg  Config
	out  []Action
}

func (d *decider) add(a ...Action) { d.out = append(d.out, a...) }

func (d *decider) job(j Job) {
	used := j.Nonce < d.obs.Latest
	switch j.Status {
	case jobs.Queued:
		d.queued(j)
	case jobs.Submitted:
		if r, a, ok := j.receipt(d.obs.Receipts); ok {
			d.add(MarkMined{ID: j.ID, Receipt: r, Kind: a.Kind})
			// Decided once the receipt's block is deep: now, if it already
			// is (a chain that mines only on demand may not move again).
			j.Status, j.Mined = jobs.Mined, &r
			d.mined(j, used)
			return
		}
		if used {
			d.disputed(j)
			return
		}
		d.submitted(j)
	case jobs.Mined:
		d.mined(j, used)
	case jobs.Confirmed:
		d.add(Release{ID: j.ID})
	case jobs.Failed, jobs.Cancelled:
		// Final without a signed call that can execute (it failed before
		// signing, or is an older record): its nonce only needs using.
		if used {
			d.add(Release{ID: j.ID})
			return
		}
		if !j.noopAt(j.Nonce) {
			d.fill(j, jobs.KindGapFill)
			return
		}
		d.watch(j)
	}
}

// queued: a job holding a nonce with no signed call. Its worker died
// between the reservation and the write-ahead; after a few blocks the
// tracker finishes the submission (safe next to a live task: both get the
// same bound nonce, and only one signature can be persisted).
func (d *decider) queued(j Job) {
	first, seen := d.memo.Orphans[j.ID]
	switch {
	case !seen:
		d.memo.Orphans[j.ID] = d.obs.Head
	case d.obs.Head >= first+d.cfg.StuckBlocks:
		delete(d.memo.Orphans, j.ID)
		d.add(FinishSubmit{ID: j.ID})
	}
}

// disputed: a submitted job whose nonce is used while none of its attempts
// has a receipt. Only the block holding the nonce decides.
func (d *decider) disputed(j Job) {
	h, ok := d.obs.Holders[j.Nonce]
	if !ok {
		return // the node cannot show the block yet: wait
	}
	if j.attempt(h.TxHash) != nil {
		return // ours: its receipt lags; wait for it
	}
	depth := max(j.confs(), d.cfg.ForeignDepth)
	if !deep(d.obs.Head, h.Block, depth) {
		return
	}
	if c, ok := d.obs.Canon[h.Block]; !ok || c != h.BlockHash {
		return // not confirmed canonical this tick (or reorganised away): look again
	}
	// Someone else's transaction used the nonce: none of ours can execute
	// there. A job relayq was giving up on anyway is final; the rest get a
	// new nonce.
	switch {
	case j.CancelRequested:
		d.add(Finalize{ID: j.ID, To: jobs.Cancelled}, Release{ID: j.ID})
	case j.Abandon != "":
		d.add(Finalize{ID: j.ID, To: jobs.Failed, Code: j.Abandon}, Release{ID: j.ID})
	default:
		d.add(Resign{ID: j.ID, Old: j.Nonce})
	}
}

// submitted: a job with a signed transaction at a nonce the chain has not
// used yet.
func (d *decider) submitted(j Job) {
	if j.Signed != nil && *j.Signed != j.Nonce && j.lastAt(j.Nonce) == nil {
		// A rebind reached the allocator but the process died before the
		// re-signed call was persisted: finish it.
		d.sign(j, Replace{ID: j.ID, Nonce: j.Nonce, Kind: jobs.KindResign, Gas: j.gas()})
		return
	}
	if j.CancelRequested && !j.noopAt(j.Nonce) {
		if !d.fill(j, jobs.KindCancel) {
			// At the fee ceiling: the call stays, and is looked after.
			d.recheck(j)
		}
		return
	}
	if j.Abandon != "" && !j.noopAt(j.Nonce) {
		d.fill(j, jobs.KindGapFill)
		return
	}
	if d.unaffordable(j) {
		return
	}
	d.watch(j)
}

// unaffordable gives up on the lane's head when the signer cannot pay for
// its call but can pay for a no-op: after StuckBlocks blocks its nonce is
// filled, so the signer's later jobs go through. It reports whether it
// took over the job this tick.
func (d *decider) unaffordable(j Job) bool {
	a := j.lastAt(j.Nonce)
	if j.Nonce != d.obs.Latest || a == nil || a.Noop() || d.obs.Balance == nil || d.obs.Fees.FeeCap == nil {
		delete(d.memo.Unaffordable, j.ID)
		return false
	}
	cost := new(big.Int).Mul(new(big.Int).SetUint64(a.Gas), a.Fees.FeeCap)
	if j.Value != nil {
		cost.Add(cost, j.Value)
	}
	if cost.Cmp(d.obs.Balance) <= 0 || d.obs.Balance.Cmp(noopCost(d.obs.Fees)) < 0 {
		delete(d.memo.Unaffordable, j.ID)
		return false
	}
	first, seen := d.memo.Unaffordable[j.ID]
	if !seen {
		d.memo.Unaffordable[j.ID] = d.obs.Head
		if j.Warning != WarnInsufficientFunds {
			d.add(Warn{ID: j.ID, Warning: WarnInsufficientFunds})
		}
		return true
	}
	if d.obs.Head < first+d.cfg.StuckBlocks {
		return true
	}
	delete(d.memo.Unaffordable, j.ID)
	msg := fmt.Sprintf("the signer's balance %s wei cannot pay value + gas × max fee = %s wei", d.obs.Balance, cost)
	d.add(GiveUp{ID: j.ID, Code: CodeInsufficientFunds, Message: msg})
	j.Abandon = CodeInsufficientFunds
	d.fill(j, jobs.KindGapFill)
	return true
}

// mined: a job one of whose attempts is in a block.
func (d *decider) mined(j Job, used bool) {
	if j.Mined == nil {
		return
	}
	mn := minedNonce(j)
	c, known := d.obs.Canon[j.Mined.Block]
	if known && c != j.Mined.BlockHash {
		d.add(StepBack{ID: j.ID, BlockHash: j.Mined.BlockHash})
		return
	}
	if mn != j.Nonce {
		// Mined at an older nonce after a re-sign: the newer nonce must be
		// used by a no-op before the re-signed call can execute.
		if !used {
			if !j.noopAt(j.Nonce) {
				d.fill(j, jobs.KindGapFill)
			} else {
				d.watch(j)
			}
			return
		}
		for _, a := range j.Attempts {
			if r, ok := d.obs.Receipts[a.Hash]; ok && a.Nonce == j.Nonce && !a.Noop() && r.TxHash != j.Mined.TxHash && j.Warning != WarnDoubleExecution {
				d.add(Warn{ID: j.ID, Warning: WarnDoubleExecution})
			}
		}
	}
	if !known || !deep(d.obs.Head, j.Mined.Block, j.confs()) {
		return
	}
	f := Finalize{ID: j.ID, Receipt: j.Mined}
	a := j.attempt(j.Mined.TxHash)
	switch {
	case a != nil && a.Kind == jobs.KindCancel:
		f.To = jobs.Cancelled
	case a != nil && a.Noop():
		f.To, f.Code = jobs.Failed, j.Abandon
		if f.Code == "" {
			f.Code = CodeRejected
		}
	case j.Mined.Success:
		f.To = jobs.Confirmed
	default:
		f.To, f.Code = jobs.Failed, CodeReverted
	}
	d.add(f, Release{ID: j.ID})
}

// fill replaces whatever waits at the job's nonce with a no-op of kind,
// priced to replace it in any pool that holds it.
func (d *decider) fill(j Job, kind string) bool {
	fees, ok := d.current()
	if !ok {
		return false
	}
	if last := j.lastAt(j.Nonce); last != nil {
		bumped, err := txmgr.Bump(last.Fees, fees, d.cfg.BumpPercent, d.cfg.MaxFeePerGas)
		switch {
		case err == nil:
			fees = bumped
		case kind == jobs.KindCancel:
			if j.Warning != WarnCancelCeiling {
				d.add(Warn{ID: j.ID, Warning: WarnCancelCeiling})
			}
			return false
		}
		// A gap fill at the ceiling goes out at current fees: a pool that
		// holds the old call keeps it, and the chain decides.
	}
	d.sign(j, Replace{ID: j.ID, Nonce: j.Nonce, Kind: kind, Gas: NoopGas, Fees: fees})
	return true
}

// watch handles a pending transaction of j at its nonce: bump it when
// stuck, re-broadcast it when the node dropped it.
func (d *decider) watch(j Job) {
	last := j.lastAt(j.Nonce)
	if last == nil {
		return
	}
	known, asked := d.obs.Known[last.Hash]
	if !asked {
		return // not due for a look (every RebroadcastBlocks since the last one)
	}
	d.memo.Checked[j.ID] = d.obs.Head
	switch {
	case !known && !d.underpriced(*last):
		// Dropped at a price that still holds: the same bytes again.
		d.add(Rebroadcast{ID: j.ID})
	case !known, d.obs.Head >= last.SentBlock+d.cfg.StuckBlocks:
		// Refused by the pool since the base fee rose past its fee cap, or
		// stuck in it: either way it needs a new price.
		d.bump(j, *last)
	}
}

// underpriced reports whether an attempt's fee cap is below the head's base
// fee: a pool refuses it, so sending the same bytes again will not do.
func (d *decider) underpriced(a Attempt) bool {
	return d.obs.BaseFee != nil && a.Fees.FeeCap.Cmp(d.obs.BaseFee) < 0
}

// recheck re-broadcasts the job's pending transaction if the node, asked
// this tick, no longer knows it.
func (d *decider) recheck(j Job) {
	last := j.lastAt(j.Nonce)
	if last == nil {
		return
	}
	if known, asked := d.obs.Known[last.Hash]; asked {
		d.memo.Checked[j.ID] = d.obs.Head
		if !known {
			d.add(Rebroadcast{ID: j.ID})
		}
	}
}

// bump replaces a stuck transaction: same nonce, same call (or no-op),
// fees up by at least BumpPercent. At the ceiling the job keeps waiting
// with a warning; it is never failed for it.
func (d *decider) bump(j Job, last Attempt) {
	fees, ok := d.current()
	if !ok {
		return
	}
	bumped, err := txmgr.Bump(last.Fees, fees, d.cfg.BumpPercent, d.cfg.MaxFeePerGas)
	if errors.Is(err, txmgr.ErrFeeCeiling) {
		if j.Warning != WarnFeeCeiling {
			d.add(Warn{ID: j.ID, Warning: WarnFeeCeiling})
		}
		d.recheck(j) // still look after it: a dropped transaction goes out again
		return
	}
	if err != nil {
		return
	}
	kind := jobs.KindBump
	if last.Noop() {
		kind = last.Kind // a stuck cancellation or gap fill stays one, just pricier
	}
	d.sign(j, Replace{ID: j.ID, Nonce: j.Nonce, Kind: kind, Gas: last.Gas, Fees: bumped})
}

func (d *decider) sign(j Job, r Replace) {
	if r.Fees.FeeCap == nil {
		fees, ok := d.current()
		if !ok {
			return
		}
		r.Fees = fees
	}
	d.memo.Checked[j.ID] = d.obs.Head
	d.add(r)
}

// current is the fee suggestion of this tick, if it was read.
func (d *decider) current() (txmgr.Fees, bool) {
	f := d.obs.Fees
	if f.FeeCap == nil || f.TipCap == nil {
		return txmgr.Fees{}, false
	}
	if d.cfg.MaxFeePerGas != nil {
		f = f.Capped(d.cfg.MaxFeePerGas)
	}
	return f, true
}

// gap fills the chain's next nonce when no job holds it while later nonces
// wait on it, after StuckBlocks blocks.
func (d *decider) gap(js []Job) {
	lowest, any := uint64(0), false
	for _, j := range js {
		if j.Nonce == d.obs.Latest {
			d.memo.GapSeen = false
			return
		}
		if j.Nonce > d.obs.Latest && (!any || j.Nonce < lowest) {
			lowest, any = j.Nonce, true
		}
	}
	if !any {
		d.memo.GapSeen = false
		return
	}
	if !d.memo.GapSeen || d.memo.GapAt != d.obs.Latest {
		d.memo.Gap, d.memo.GapAt, d.memo.GapSeen = d.obs.Head, d.obs.Latest, true
		return
	}
	if d.obs.Head < d.memo.Gap+d.cfg.StuckBlocks {
		return
	}
	if fees, ok := d.current(); ok {
		d.memo.Gap = d.obs.Head // again after StuckBlocks if it did not take
		d.add(FillGap{Nonce: d.obs.Latest, Fees: fees})
	}
}

// pause pauses the signer when it cannot pay for a no-op, and clears the
// mark when it can: a job it cannot afford is that job's problem.
func (d *decider) pause() {
	if d.obs.Balance == nil || d.obs.Fees.FeeCap == nil {
		return
	}
	need := noopCost(d.obs.Fees)
	if d.obs.Balance.Cmp(need) < 0 {
		d.add(Pause{Reason: fmt.Sprintf("insufficient funds: balance %s wei cannot pay for a no-op (%s wei)", d.obs.Balance, need)})
		return
	}
	d.add(Pause{})
}

func noopCost(f txmgr.Fees) *big.Int {
	return new(big.Int).Mul(big.NewInt(int64(NoopGas)), f.FeeCap)
}

// gas is the gas limit of the job's newest call.
func (j *Job) gas() uint64 {
	for i := len(j.Attempts) - 1; i >= 0; i-- {
		if !j.Attempts[i].Noop() {
			return j.Attempts[i].Gas
		}
	}
	return 0
}
