package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
	"github.com/relayq/relayq/worker"
)

// waitFor polls cond (bounded) while calling step between polls, e.g. to
// mine blocks on a chain that does not mine by itself.
func (s *stack) waitFor(what string, step func(), cond func(j jobs.Job) bool, id string) jobs.Job {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		j, err := s.store.Get(context.Background(), id)
		require.NoError(s.t, err)
		if cond(*j) {
			return *j
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(j)
			s.t.Fatalf("timed out waiting for %s: %s", what, b)
		}
		if step != nil {
			step()
		}
		time.Sleep(60 * time.Millisecond)
	}
}

// waitSent waits until the node knows a transaction: the write-ahead comes
// before the broadcast, so a persisted attempt may not have reached the
// pool yet (a block mined in between would hold what it replaces).
func (s *stack) waitSent(hash string) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		known, err := s.node.TransactionsKnown(context.Background(), []common.Hash{common.HexToHash(hash)})
		require.NoError(s.t, err)
		if known[0] {
			return
		}
		require.True(s.t, time.Now().Before(deadline), "transaction %s never reached the node", hash)
		time.Sleep(20 * time.Millisecond)
	}
}

func status(st jobs.Status) func(jobs.Job) bool {
	return func(j jobs.Job) bool { return j.Status == st }
}

func kinds(j jobs.Job) []string {
	var out []string
	for _, a := range j.Attempts {
		out = append(out, a.Kind)
	}
	return out
}

// A transaction that stops being includable (the base fee jumps past its fee
// cap) is replaced at the same nonce with fees bumped by at least 10 %, and
// the replacement is what gets mined.
func TestStuckTransactionIsReplacedWithHigherFees(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	s.waitFor("submitted", nil, status(jobs.Submitted), j.ID)

	// Every block from now on has a base fee 20x the original fee cap: the
	// first transaction can never be included.
	got, _ := s.store.Get(context.Background(), j.ID)
	high := new(big.Int).Mul(parseWei(t, got.Attempts[0].GasFeeCap), big.NewInt(20))
	spike := func() {
		s.anvil.RPC(t, "anvil_setNextBlockBaseFeePerGas", hexutil.EncodeBig(high))
		s.anvil.RPC(t, "evm_mine")
	}
	done := s.waitFor("mined after a bump", spike, func(j jobs.Job) bool { return j.Status == jobs.Confirmed || j.Status == jobs.Mined }, j.ID)

	require.GreaterOrEqual(t, len(done.Attempts), 2, "kinds %v", kinds(done))
	first, last := done.Attempts[0], done.Attempts[len(done.Attempts)-1]
	require.Equal(t, jobs.KindOriginal, first.Kind)
	require.Equal(t, jobs.KindBump, last.Kind)
	require.Equal(t, first.Nonce, last.Nonce, "a replacement keeps the nonce")
	minFee := new(big.Int).Div(new(big.Int).Mul(parseWei(t, first.GasFeeCap), big.NewInt(110)), big.NewInt(100))
	require.GreaterOrEqual(t, parseWei(t, last.GasFeeCap).Cmp(minFee), 0, "fee cap up at least 10%%")
	require.Equal(t, last.Hash, done.TxHash, "the job reports the hash that was mined")
	require.Equal(t, uint64(1), s.count(), "one execution however many replacements")
}

// At the fee ceiling a stuck job is flagged, not failed.
func TestStuckAtTheFeeCeilingIsFlaggedNotFailed(t *testing.T) {
	t.Parallel()
	var ceiling *big.Int
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, worker: func(c *worker.Config) {
		ceiling = big.NewInt(3e9) // 3 gwei: enough for anvil's first blocks, not for a bump past the spike
		c.MaxFeePerGas = ceiling
	}})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	s.waitFor("submitted", nil, status(jobs.Submitted), j.ID)
	spike := func() {
		s.anvil.RPC(t, "anvil_setNextBlockBaseFeePerGas", hexutil.EncodeBig(big.NewInt(50e9)))
		s.anvil.RPC(t, "evm_mine")
	}
	got := s.waitFor("warning", spike, func(j jobs.Job) bool { return j.Warning != "" }, j.ID)
	require.Equal(t, jobs.Submitted, got.Status)
	require.Contains(t, got.Warning, "RELAYQ_MAX_FEE_GWEI")
	for _, a := range got.Attempts {
		require.LessOrEqual(t, parseWei(t, a.GasFeeCap).Cmp(ceiling), 0, "no attempt passes the ceiling")
	}
}

