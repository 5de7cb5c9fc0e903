// Package lane decides what happens next to one signer's in-flight
// transactions. It is the tracker's core, with no I/O: given the lane's jobs
// (each bound to a nonce), what was observed of the chain this tick, and
// what the tracker remembers from earlier ticks, Decide returns the actions
// to take — mark a job mined, step it back after a reorg, give it its final
// status, bump, cancel, fill a nonce, re-sign after foreign use,
// re-broadcast, pause the signer. The worker's tracker observes, calls
// Decide, and carries the actions out.
//
// The rules it applies are relayq's exactly-once rules (DESIGN.md,
// invariants 2, 3, 7 and 8):
//
//   - A verdict comes from the chain: a job becomes confirmed, failed or
//     cancelled only when the block deciding it is Confirmations deep and
//     still canonical. Until then it is mined, and a reorg steps it back.
//   - "Someone else used this nonce" is decided from the canonical block
//     that holds the nonce (a Holder), never from failing to find our own
//     hashes: reads lag. The holder's block must itself be deep.
//   - relayq never fails a job that has a signed call by itself. When it
//     gives up on one (the node rejected it for good, the signer cannot pay
//     for it, the user cancelled), a 0-value self-send replaces it at the
//     same nonce, and whichever of the two is mined decides the verdict.
//   - Every bound nonce is consumed: a job that will not use its nonce gets
//     a no-op there; a job mined at an older nonce gets a no-op at its newer
//     one before the re-signed call can execute.
//   - One job never holds up another: a job the signer cannot pay for has
//     its nonce filled after a few blocks; the signer pauses only when it
//     cannot pay for a no-op.
package lane

