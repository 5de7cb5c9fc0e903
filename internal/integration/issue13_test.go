package integration

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/worker"
)

func ether(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e18)) }

// Issue 13, case 1. Two jobs whose value the signer cannot afford, one with
// gas_limit and one without (whose estimate the node refuses for lack of
// funds), do not freeze the signer: 20 ordinary jobs posted after them all
// confirm, the two wait queued with an insufficient_funds warning and no
// nonce, and the signer is not paused. Once funded, each of the two goes
// through exactly once.
func TestUnaffordableJobsWaitWithoutFreezingTheSigner(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}})
	ctx := context.Background()
	s.anvil.RPC(t, "anvil_setBalance", s.signer, hexutil.EncodeBig(ether(3)))
	payee := common.HexToAddress("0x00000000000000000000000000000000000a11ce")
	dear := []string{
		s.submit(fmt.Sprintf(`{"to":%q,"data":"0x","value":"%s","gas_limit":21000}`, payee, ether(12))).ID,
		s.submit(fmt.Sprintf(`{"to":%q,"data":"0x","value":"%s"}`, payee, ether(12))).ID,
	}
	for _, id := range dear {
		s.waitFor("warned", nil, func(j jobs.Job) bool { return j.Warning != "" }, id)
	}
	var ids []string
	for range 20 {
		ids = append(ids, s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID)
	}
	for _, id := range ids {
		s.wait(id, jobs.Confirmed)
	}
	require.Equal(t, uint64(20), s.count())
	for _, id := range dear {
		j, err := s.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, jobs.Queued, j.Status)
		require.Nil(t, j.Nonce, "no nonce taken")
		require.True(t, strings.HasPrefix(j.Warning, jobs.WarnInsufficientFunds+": "), j.Warning)
	}
	require.False(t, s.signers().Signers[0].Paused, "the signer can pay for other jobs")

	s.anvil.RPC(t, "anvil_setBalance", s.signer, hexutil.EncodeBig(ether(100)))
	for _, id := range dear {
		j := s.wait(id, jobs.Confirmed)
		require.Empty(t, j.Warning, "cleared once it went through")
	}
	got, err := s.node.BalanceAt(ctx, payee, nil)
	require.NoError(t, err)
	require.Equal(t, ether(24), got, "each dear job paid once")
	require.False(t, s.signers().Signers[0].Paused)
}

// Issue 13, case 6. With the node unreachable from the worker far longer
// than a retry budget of 2 would last, queued jobs keep their budget (their
// tasks fail, Asynq's retry count stays 0) and stay queued; a job with a
// short deadline fails expired meanwhile, through the sweeper. Once the
// node is back, each queued job confirms exactly once and the expired one
// never runs.
func TestNodeOutageKeepsJobsQueuedAndExpiresDeadlines(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}, proxy: true, worker: func(c *worker.Config) {
		c.MaxRetries = 2
		c.SweepAfter = 2 * time.Second
	}})
	ctx := context.Background()
	s.proxy.Down()
	var ids []string
	for range 5 {
		ids = append(ids, s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID)
	}
	late := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()","deadline":3}`, s.counter)).ID
	expired := s.waitFor("expired", nil, status(jobs.Failed), late)
	require.Equal(t, jobs.ErrCodeExpired, expired.Error.Code)

	// Three counted failures (0.5 s, 1 s and 2 s apart) would have used up
	// the budget within a few seconds; give the tasks well over that.
	time.Sleep(time.Until(s.created(ids[len(ids)-1]).Add(12 * time.Second)))
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	for _, id := range ids {
		info, err := insp.GetTaskInfo(tasks.QueueSend, id)
		require.NoError(t, err)
		require.NotEmpty(t, info.LastErr, "the task ran against the down node")
		require.Zero(t, info.Retried, "node faults spend no retries: %s", info.LastErr)
		j, err := s.store.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, jobs.Queued, j.Status)
	}

	s.proxy.Up()
	for _, id := range ids {
		s.wait(id, jobs.Confirmed)
	}
	require.Equal(t, uint64(len(ids)), s.count(), "each queued job ran once, the expired one never")
	j, err := s.store.Get(ctx, late)
	require.NoError(t, err)
	require.Equal(t, jobs.Failed, j.Status)
	require.Nil(t, j.Nonce)
}

func (s *stack) created(id string) time.Time {
	at, ok := jobs.CreatedAt(id)
	require.True(s.t, ok, id)
	return at
}

// A queued job that already holds a nonce (its worker died after the
// reservation) must not wait on it, or every later nonce of its signer
// waits too: one the signer cannot afford fails insufficient_funds, one
// past its deadline fails expired, and the tracker fills both nonces with
// no-ops, so the next job goes through.
func TestAJobHoldingANonceItCannotUseFailsAndItsNonceIsFilled(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}, noWorkerRun: true})
	ctx := context.Background()
	a, ok := s.worker.Account(s.signer)
	require.True(t, ok)
	s.anvil.RPC(t, "anvil_setBalance", s.signer, hexutil.EncodeBig(ether(3)))

	dear := s.submit(fmt.Sprintf(`{"to":"0x00000000000000000000000000000000000a11ce","data":"0x","value":"%s","gas_limit":21000}`, ether(12))).ID
	past := time.Now().Add(-time.Minute)
	late := &jobs.Job{ID: jobs.NewID(), ChainID: s.worker.ChainID().Uint64(), To: s.counter.Hex(), Data: "0x", Value: "0", Confirmations: 1, Deadline: &past}
	_, _, err := s.store.Create(ctx, late, "")
	require.NoError(t, err)
	for i, id := range []string{dear, late.ID} { // as a run that died after reserving
		n, err := a.Nonces.Reserve(ctx, id, s.store.JobKey(id))
		require.NoError(t, err)
		require.Equal(t, uint64(i), n)
	}

	for _, tc := range []struct {
		id   string
		code string
	}{{dear, jobs.ErrCodeInsufficientFunds}, {late.ID, jobs.ErrCodeExpired}} {
		require.NoError(t, s.worker.Send(ctx, tc.id))
		j, err := s.store.Get(ctx, tc.id)
		require.NoError(t, err)
		require.Equal(t, jobs.Failed, j.Status)
		require.Equal(t, tc.code, j.Error.Code)
	}

	s.runWorker()
	next := s.submit(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)).ID
	done := s.wait(next, jobs.Confirmed)
	require.Equal(t, uint64(2), *done.Nonce, "after the two filled nonces")
	require.Equal(t, uint64(1), s.count(), "neither failed job ran")
	got, err := s.node.BalanceAt(ctx, common.HexToAddress("0x00000000000000000000000000000000000a11ce"), nil)
	require.NoError(t, err)
	require.Zero(t, got.Sign())
}