// A transaction the node forgot is re-broadcast from the persisted bytes.
func TestDroppedTransactionIsRebroadcast(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	sub := s.waitFor("submitted", nil, status(jobs.Submitted), j.ID)
	s.anvil.RPC(t, "anvil_dropTransaction", sub.TxHash)
	known, err := s.node.TransactionsKnown(context.Background(), []common.Hash{common.HexToHash(sub.TxHash)})
	require.NoError(t, err)
	require.False(t, known[0], "anvil dropped it")

	// Empty blocks pass; the tracker notices and sends the same bytes again.
	done := s.waitFor("confirmed", func() { s.anvil.RPC(t, "evm_mine") }, status(jobs.Confirmed), j.ID)
	require.Len(t, done.Attempts, 1, "re-broadcast, not re-signed")
	require.Equal(t, sub.TxHash, done.TxHash)
	require.Equal(t, uint64(1), s.count())
}

// rejectFirst makes the node refuse the first broadcast for good (as if the
// signed tx were invalid), after the job's nonce was bound.
type rejectFirst struct {
	txmgr.Backend
	once sync.Once
}

func (r *rejectFirst) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	rejected := false
	r.once.Do(func() { rejected = true })
	if rejected {
		return errors.New("intrinsic gas too low: have 21000, want 21464")
	}
	return r.Backend.SendTransaction(ctx, tx)
}

// A job rejected for good after binding its nonce leaves a hole; the tracker
// fills it with a 0-value self-send so the next job is not blocked.
func TestNonceGapOfARejectedJobIsFilled(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{wrap: func(b txmgr.Backend) txmgr.Backend { return &rejectFirst{Backend: b} }})
	a := s.wait(s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID, jobs.Failed)
	require.Equal(t, jobs.ErrCodeRejected, a.Error.Code)
	require.Equal(t, uint64(0), *a.Nonce)
	b := s.wait(s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID, jobs.Confirmed)
	require.Equal(t, uint64(1), *b.Nonce)
	a2, err := s.store.Get(context.Background(), a.ID)
	require.NoError(t, err)
	require.Contains(t, kinds(*a2), jobs.KindGapFill)
	require.Equal(t, uint64(1), s.count(), "only the second job executed")
	latest, err := s.node.NonceAt(context.Background(), s.signer, nil)
	require.NoError(t, err)
	require.Equal(t, uint64(2), latest, "nonce 0 was used by the gap fill")
}

// Someone else used the key: the job's nonce is taken by a transaction that
// is not relayq's. The job never executed, so it is signed again at a new
// nonce, and runs exactly once.
func TestForeignUseOfTheNonceGetsTheJobANewOne(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, noWorkerRun: true})
	ctx := context.Background()
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	require.NoError(t, s.worker.Send(ctx, j.ID))
	sub, err := s.store.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(0), *sub.Nonce)

	// The operator sends from the same key at nonce 0 with a higher fee: it
	// replaces relayq's transaction in the pool and is mined.
	s.sendForeign(0)

	s.runWorker()
	done := s.waitFor("confirmed", s.mine, status(jobs.Confirmed), j.ID)
	require.Equal(t, uint64(1), *done.Nonce, "a fresh nonce")
	require.Equal(t, jobs.KindResign, done.Attempts[len(done.Attempts)-1].Kind)
	require.Equal(t, uint64(1), s.count(), "executed exactly once")
}

