package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
)

func TestJobGoesFromPostToConfirmed(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"order":42}}`, s.counter))

	done := s.wait(j.ID, jobs.Confirmed)
	require.Equal(t, uint64(1), s.count())
	require.Equal(t, s.signer.Hex(), done.From)
	require.NotNil(t, done.Nonce)
	require.Equal(t, uint64(0), *done.Nonce)
	require.Len(t, done.Attempts, 1)
	require.Equal(t, done.Attempts[0].Hash, done.TxHash)
	require.NotNil(t, done.BlockNumber)
	require.NotEmpty(t, done.BlockHash)
	require.NotNil(t, done.GasUsed)
	require.NotEmpty(t, done.EffectiveGasPrice)
	require.Nil(t, done.Error)
	require.JSONEq(t, `{"order":42}`, string(done.Metadata))
	var path []jobs.Status
	for _, c := range done.History {
		path = append(path, c.To)
		require.False(t, c.At.IsZero())
	}
	require.Equal(t, []jobs.Status{jobs.Queued, jobs.Submitted, jobs.Mined, jobs.Confirmed}, path)

	// The chain agrees with the job.
	r, err := s.node.TransactionReceipts(context.Background(), []common.Hash{common.HexToHash(done.TxHash)})
	require.NoError(t, err)
	require.NotNil(t, r[0])
	require.Equal(t, types.ReceiptStatusSuccessful, r[0].Status)
	require.Equal(t, *done.BlockNumber, r[0].BlockNumber.Uint64())
}

func TestComplexArgumentsReachTheContract(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	key := "0x" + strings.Repeat("ab", 32)
	who := []string{"0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"}
	j := s.submit(jsonBody(t, map[string]any{
		"to":       s.counter.Hex(),
		"function": "store(bytes32,address[],(uint256,string))",
		"args":     []any{key, who, []any{"123456789012345678901234567890", "hello relayq"}},
	}))
	s.wait(j.ID, jobs.Confirmed)

	data, err := contract.ABI.Pack("membersOf", common.HexToHash(key))
	require.NoError(t, err)
	out, err := s.node.CallContract(context.Background(), callMsg(s.counter, data), nil)
	require.NoError(t, err)
	got, err := contract.ABI.Unpack("membersOf", out)
	require.NoError(t, err)
	require.Equal(t, []common.Address{common.HexToAddress(who[0]), common.HexToAddress(who[1])}, got[0])

	data, err = contract.ABI.Pack("entries", common.HexToHash(key))
	require.NoError(t, err)
	out, err = s.node.CallContract(context.Background(), callMsg(s.counter, data), nil)
	require.NoError(t, err)
	entry, err := contract.ABI.Unpack("entries", out)
	require.NoError(t, err)
	require.Equal(t, "123456789012345678901234567890", fmt.Sprint(entry[0]))
	require.Equal(t, "hello relayq", entry[1])
}

func TestRevertAtEstimateFailsWithoutTakingANonce(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	cases := []struct {
		body, reason string
	}{
		{fmt.Sprintf(`{"to":%q,"function":"fail(string)","args":["boom"]}`, s.counter), "boom"},
		{fmt.Sprintf(`{"to":%q,"function":"add(uint256)","args":[1001]}`, s.counter), "TooLarge(given: 1001, max: 1000)"},
		{fmt.Sprintf(`{"to":%q,"function":"divide(uint256,uint256)","args":[1,0]}`, s.counter), "division"},
	}
	for _, c := range cases {
		j := s.wait(s.submit(c.body).ID, jobs.Failed)
		require.NotNil(t, j.Error)
		require.Equal(t, jobs.ErrCodeRevertedAtEstimate, j.Error.Code)
		require.Contains(t, j.Error.RevertReason, c.reason)
		require.Nil(t, j.Nonce, "a call that reverts at estimate takes no nonce")
		require.Empty(t, j.Attempts)
	}
	// The next job gets nonce 0: the failures left no gap.
	ok := s.wait(s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID, jobs.Confirmed)
	require.Equal(t, uint64(0), *ok.Nonce)
}

func TestRevertOnChainFailsWithReason(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	// An explicit gas_limit skips the estimate, so the revert happens on chain.
	j := s.wait(s.submit(fmt.Sprintf(`{"to":%q,"function":"fail(string)","args":["on chain"],"gas_limit":100000}`, s.counter)).ID, jobs.Failed)
	require.NotNil(t, j.Error)
	require.Equal(t, jobs.ErrCodeRevertedOnChain, j.Error.Code)
	require.Equal(t, "on chain", j.Error.RevertReason)
	require.NotNil(t, j.BlockNumber, "a reverted tx is mined: its block is reported")
	require.Equal(t, uint64(0), *j.Nonce)
	require.Equal(t, uint64(100000), j.Gas)

	next := s.wait(s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID, jobs.Confirmed)
	require.Equal(t, uint64(1), *next.Nonce)
	require.Equal(t, uint64(1), s.count())
}

func TestValueTransferAndRawData(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	to := common.HexToAddress("0x00000000000000000000000000000000000000aa")
	j := s.wait(s.submit(fmt.Sprintf(`{"to":%q,"value":"12345"}`, to)).ID, jobs.Confirmed)
	require.Equal(t, "0x", j.Data)
	bal, err := s.node.BalanceAt(context.Background(), to, nil)
	require.NoError(t, err)
	require.Equal(t, "12345", bal.String())

	// increment() by its selector, as raw calldata.
	s.wait(s.submit(fmt.Sprintf(`{"to":%q,"data":"0xd09de08a"}`, s.counter)).ID, jobs.Confirmed)
	require.Equal(t, uint64(1), s.count())
}

// Many concurrent executions of one job's send task (a duplicated or
// recovered task) must sign and broadcast exactly one transaction.
func TestConcurrentSendsOfOneJobExecuteOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true})
	j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.worker.Send(context.Background(), j.ID)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := s.store.Get(context.Background(), j.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Submitted, got.Status)
	require.Len(t, got.Attempts, 1, "one signature per nonce")
	require.Equal(t, uint64(0), *got.Nonce)

	// Let blocks pass: exactly one execution lands.
	s.chain.Commit()
	s.chain.Commit()
	require.Equal(t, uint64(1), s.count())
	pending, err := s.node.PendingNonceAt(context.Background(), s.signer)
	require.NoError(t, err)
	require.Equal(t, uint64(1), pending, "no second transaction was sent")
}

// flakySend fails the first n broadcasts: after forwarding them (the answer
// was lost) or before (the node never saw them).
type flakySend struct {
	txmgr.Backend
	mu        sync.Mutex
	failures  int
	forward   bool
	sentBytes [][]byte
}

func (f *flakySend) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	f.mu.Lock()
	raw, _ := tx.MarshalBinary()
	f.sentBytes = append(f.sentBytes, raw)
	fail := f.failures > 0
	if fail {
		f.failures--
	}
	f.mu.Unlock()
	if !fail {
		return f.Backend.SendTransaction(ctx, tx)
	}
	if f.forward {
		if err := f.Backend.SendTransaction(ctx, tx); err != nil {
			return err
		}
	}
	return context.DeadlineExceeded
}

// A broadcast that fails (or whose answer is lost) is retried with the
// persisted bytes: the same hash, never a new signature.
func TestRetriedBroadcastResendsThePersistedBytes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		forward  bool
		failures int
	}{
		// The node never saw the first two broadcasts.
		{"node never saw it", false, 2},
		// The node took the tx but the answer was lost; the retry is
		// answered "already known", which counts as sent.
		{"answer lost", true, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var flaky *flakySend
			s := newStack(t, stackOptions{noWorkerRun: true, wrap: func(b txmgr.Backend) txmgr.Backend {
				flaky = &flakySend{Backend: b, failures: c.failures, forward: c.forward}
				return flaky
			}})
			j := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
			ctx := context.Background()
			for i := range c.failures {
				require.Error(t, s.worker.Send(ctx, j.ID), "broadcast %d fails", i+1)
				got, err := s.store.Get(ctx, j.ID)
				require.NoError(t, err)
				require.Equal(t, jobs.Submitted, got.Status, "the signed tx was persisted before the broadcast")
				require.NotEmpty(t, got.Raw)
			}
			require.NoError(t, s.worker.Send(ctx, j.ID), "the retry goes through")

			flaky.mu.Lock()
			require.Len(t, flaky.sentBytes, c.failures+1)
			for _, b := range flaky.sentBytes {
				require.Equal(t, flaky.sentBytes[0], b, "every retry sends the same signed bytes")
			}
			flaky.mu.Unlock()
			got, err := s.store.Get(ctx, j.ID)
			require.NoError(t, err)
			require.Len(t, got.Attempts, 1)
			s.chain.Commit()
			require.Equal(t, uint64(1), s.count())
		})
	}
}

// A job written but never enqueued (the API crashed in between) is found by
// the sweeper and executed.
func TestSweeperEnqueuesAJobWhoseTaskWasLost(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	j := &jobs.Job{ChainID: 1337, To: s.counter.Hex(), Data: "0xd09de08a", Value: "0", Confirmations: 1, BodyHash: "x"}
	_, created, err := s.store.Create(ctx, j, "")
	require.NoError(t, err)
	require.True(t, created)

	// Too young to sweep: its task may still be on the way.
	n, err := s.worker.Sweep(ctx, time.Now())
	require.NoError(t, err)
	require.Zero(t, n)
	// Later, it is swept exactly once.
	n, err = s.worker.Sweep(ctx, time.Now().Add(2*time.Minute))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	s.wait(j.ID, jobs.Confirmed)
	require.Equal(t, uint64(1), s.count())
}

// A sweep that finds the task still queued leaves it alone (Asynq refuses
// the duplicate task id).
func TestSweeperLeavesQueuedTasksAlone(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true})
	// A job accepted alone has a task of its own (its id is the job's);
	// jobs accepted together share a batch task. The sweeper leaves both
	// once they are on the queue (the API enqueues just after answering).
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)
	s.submit(body)
	r := s.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+body+`,`+body+`,`+body+`]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	require.Eventually(t, func() bool {
		ts, err := insp.ListPendingTasks(tasks.QueueSend)
		if err != nil {
			return false
		}
		n := 0
		for _, ti := range ts {
			p, err := tasks.ParseSendPayload(ti.Payload)
			require.NoError(t, err)
			n += len(p.IDs())
		}
		return n == 4
	}, 5*time.Second, 10*time.Millisecond)
	n, err := s.worker.Sweep(context.Background(), time.Now().Add(2*time.Minute))
	require.NoError(t, err)
	require.Zero(t, n)
	ts, err := insp.ListPendingTasks(tasks.QueueSend)
	require.NoError(t, err)
	require.Len(t, ts, 2, "one job's own task and one batch task, no more")
}

func TestManyJobsGetContiguousNonces(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	const n = 60
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := s.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
			if r.Status == http.StatusAccepted {
				ids[i] = r.job(t).ID
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, id := range ids {
		require.NotEmpty(t, id)
		j := s.wait(id, jobs.Confirmed)
		require.False(t, seen[*j.Nonce], "nonce %d used twice", *j.Nonce)
		seen[*j.Nonce] = true
	}
	for i := range uint64(n) {
		require.True(t, seen[i], "nonce %d missing", i)
	}
	require.Equal(t, uint64(n), s.count())
}
