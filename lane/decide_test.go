package lane

import (
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// Table tests: one rule each, the core's decision from a hand-made lane and
// observation.

var (
	cfg  = Config{StuckBlocks: 3, RebroadcastBlocks: 2, ForeignDepth: 2, BumpPercent: 10, MaxFeePerGas: big.NewInt(1000)}
	fees = txmgr.Fees{TipCap: big.NewInt(2), FeeCap: big.NewInt(20)}
)

func h(n int64) common.Hash { return common.BigToHash(big.NewInt(n)) }

func fee(tip, cap int64) txmgr.Fees {
	return txmgr.Fees{TipCap: big.NewInt(tip), FeeCap: big.NewInt(cap)}
}

func u(n uint64) *uint64 { return &n }

// call is a submitted job "j" at nonce 5 with one call attempt (hash 1)
// signed at block 10.
func call() Job {
	return Job{ID: "j", Status: jobs.Submitted, Nonce: 5, Signed: u(5), Confirmations: 2, Value: big.NewInt(0),
		Attempts: []Attempt{{Hash: h(1), Nonce: 5, Kind: jobs.KindOriginal, Gas: 50_000, Fees: fee(2, 20), SentBlock: 10}}}
}

func with(j Job, f func(*Job)) Job { f(&j); return j }

// obs is head 11, latest nonce 5 (job j's nonce unused), a rich signer.
func obs(f ...func(*Observation)) Observation {
	o := Observation{Head: 11, Latest: 5, Balance: big.NewInt(1e18), Fees: fees,
		Receipts: map[common.Hash]Receipt{}, Canon: map[uint64]common.Hash{}, Known: map[common.Hash]bool{}, Holders: map[uint64]Holder{}}
	for _, g := range f {
		g(&o)
	}
	return o
}

func TestDecide(t *testing.T) {
	mined := func(success bool, tx common.Hash) func(*Job) {
		return func(j *Job) {
			j.Status, j.Mined = jobs.Mined, &Receipt{TxHash: tx, Block: 11, BlockHash: h(500), Success: success}
		}
	}
	deepCanon := func(o *Observation) { o.Head, o.Latest, o.Canon[11] = 12, 6, h(500) }
	noop := func(kind string, hash int64) func(*Job) {
		return func(j *Job) {
			j.Attempts = append(j.Attempts, Attempt{Hash: h(hash), Nonce: j.Nonce, Kind: kind, Gas: NoopGas, Fees: fee(3, 22), SentBlock: 11})
		}
	}
	tests := []struct {
		name string
		lane []Job
		obs  Observation
		want []Action
	}{
		{"a receipt marks mined; nothing is final yet",
			[]Job{call()}, obs(func(o *Observation) {
				o.Latest, o.Receipts[h(1)] = 6, Receipt{TxHash: h(1), Block: 11, BlockHash: h(500), Success: false}
			}),
			[]Action{MarkMined{ID: "j", Receipt: Receipt{TxHash: h(1), Block: 11, BlockHash: h(500)}, Kind: jobs.KindOriginal}, Pause{}}},
		{"a reverted call waits for confirmations before failing",
			[]Job{with(call(), mined(false, h(1)))}, obs(func(o *Observation) { o.Latest, o.Canon[11] = 6, h(500) }),
			[]Action{Pause{}}},
		{"a reverted call fails once deep",
			[]Job{with(call(), mined(false, h(1)))}, obs(deepCanon),
			[]Action{Finalize{ID: "j", To: jobs.Failed, Code: CodeReverted, Receipt: &Receipt{TxHash: h(1), Block: 11, BlockHash: h(500)}}, Release{ID: "j"}, Pause{}}},
		{"a successful call is confirmed once deep",
			[]Job{with(call(), mined(true, h(1)))}, obs(deepCanon),
			[]Action{Finalize{ID: "j", To: jobs.Confirmed, Receipt: &Receipt{TxHash: h(1), Block: 11, BlockHash: h(500), Success: true}}, Release{ID: "j"}, Pause{}}},
		{"a mined cancellation is cancelled once deep",
			[]Job{with(with(call(), noop(jobs.KindCancel, 2)), mined(true, h(2)))}, obs(deepCanon),
			[]Action{Finalize{ID: "j", To: jobs.Cancelled, Receipt: &Receipt{TxHash: h(2), Block: 11, BlockHash: h(500), Success: true}}, Release{ID: "j"}, Pause{}}},
		{"a mined no-op of a given-up job fails it with the give-up code",
			[]Job{with(with(with(call(), noop(jobs.KindGapFill, 2)), mined(true, h(2))), func(j *Job) { j.Abandon = CodeInsufficientFunds })}, obs(deepCanon),
			[]Action{Finalize{ID: "j", To: jobs.Failed, Code: CodeInsufficientFunds, Receipt: &Receipt{TxHash: h(2), Block: 11, BlockHash: h(500), Success: true}}, Release{ID: "j"}, Pause{}}},
		{"a block that left the canonical chain steps the job back",
			[]Job{with(call(), mined(true, h(1)))}, obs(func(o *Observation) { o.Head, o.Latest, o.Canon[11] = 12, 6, h(501) }),
			[]Action{StepBack{ID: "j", BlockHash: h(500)}, Pause{}}},
		{"a used nonce without our receipt waits while the node cannot show its block",
			[]Job{call()}, obs(func(o *Observation) { o.Head, o.Latest = 20, 6 }),
			[]Action{Pause{}}},
		{"a used nonce whose block holds our hash waits for the receipt",
			[]Job{call()}, obs(func(o *Observation) {
				o.Head, o.Latest, o.Holders[5] = 20, 6, Holder{TxHash: h(1), Block: 12, BlockHash: h(600)}
			}),
			[]Action{Pause{}}},
		{"someone else's transaction in a shallow block is not enough",
			[]Job{call()}, obs(func(o *Observation) {
				o.Head, o.Latest, o.Holders[5] = 12, 6, Holder{TxHash: h(99), Block: 12, BlockHash: h(600)}
			}),
			[]Action{Pause{}}},
		{"someone else's transaction in a block not read as canonical this tick waits",
			[]Job{call()}, obs(func(o *Observation) {
				o.Head, o.Latest, o.Holders[5] = 13, 6, Holder{TxHash: h(99), Block: 12, BlockHash: h(600)}
			}),
			[]Action{Pause{}}},
		{"someone else's transaction in a deep block re-signs the job",
			[]Job{call()}, obs(func(o *Observation) {
				o.Head, o.Latest, o.Holders[5], o.Canon[12] = 13, 6, Holder{TxHash: h(99), Block: 12, BlockHash: h(600)}, h(600)
			}),
			[]Action{Resign{ID: "j", Old: 5}, Pause{}}},
		{"someone else's transaction at a cancelled job's nonce cancels it",
			[]Job{with(call(), func(j *Job) { j.CancelRequested = true })}, obs(func(o *Observation) {
				o.Head, o.Latest, o.Holders[5], o.Canon[12] = 13, 6, Holder{TxHash: h(99), Block: 12, BlockHash: h(600)}, h(600)
			}),
			[]Action{Finalize{ID: "j", To: jobs.Cancelled}, Release{ID: "j"}, Pause{}}},
		{"mined at an older nonce after a re-sign: a no-op takes the newer nonce",
			[]Job{{ID: "j", Status: jobs.Mined, Nonce: 7, Signed: u(7), Confirmations: 2,
				Mined: &Receipt{TxHash: h(1), Block: 11, BlockHash: h(500), Success: true},
				Attempts: []Attempt{{Hash: h(1), Nonce: 5, Kind: jobs.KindOriginal, Gas: 50_000, Fees: fee(2, 20)},
					{Hash: h(2), Nonce: 7, Kind: jobs.KindResign, Gas: 50_000, Fees: fee(2, 20), SentBlock: 11}}}},
			obs(func(o *Observation) { o.Latest = 7 }),
			[]Action{Replace{ID: "j", Nonce: 7, Kind: jobs.KindGapFill, Gas: NoopGas, Fees: fee(3, 22)}, Pause{}}},
		{"an unaffordable lane head is first only flagged",
			[]Job{with(call(), func(j *Job) { j.Value = big.NewInt(5e18) })}, obs(),
			[]Action{Warn{ID: "j", Warning: WarnInsufficientFunds}, Pause{}}},
		{"a signer that cannot pay for a no-op pauses; its job is not given up",
			[]Job{with(call(), func(j *Job) { j.Value = big.NewInt(5e18) })}, obs(func(o *Observation) { o.Balance = big.NewInt(1000) }),
			[]Action{Pause{Reason: "insufficient funds: balance 1000 wei cannot pay for a no-op (420000 wei)"}}},
		{"a stuck call is bumped by at least 10 %",
			[]Job{call()}, obs(func(o *Observation) { o.Head, o.Known[h(1)] = 13, true }),
			[]Action{Replace{ID: "j", Nonce: 5, Kind: jobs.KindBump, Gas: 50_000, Fees: fee(3, 22)}, Pause{}}},
		{"a stuck call at the fee ceiling gets a warning, and is not failed",
			[]Job{with(call(), func(j *Job) { j.Attempts[0].Fees = fee(100, 1000) })}, obs(func(o *Observation) { o.Head, o.Known[h(1)] = 13, true }),
			[]Action{Warn{ID: "j", Warning: WarnFeeCeiling}, Pause{}}},
		{"a stuck call is left alone between looks",
			[]Job{call()}, obs(func(o *Observation) { o.Head = 13 }),
			[]Action{Pause{}}},
		{"a dropped transaction below the base fee is re-priced, not resent",
			[]Job{call()}, obs(func(o *Observation) { o.Head, o.Known[h(1)], o.BaseFee = 12, false, big.NewInt(50) }),
			[]Action{Replace{ID: "j", Nonce: 5, Kind: jobs.KindBump, Gas: 50_000, Fees: fee(3, 22)}, Pause{}}},
		{"a transaction the node dropped goes out again",
			[]Job{call()}, obs(func(o *Observation) { o.Head, o.Known[h(1)] = 12, false }),
			[]Action{Rebroadcast{ID: "j"}, Pause{}}},
		{"a cancel request replaces the call with a no-op priced above it",
			[]Job{with(call(), func(j *Job) { j.CancelRequested = true })}, obs(),
			[]Action{Replace{ID: "j", Nonce: 5, Kind: jobs.KindCancel, Gas: NoopGas, Fees: fee(3, 22)}, Pause{}}},
		{"a cancel at the ceiling warns and still looks after the call",
			[]Job{with(call(), func(j *Job) { j.CancelRequested, j.Attempts[0].Fees = true, fee(100, 1000) })},
			obs(func(o *Observation) { o.Head, o.Known[h(1)] = 12, false }),
			[]Action{Warn{ID: "j", Warning: WarnCancelCeiling}, Rebroadcast{ID: "j"}, Pause{}}},
		{"a job given up gets a no-op at its nonce",
			[]Job{with(call(), func(j *Job) { j.Abandon = CodeRejected })}, obs(),
			[]Action{Replace{ID: "j", Nonce: 5, Kind: jobs.KindGapFill, Gas: NoopGas, Fees: fee(3, 22)}, Pause{}}},
		{"a job failed before signing has its nonce filled",
			[]Job{{ID: "j", Status: jobs.Failed, Nonce: 5}}, obs(),
			[]Action{Replace{ID: "j", Nonce: 5, Kind: jobs.KindGapFill, Gas: NoopGas, Fees: fees}, Pause{}}},
		{"a final job whose nonce is used leaves the lane",
			[]Job{{ID: "j", Status: jobs.Failed, Nonce: 5}}, obs(func(o *Observation) { o.Latest = 6 }),
			[]Action{Release{ID: "j"}, Pause{}}},
		{"a rebind whose re-signed call was not persisted is finished",
			[]Job{with(call(), func(j *Job) { j.Nonce = 8 })}, obs(),
			[]Action{Replace{ID: "j", Nonce: 8, Kind: jobs.KindResign, Gas: 50_000, Fees: fees}, Pause{}}},
		{"a confirmed job leaves the lane",
			[]Job{{ID: "j", Status: jobs.Confirmed, Nonce: 5}}, obs(func(o *Observation) { o.Latest = 6 }),
			[]Action{Release{ID: "j"}, Pause{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.lane, tt.obs, NewMemo(), cfg)
			require.Equal(t, tt.want, got)
		})
	}
}

// Rules that need more than one tick: the memo carries them.
func TestDecideAcrossTicks(t *testing.T) {
	t.Run("an unaffordable lane head is given up after StuckBlocks", func(t *testing.T) {
		memo := NewMemo()
		j := with(call(), func(j *Job) { j.Value = big.NewInt(5e18) })
		Decide([]Job{j}, obs(), memo, cfg)
		j.Warning = WarnInsufficientFunds
		require.Equal(t, []Action{Pause{}}, Decide([]Job{j}, obs(func(o *Observation) { o.Head = 13 }), memo, cfg), "not yet")
		got := Decide([]Job{j}, obs(func(o *Observation) { o.Head = 14 }), memo, cfg)
		require.Len(t, got, 3)
		require.Equal(t, CodeInsufficientFunds, got[0].(GiveUp).Code)
		require.Equal(t, Replace{ID: "j", Nonce: 5, Kind: jobs.KindGapFill, Gas: NoopGas, Fees: fee(3, 22)}, got[1])
	})
	t.Run("the funds arriving in time keep the job", func(t *testing.T) {
		memo := NewMemo()
		j := with(call(), func(j *Job) { j.Value = big.NewInt(5e18) })
		Decide([]Job{j}, obs(), memo, cfg)
		rich := func(o *Observation) { o.Head, o.Balance = 12, big.NewInt(6e18) }
		Decide([]Job{j}, obs(rich), memo, cfg)
		require.NotContains(t, memo.Unaffordable, "j")
	})
	t.Run("a queued job holding a nonce is finished after StuckBlocks", func(t *testing.T) {
		memo := NewMemo()
		j := Job{ID: "q", Status: jobs.Queued, Nonce: 5}
		require.Equal(t, []Action{Pause{}}, Decide([]Job{j}, obs(), memo, cfg))
		require.Equal(t, []Action{Pause{}}, Decide([]Job{j}, obs(func(o *Observation) { o.Head = 13 }), memo, cfg))
		require.Equal(t, []Action{FinishSubmit{ID: "q"}, Pause{}}, Decide([]Job{j}, obs(func(o *Observation) { o.Head = 14 }), memo, cfg))
	})
	t.Run("a nonce no job holds is filled after StuckBlocks", func(t *testing.T) {
		memo := NewMemo()
		j := with(call(), func(j *Job) { j.Nonce, j.Signed, j.Attempts[0].Nonce = 6, u(6), 6 })
		Decide([]Job{j}, obs(), memo, cfg)
		got := Decide([]Job{j}, obs(func(o *Observation) { o.Head = 14 }), memo, cfg)
		require.Contains(t, got, Action(FillGap{Nonce: 5, Fees: fees}))
	})
	t.Run("the memo forgets jobs that left the lane", func(t *testing.T) {
		memo := NewMemo()
		Decide([]Job{{ID: "q", Status: jobs.Queued, Nonce: 5}}, obs(), memo, cfg)
		require.Contains(t, memo.Orphans, "q")
		Decide(nil, obs(), memo, cfg)
		require.Empty(t, memo.Orphans)
	})
}

func TestPlanReads(t *testing.T) {
	resigned := Job{ID: "r", Status: jobs.Submitted, Nonce: 9, Signed: u(9), Attempts: []Attempt{
		{Hash: h(1), Nonce: 5, Kind: jobs.KindOriginal}, {Hash: h(2), Nonce: 9, Kind: jobs.KindResign, SentBlock: 1}}}
	p := PlanReads([]Job{resigned}, NewMemo(), cfg, 11, 7)
	require.Equal(t, []common.Hash{h(1), h(2)}, p.Receipts, "an attempt at a used older nonce may be the one mined")
	require.Equal(t, []common.Hash{h(2)}, p.Known, "its pending re-signed call is checked")
	mined := with(call(), func(j *Job) { j.Status, j.Mined = jobs.Mined, &Receipt{TxHash: h(1), Block: 10} })
	require.Equal(t, []uint64{10}, PlanReads([]Job{mined}, NewMemo(), cfg, 11, 6).Canon, "deep: its block is checked")
	require.Empty(t, PlanReads([]Job{mined}, NewMemo(), cfg, 10, 6).Canon, "not deep, nonce used: nothing to check")
}