func TestCancel(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, noWorkerRun: true})
	ctx := context.Background()
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)

	// Queued: cancelled at once.
	q := s.submit(body)
	r := s.do(http.MethodPost, "/v1/jobs/"+q.ID+"/cancel", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, jobs.Cancelled, r.job(t).Status)
	require.NoError(t, s.worker.Send(ctx, q.ID), "a cancelled job's task does nothing")

	// Submitted: replaced by a no-op at the same nonce.
	j := s.submit(body)
	require.NoError(t, s.worker.Send(ctx, j.ID))
	r = s.do(http.MethodPost, "/v1/jobs/"+j.ID+"/cancel", "")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.True(t, r.job(t).CancelRequested)
	s.runWorker()
	s.waitSent(s.waitFor("cancel sent", nil, func(j jobs.Job) bool { return len(j.Attempts) == 2 }, j.ID).Attempts[1].Hash)
	done := s.waitFor("cancelled", s.mine, status(jobs.Cancelled), j.ID)
	require.Equal(t, []string{jobs.KindOriginal, jobs.KindCancel}, kinds(done))
	require.Equal(t, done.Attempts[1].Hash, done.TxHash)
	require.Zero(t, s.count(), "the call never ran")

	// Terminal: 409; unknown: 404.
	r = s.do(http.MethodPost, "/v1/jobs/"+j.ID+"/cancel", "")
	require.Equal(t, http.StatusConflict, r.Status)
	require.Equal(t, "not_cancellable", r.err(t).Error.Code)
	r = s.do(http.MethodPost, "/v1/jobs/"+jobs.NewID()+"/cancel", "")
	require.Equal(t, http.StatusNotFound, r.Status)
}

type signersBody struct {
	Signers []struct {
		Address  string  `json:"address"`
		Latest   uint64  `json:"latest_nonce"`
		Pending  uint64  `json:"pending_nonce"`
		Next     *uint64 `json:"next_nonce"`
		InFlight int64   `json:"in_flight"`
		Balance  string  `json:"balance"`
		Paused   bool    `json:"paused"`
	} `json:"signers"`
}

// sendForeign sends a transaction of the signer's own key at nonce, as
// its operator would by hand (a 1-wei self-send at a fee high enough to
// replace relayq's in the pool), and mines a block.
func (s *stack) sendForeign(nonce uint64) {
	s.t.Helper()
	ctx := context.Background()
	chainID, err := s.node.ChainID(ctx)
	require.NoError(s.t, err)
	foreign, err := types.SignNewTx(s.anvil.Keys()[0], types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
		ChainID: chainID, Nonce: nonce, Gas: 21000, To: &s.signer, Value: big.NewInt(1),
		GasTipCap: big.NewInt(50e9), GasFeeCap: big.NewInt(500e9),
	})
	require.NoError(s.t, err)
	require.NoError(s.t, s.node.SendTransaction(ctx, foreign))
	s.mine()
}

func (s *stack) signers() signersBody {
	s.t.Helper()
	r := s.do(http.MethodGet, "/v1/signers", "")
	require.Equal(s.t, http.StatusOK, r.Status, string(r.Body))
	var b signersBody
	require.NoError(s.t, json.Unmarshal(r.Body, &b))
	return b
}

// A signer that cannot pay even for a no-op pauses: its job waits queued
// (no nonce is taken, nothing failed), the signer shows as paused, and it
// resumes by itself once funded.
func TestInsufficientFundsPausesTheSigner(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}})
	s.anvil.RPC(t, "anvil_setBalance", s.signer, "0x0")
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	deadline := time.Now().Add(30 * time.Second)
	for !s.signers().Signers[0].Paused {
		require.True(t, time.Now().Before(deadline), "signer never paused")
		time.Sleep(100 * time.Millisecond)
	}
	got, err := s.store.Get(context.Background(), j.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, got.Status, "the job waits before a nonce is taken; it is not failed")
	require.Nil(t, got.Nonce)

	s.anvil.RPC(t, "anvil_setBalance", s.signer, hexutil.EncodeBig(big.NewInt(1e18)))
	s.wait(j.ID, jobs.Confirmed)
	sg := s.signers().Signers[0]
	require.False(t, sg.Paused)
	require.Equal(t, s.signer.Hex(), sg.Address)
	require.Equal(t, uint64(1), sg.Latest)
	require.Equal(t, sg.Latest, sg.Pending)
	require.Equal(t, uint64(1), *sg.Next)
	require.Zero(t, sg.InFlight)
}

