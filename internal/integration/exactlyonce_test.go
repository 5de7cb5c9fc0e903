package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// The exactly-once cases of the tracker's decision core (package lane),
// each injected on anvil. The rules themselves are table- and model-tested
// in lane; these show the worker carries them out against a real node.

// Issue 13, case 2: reads that lag. A node behind a load balancer answers
// null to transaction and receipt lookups for several blocks while the
// chain mines the jobs and the signer's nonce moves on. Before, relayq took
// that absence for someone else's use of the nonces and signed the jobs
// again at new ones: measured, 60 counter jobs ended with the counter at
// 135. Now only the block holding a nonce decides, and it holds ours.
func TestLaggingReadsNeverSignAJobTwice(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}, proxy: true})
	s.proxy.Inject(testenv.Fault{Null: true, Methods: []string{
		"eth_getTransactionReceipt", "eth_getTransactionByHash", "eth_getBlockReceipts"}})
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID
	}
	// Wait until every job is mined on chain (the nonce moved past them all)
	// while the worker sees no receipt, then several blocks more.
	deadline := time.Now().Add(60 * time.Second)
	for {
		latest, err := s.node.NonceAt(context.Background(), s.signer, nil)
		require.NoError(t, err)
		if latest >= n {
			break
		}
		require.True(t, time.Now().Before(deadline), "jobs never mined: nonce %d", latest)
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(6 * time.Second) // six blocks of lookups answered null
	require.Equal(t, uint64(n), s.count())
	s.proxy.Clear()
	for _, j := range s.waitConfirmed(ids, 60*time.Second) {
		require.NotContains(t, kinds(j), jobs.KindResign, "job %s was signed again", j.ID)
	}
	require.Equal(t, uint64(n), s.count(), "each job executed once")
	latest, err := s.node.NonceAt(context.Background(), s.signer, nil)
	require.NoError(t, err)
	require.Equal(t, uint64(n), latest, "no nonce used twice")
}

// Issue 13, case 3: a reverted call is not final at its first receipt. It
// stays mined (receipt_status 0) until its block is deep; a reorg in
// between steps it back, and only the block that stays decides.
func TestARevertIsFinalOnlyWhenDeep(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}})
	var snap string
	require.NoError(t, json.Unmarshal(s.anvil.RPC(t, "evm_snapshot"), &snap))
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"fail(string)","args":["no"],"gas_limit":100000,"confirmations":3}`, s.counter))
	s.waitFor("submitted", nil, status(jobs.Submitted), j.ID)
	s.mine()
	mined := s.waitFor("mined", nil, status(jobs.Mined), j.ID)
	require.NotNil(t, mined.ReceiptStatus)
	require.Equal(t, types.ReceiptStatusFailed, *mined.ReceiptStatus)
	require.Nil(t, mined.Error, "no verdict yet")

	// A reorg: the job's block leaves the chain, and a longer one without
	// it is built.
	var ok bool
	require.NoError(t, json.Unmarshal(s.anvil.RPC(t, "evm_revert", snap), &ok))
	require.True(t, ok)
	s.waitFor("stepped back", s.mine, func(j jobs.Job) bool {
		for _, c := range j.History {
			if c.From == jobs.Mined && c.To == jobs.Submitted {
				return true
			}
		}
		return false
	}, j.ID)
	done := s.waitFor("failed", s.mine, status(jobs.Failed), j.ID)
	require.Equal(t, jobs.ErrCodeRevertedOnChain, done.Error.Code)
	require.Equal(t, "no", done.Error.RevertReason)
	require.NotEqual(t, mined.BlockHash, done.BlockHash, "decided by the block that stayed")
	var final int
	for _, c := range done.History {
		if c.To.Terminal() {
			final++
		}
	}
	require.Equal(t, 1, final, "one verdict")
}

// Issue 13, case 3: a cancellation is final only when deep, too.
func TestACancellationIsFinalOnlyWhenDeep(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, noWorkerRun: true})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","confirmations":3}`, s.counter))
	require.NoError(t, s.worker.Send(context.Background(), j.ID))
	r := s.do(http.MethodPost, "/v1/jobs/"+j.ID+"/cancel", "")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	s.runWorker()
	s.waitSent(s.waitFor("cancel sent", nil, func(j jobs.Job) bool { return len(j.Attempts) == 2 }, j.ID).Attempts[1].Hash)
	s.mine()
	mined := s.waitFor("mined", nil, status(jobs.Mined), j.ID)
	require.Equal(t, mined.Attempts[1].Hash, mined.TxHash, "the cancellation was mined")
	require.Nil(t, mined.Error)
	done := s.waitFor("cancelled", s.mine, status(jobs.Cancelled), j.ID)
	require.GreaterOrEqual(t, len(done.History), 4)
	require.Zero(t, s.count())
}

// acceptThenRefuse is two endpoints that disagree: the first send of each
// transaction reaches the node (endpoint A takes it), but the answer that
// comes back is endpoint B's permanent refusal.
type acceptThenRefuse struct {
	txmgr.Backend
	n atomic.Int32
}

func (r *acceptThenRefuse) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	if err := r.Backend.SendTransaction(ctx, tx); err != nil || r.n.Add(1) > 1 {
		return err
	}
	return errors.New("tx fee (1.20 ether) exceeds the configured cap (1.00 ether)")
}

// Issue 13, case 4: a permanent rejection does not fail a job another
// endpoint took. Before, the job failed at once while its transaction was
// in a pool, and executed anyway. Now relayq gives it up with a no-op at
// its nonce, and the chain decides: here the call is mined first, so the
// job is confirmed, once.
func TestARejectionDoesNotFailAJobAnotherNodeTook(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"},
		wrap: func(b txmgr.Backend) txmgr.Backend { return &acceptThenRefuse{Backend: b} }})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","confirmations":2}`, s.counter))
	given := s.waitFor("given up", nil, func(j jobs.Job) bool { return j.Abandon != nil }, j.ID)
	require.Equal(t, jobs.Submitted, given.Status, "not failed on a node's word")
	require.Equal(t, jobs.ErrCodeRejected, given.Abandon.Code)
	done := s.waitFor("final", s.mine, func(j jobs.Job) bool { return j.Status.Terminal() }, j.ID)
	switch done.Status {
	case jobs.Confirmed:
		require.Equal(t, uint64(1), s.count(), "the call the other node took ran, once")
		require.Equal(t, done.Attempts[0].Hash, done.TxHash)
	case jobs.Failed:
		require.Zero(t, s.count(), "failed only because the no-op took its nonce")
		require.Equal(t, jobs.ErrCodeRejected, done.Error.Code)
	default:
		t.Fatalf("unexpected final status %s", done.Status)
	}
}