import (
	"math/big"
	"sort"

	"github.com/ethereum/go-ethereum/common"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// Config holds the tunables of the rules.
type Config struct {
	// StuckBlocks is how many blocks a transaction may wait unmined before
	// it is replaced with higher fees; also how long an unaffordable lane
	// head, or a queued job holding a nonce, is waited for.
	StuckBlocks uint64
	// RebroadcastBlocks is how many blocks a pending transaction goes
	// unchecked before the node is asked whether it still has it.
	RebroadcastBlocks uint64
	// ForeignDepth is the least depth of the block that holds a nonce used
	// by someone else before a job is re-signed (the job's own
	// confirmations count when larger).
	ForeignDepth uint64
	BumpPercent  int
	MaxFeePerGas *big.Int // the fee cap ceiling; nil: none
}

// NoopGas is the gas limit of a 0-value self-send.
const NoopGas = txmgr.NoopGas

// Job is what the core knows of one job holding a nonce of the lane.
type Job struct {
	ID     string
	Status jobs.Status
	// Nonce is the nonce the allocator binds the job to: the one that must
	// be consumed before the job leaves the lane.
	Nonce uint64
	// Signed is the nonce of the job's newest signed call (its record's
	// nonce); nil when no call was ever signed.
	Signed          *uint64
	Attempts        []Attempt // oldest first
	Confirmations   uint64
	CancelRequested bool
	// Abandon is the error code of a job relayq gave up on while it had a
	// signed call: a no-op replaces it, and if the no-op is mined the job
	// fails with this code.
	Abandon string
	// Value is the call's value in wei (for what the signer must hold).
	Value *big.Int
	// Mined is the receipt that moved the job to mined (status Mined only).
	Mined   *Receipt
	Warning string
}

// Attempt is one signed transaction of a job.
type Attempt struct {
	Hash      common.Hash
	Nonce     uint64
	Kind      string // jobs.Kind*
	Gas       uint64
	Fees      txmgr.Fees
	SentBlock uint64
}

// Noop reports whether the attempt is a 0-value self-send.
func (a Attempt) Noop() bool { return a.Kind == jobs.KindCancel || a.Kind == jobs.KindGapFill }

// Receipt is a mined transaction of ours.
type Receipt struct {
	TxHash    common.Hash
	Block     uint64
	BlockHash common.Hash
	Success   bool
}

// Holder is the signer's transaction that holds a nonce in the canonical
// chain, as read from the block itself.
type Holder = txmgr.Holder

// Observation is what the tracker read of the chain this tick. A map entry
// that is missing means "not read" (or the node could not show it), and the
// rules then wait rather than guess.
type Observation struct {
	Head    uint64
	Latest  uint64   // the signer's nonce in the latest block: nonces below it are used
	Balance *big.Int // nil: not read
	// BaseFee is the head's base fee (nil: not known): a pool refuses a
	// transaction whose fee cap is below it, so resending its bytes is futile.
	BaseFee *big.Int
	Fees    txmgr.Fees
	// Receipts of our hashes that the node has mined.
	Receipts map[common.Hash]Receipt
	// Canon are canonical block hashes by number, for the blocks asked.
	Canon map[uint64]common.Hash
	// Known says whether the node knows a pending hash (pool or chain).
	Known map[common.Hash]bool
	// Holders are, for disputed nonces, the transaction holding each.
	Holders map[uint64]Holder
}

// Memo is what the tracker remembers between ticks (in memory only: a
// restart forgets it, which only delays a rule by a few blocks).
type Memo struct {
	Checked      map[string]uint64 // job → head when its pending tx was last checked or sent
	Orphans      map[string]uint64 // job → head when first seen queued while holding a nonce
	Unaffordable map[string]uint64 // job → head when first seen as an unaffordable lane head
	// Gap is the head when the lowest nonce the chain waits for was first
	// seen bound to no job (0: none seen).
	Gap     uint64
	GapAt   uint64 // the nonce of that gap
	GapSeen bool
	// Holders remembers the transaction found holding a disputed nonce, so
	// later ticks only check that its block is still canonical instead of
	// searching again (a node without archive state cannot answer for old
	// blocks). The shell fills it; Decide forgets nonces no job holds.
	Holders map[uint64]Holder
}

// NewMemo returns an empty memo.
func NewMemo() *Memo {
	return &Memo{Checked: map[string]uint64{}, Orphans: map[string]uint64{}, Unaffordable: map[string]uint64{}, Holders: map[uint64]Holder{}}
}

// Action is one thing the tracker must do.
type Action interface{ action() }

// MarkMined moves a submitted job to mined: one of its attempts has a
// receipt. Nothing is final yet.
type MarkMined struct {
	ID      string
	Receipt Receipt
	Kind    string // the kind of the mined attempt
}

// StepBack takes a mined job back to submitted: its block left the
// canonical chain.
type StepBack struct {
	ID        string
	BlockHash common.Hash
}

// Finalize gives a job its verdict: its deciding block is deep and
// canonical (or, for a job that never signed a call, its nonce is used).
// Code is the error code of a failure.
type Finalize struct {
	ID   string
	To   jobs.Status
	Code string
	// Receipt is the receipt deciding it (nil: the nonce was used by a
	// transaction that is not ours, or the job never signed a call).
	Receipt *Receipt
}

// Release drops a job from the lane: its nonce is consumed and its status
// final.
type Release struct{ ID string }

// Replace signs a new attempt at Nonce and persists it before broadcast: a
// fee bump of the call, a cancellation or gap fill (a no-op), or a re-signed
// call at a new nonce the allocator already bound (Kind resign).
type Replace struct {
	ID    string
	Nonce uint64
	Kind  string
	Gas   uint64
	Fees  txmgr.Fees
}

// Noop reports whether the replacement is a 0-value self-send.
func (r Replace) Noop() bool { return r.Kind == jobs.KindCancel || r.Kind == jobs.KindGapFill }

// Resign gives a job whose nonce Old was used by someone else's
// transaction a new nonce (reconcile, rebind) and signs its call there.
type Resign struct {
	ID  string
	Old uint64
}

// Rebroadcast sends a job's persisted bytes again: the node dropped them.
type Rebroadcast struct{ ID string }

// Warn sets a job's warning ("" clears it).
type Warn struct{ ID, Warning string }

// GiveUp records that relayq gave up on a job with a signed call: a no-op
// replaces it (the Replace that follows in the same tick), and the chain
// decides between the two.
type GiveUp struct{ ID, Code, Message string }

// FinishSubmit signs and sends a queued job that holds a nonce: its worker
// died between the reservation and the write-ahead.
type FinishSubmit struct{ ID string }

// FillGap uses a nonce that no job holds while later ones wait on it
// (someone else's transaction there was dropped after relayq moved past
// it): a no-op at Nonce, bound to no job.
type FillGap struct {
	Nonce uint64
	Fees  txmgr.Fees
}

// Pause marks the signer paused with a reason, or clears it ("").
type Pause struct{ Reason string }

func (MarkMined) action()    {}
func (StepBack) action()     {}
func (Finalize) action()     {}
func (Release) action()      {}
func (Replace) action()      {}
func (Resign) action()       {}
func (Rebroadcast) action()  {}
func (Warn) action()         {}
func (GiveUp) action()       {}
func (FinishSubmit) action() {}
func (Pause) action()        {}
func (FillGap) action()      {}

// Error codes the core gives.
const (
	CodeInsufficientFunds = "insufficient_funds"
	CodeRejected          = jobs.ErrCodeRejected
	CodeReverted          = jobs.ErrCodeRevertedOnChain
	CodeNonceUsed         = "nonce_used_elsewhere"
)

// Warnings the core sets.
const (
	WarnFeeCeiling        = "stuck: a higher fee would pass RELAYQ_MAX_FEE_GWEI"
	WarnCancelCeiling     = "cancel not sent: a replacement fee would pass RELAYQ_MAX_FEE_GWEI"
	WarnInsufficientFunds = "insufficient_funds: the signer cannot pay for this job; its nonce will be filled with a no-op"
	WarnDoubleExecution   = "executed at two nonces: a reorg deeper than confirmations re-included an attempt"
)

// sorted returns the jobs by nonce.
func sorted(js []Job) []Job {
	out := append([]Job(nil), js...)
	sort.SliceStable(out, func(i, k int) bool { return out[i].Nonce < out[k].Nonce })
	return out
}

func (j *Job) last() *Attempt {
	if len(j.Attempts) == 0 {
		return nil
	}
	return &j.Attempts[len(j.Attempts)-1]
}

// lastAt is the newest attempt at nonce n.
func (j *Job) lastAt(n uint64) *Attempt {
	for i := len(j.Attempts) - 1; i >= 0; i-- {
		if j.Attempts[i].Nonce == n {
			return &j.Attempts[i]
		}
	}
	return nil
}

// noopAt reports whether the job has a no-op attempt at nonce n.
func (j *Job) noopAt(n uint64) bool {
	for _, a := range j.Attempts {
		if a.Nonce == n && a.Noop() {
			return true
		}
	}
	return false
}

func (j *Job) attempt(h common.Hash) *Attempt {
	for i := range j.Attempts {
		if j.Attempts[i].Hash == h {
			return &j.Attempts[i]
		}
	}
	return nil
}

// receipt is the receipt of any attempt of j, preferring one at the job's
// bound nonce.
func (j *Job) receipt(rs map[common.Hash]Receipt) (Receipt, *Attempt, bool) {
	var found *Attempt
	var r Receipt
	for i := range j.Attempts {
		a := &j.Attempts[i]
		if rr, ok := rs[a.Hash]; ok && (found == nil || a.Nonce == j.Nonce) {
			found, r = a, rr
		}
	}
	return r, found, found != nil
}

func (j *Job) confs() uint64 { return max(j.Confirmations, 1) }

// deep reports whether block b is at least confs deep below head.
func deep(head, b, confs uint64) bool { return head+1 >= b+confs }

// Plan is what the tracker must read before Decide can run.
type Plan struct {
	Receipts []common.Hash // hashes whose receipts to look up
	Canon    []uint64      // block numbers whose canonical hash to read
	Known    []common.Hash // pending hashes to ask the node about
}

// PlanReads returns the reads a tick needs, given the head and the
// signer's latest nonce.
func PlanReads(js []Job, memo *Memo, cfg Config, head, latest uint64) Plan {
	var p Plan
	canon := map[uint64]bool{}
	for _, j := range sorted(js) {
		switch j.Status {
		case jobs.Submitted:
			if j.Nonce < latest || anyBelow(j, latest) {
				for _, a := range j.Attempts {
					p.Receipts = append(p.Receipts, a.Hash)
				}
			}
		case jobs.Mined:
			if j.Mined == nil {
				continue
			}
			if j.Mined.Block <= head && (deep(head, j.Mined.Block, j.confs()) || j.Nonce >= latest && minedNonce(j) == j.Nonce) {
				canon[j.Mined.Block] = true
			}
			// A job mined at an older nonce whose newer one was used: find
			// out what used it (our no-op, or our re-signed call).
			if minedNonce(j) != j.Nonce && j.Nonce < latest {
				for _, a := range j.Attempts {
					if a.Nonce == j.Nonce {
						p.Receipts = append(p.Receipts, a.Hash)
					}
				}
			}
		}
		if j.Nonce >= latest {
			if a := j.lastAt(j.Nonce); a != nil && pendingTx(j) && head >= lastSeen(memo, j)+cfg.RebroadcastBlocks {
				p.Known = append(p.Known, a.Hash)
			}
		}
	}
	for b := range canon {
		p.Canon = append(p.Canon, b)
	}
	sort.Slice(p.Canon, func(i, k int) bool { return p.Canon[i] < p.Canon[k] })
	return p
}

// anyBelow reports whether an attempt of j is at a nonce below latest (an
// attempt before a re-sign).
func anyBelow(j Job, latest uint64) bool {
	for _, a := range j.Attempts {
		if a.Nonce < latest {
			return true
		}
	}
	return false
}

// pendingTx reports whether j has a transaction of its own waiting at its
// bound nonce that the tracker watches (re-broadcast, bump).
func pendingTx(j Job) bool {
	switch j.Status {
	case jobs.Submitted, jobs.Failed, jobs.Cancelled:
		return j.lastAt(j.Nonce) != nil
	case jobs.Mined:
		return minedNonce(j) != j.Nonce && j.noopAt(j.Nonce)
	}
	return false
}

func minedNonce(j Job) uint64 {
	if j.Mined != nil {
		if a := j.attempt(j.Mined.TxHash); a != nil {
			return a.Nonce
		}
	}
	return j.Nonce
}

func lastSeen(memo *Memo, j Job) uint64 {
	if h, ok := memo.Checked[j.ID]; ok {
		return h
	}
	if a := j.lastAt(j.Nonce); a != nil {
		return a.SentBlock
	}
	return 0
}

// Disputed returns the nonces, below latest, of submitted jobs none of
// whose attempts has a receipt: used, by us (a lagging read) or by someone
// else. The tracker reads the block holding each before Decide.
func Disputed(js []Job, latest uint64, receipts map[common.Hash]Receipt) []uint64 {
	var out []uint64
	for _, j := range sorted(js) {
		if j.Status != jobs.Submitted || j.Nonce >= latest {
			continue
		}
		if _, _, ok := j.receipt(receipts); !ok {
			out = append(out, j.Nonce)
		}
	}
	return out
}