// A mined job whose block is reorganised away goes back to submitted
// (recorded), is mined again on the new chain, and is confirmed only there.
func TestReorgSendsAMinedJobBack(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}})
	var snap string
	require.NoError(t, json.Unmarshal(s.anvil.RPC(t, "evm_snapshot"), &snap))
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","confirmations":3}`, s.counter))
	s.waitFor("submitted", nil, status(jobs.Submitted), j.ID)
	mined := s.waitFor("mined", s.mine, status(jobs.Mined), j.ID)

	// Roll the chain back past the job's block and build a longer one.
	var ok bool
	require.NoError(t, json.Unmarshal(s.anvil.RPC(t, "evm_revert", snap), &ok))
	require.True(t, ok)
	done := s.waitFor("confirmed", s.mine, status(jobs.Confirmed), j.ID)

	var steps []string
	for _, c := range done.History {
		steps = append(steps, string(c.From)+">"+string(c.To))
	}
	require.Contains(t, steps, "mined>submitted", "the reorg is in the history")
	require.NotEqual(t, mined.BlockHash, done.BlockHash, "confirmed on the new chain")
	require.Equal(t, uint64(1), s.count())
}

func parseWei(t *testing.T, s string) *big.Int {
	t.Helper()
	n, ok := new(big.Int).SetString(s, 10)
	require.True(t, ok, s)
	return n
}

// Reconcile on demand raises the allocator to the chain after the key was
// used outside relayq.
func TestReconcileOnDemand(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{}, noWorkerRun: true})
	ctx := context.Background()
	// Two transactions from the signer's key that relayq did not send.
	key := s.anvil.Keys()[0]
	chainID, err := s.node.ChainID(ctx)
	require.NoError(t, err)
	for n := range uint64(2) {
		tx, err := types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
			ChainID: chainID, Nonce: n, Gas: 21000, To: &s.signer, Value: big.NewInt(1),
			GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(100e9),
		})
		require.NoError(t, err)
		require.NoError(t, s.node.SendTransaction(ctx, tx))
	}
	require.Equal(t, uint64(0), *s.signers().Signers[0].Next, "relayq has not noticed yet")

	r := s.do(http.MethodPost, "/v1/signers/"+s.signer.Hex()+"/reconcile", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var v struct {
		Next uint64 `json:"next_nonce"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &v))
	require.Equal(t, uint64(2), v.Next)

	r = s.do(http.MethodPost, "/v1/signers/0x0000000000000000000000000000000000000001/reconcile", "")
	require.Equal(t, http.StatusNotFound, r.Status)
	r = s.do(http.MethodPost, "/v1/signers/nope/reconcile", "")
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Equal(t, "address", r.err(t).Error.Field)

	// The next job gets nonce 2.
	s.runWorker()
	j := s.wait(s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID, jobs.Confirmed)
	require.Equal(t, uint64(2), *j.Nonce)
}

// rejectOneInABatch holds the first batch of broadcasts back a moment (so
// the jobs behind it gather into one batch), then refuses for good one
// transaction in the middle of the next batch of several, passing the rest
// of that batch to the node as one JSON-RPC batch.
type rejectOneInABatch struct {
	txmgr.Backend
	mu       sync.Mutex
	calls    int
	rejected common.Hash
	batchLen int
}

func (r *rejectOneInABatch) SendTransactions(ctx context.Context, txs []*types.Transaction) []error {
	r.mu.Lock()
	r.calls++
	first := r.calls == 1
	reject := -1
	if !first && len(txs) >= 3 && r.rejected == (common.Hash{}) {
		reject = len(txs) / 2
		r.rejected, r.batchLen = txs[reject].Hash(), len(txs)
	}
	r.mu.Unlock()
	if first {
		time.Sleep(300 * time.Millisecond)
	}
	if reject < 0 {
		return r.Backend.(txmgr.BatchSender).SendTransactions(ctx, txs)
	}
	rest := append(append([]*types.Transaction{}, txs[:reject]...), txs[reject+1:]...)
	errs := r.Backend.(txmgr.BatchSender).SendTransactions(ctx, rest)
	return append(append(append([]error{}, errs[:reject]...), errors.New("intrinsic gas too low: have 21000, want 21464")), errs[reject:]...)
}

// One transaction of a batch refused for good: its job is given up, and the
// chain decides. Either a no-op takes its nonce and it fails, or (when the
// tracker re-sent its persisted bytes before the give-up was written, and
// the node took them) its call is mined and it is confirmed, once. The rest
// of the batch is broadcast and confirmed, and the nonces stay contiguous.
func TestOneRejectionInABatchOfBroadcasts(t *testing.T) {
	t.Parallel()
	rej := &rejectOneInABatch{}
	s := newStack(t, stackOptions{wrap: func(b txmgr.Backend) txmgr.Backend { rej.Backend = b; return rej }, worker: func(c *worker.Config) { c.Concurrency = 32 }})
	const n = 12
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID
	}
	var failed int
	for _, id := range ids {
		j := s.waitFor("final", s.mine, func(j jobs.Job) bool { return j.Status.Terminal() }, id)
		if j.Status == jobs.Failed {
			failed++
			require.Equal(t, jobs.ErrCodeRejected, j.Error.Code)
			require.Equal(t, rej.rejected.Hex(), j.Attempts[0].Hash, "the refused transaction's job failed")
			s.waitFor("gap fill", s.mine, func(j jobs.Job) bool {
				return slices.Contains(kinds(j), jobs.KindGapFill)
			}, id)
		} else {
			require.Equal(t, jobs.Confirmed, j.Status)
		}
	}
	rej.mu.Lock()
	require.NotEqual(t, common.Hash{}, rej.rejected, "a batch of at least 3 broadcasts was sent (%d calls)", rej.calls)
	rej.mu.Unlock()
	require.LessOrEqual(t, failed, 1)
	require.Equal(t, uint64(n-failed), s.count(), "every confirmed job executed once, the failed one never")
	latest, err := s.node.NonceAt(context.Background(), s.signer, nil)
	require.NoError(t, err)
	require.Equal(t, uint64(n), latest, "n nonces used: one per job (the failed one's by its no-op)")
}

// blockReceipts passes eth_getBlockReceipts through, counting the calls, or
// answers every one as a node without the method would.
type blockReceipts struct {
	txmgr.Backend
	mu          sync.Mutex
	calls       int
	unsupported bool
}

func (b *blockReceipts) BlockReceipts(ctx context.Context, n uint64) ([]*types.Receipt, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	if b.unsupported {
		return nil, errors.New("the method eth_getBlockReceipts does not exist/is not available (method not found)")
	}
	return b.Backend.(txmgr.BlockReceiptser).BlockReceipts(ctx, n)
}

func (b *blockReceipts) SendTransactions(ctx context.Context, txs []*types.Transaction) []error {
	return b.Backend.(txmgr.BatchSender).SendTransactions(ctx, txs)
}

// Many of a signer's transactions mined at once are found by reading whole
// blocks' receipts; a node without eth_getBlockReceipts is asked receipt by
// receipt instead. Either way every job is confirmed once.
func TestReceiptsByBlockAndTheFallback(t *testing.T) {
	t.Parallel()
	for _, unsupported := range []bool{false, true} {
		br := &blockReceipts{unsupported: unsupported}
		s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, wrap: func(b txmgr.Backend) txmgr.Backend { br.Backend = b; return br },
			worker: func(c *worker.Config) { c.Concurrency = 64 }})
		const n = 40
		ids := make([]string, n)
		for i := range ids {
			ids[i] = s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID
		}
		for _, id := range ids {
			s.waitFor("submitted", nil, func(j jobs.Job) bool { return j.Status != jobs.Queued }, id)
		}
		s.mine() // all 40 in one block: one tick finds them all
		for _, id := range ids {
			s.waitFor("confirmed", s.mine, status(jobs.Confirmed), id)
		}
		require.Equal(t, uint64(n), s.count())
		br.mu.Lock()
		require.Positive(t, br.calls, "unsupported=%v: whole blocks were asked for", unsupported)
		if unsupported {
			require.Equal(t, 1, br.calls, "after the node said it cannot, it is not asked again")
		}
		br.mu.Unlock()
	}
}
