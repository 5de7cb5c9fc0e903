package integration

import (
	"context"
	"fmt"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/txmgr"
	"github.com/relayq/relayq/worker"
)

// failoverStack is a stack whose worker reaches the chain through two
// endpoints of the same anvil (two proxies), primary first, with
// txmgr.DialMany as `relayq worker` does for a RELAYQ_RPC_URL list.
type failoverStack struct {
	*stack
	primary, second *testenv.RPCProxy
	multi           *txmgr.Multi
}

func newFailoverStack(t *testing.T, anvilArgs ...string) *failoverStack {
	t.Helper()
	s := &failoverStack{stack: newStack(t, stackOptions{anvilArgs: anvilArgs, noWorkerRun: true})}
	s.primary = testenv.NewRPCProxy(t, s.anvil.URL())
	s.second = testenv.NewRPCProxy(t, s.anvil.URL())
	ctx := s.runCtx
	var err error
	s.multi, err = txmgr.DialMany(ctx, []string{s.primary.URL(), s.second.URL()}, 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(s.multi.Close)
	chainID, err := s.multi.ChainID(ctx)
	require.NoError(t, err)
	w, err := worker.New(ctx, worker.Config{
		Redis: s.rdb, Prefix: "relayq:", Backend: s.multi, Signers: []signer.Signer{signer.NewKey(s.anvil.Keys()[0], chainID)},
		Concurrency: 8, PollInterval: 50 * time.Millisecond, SweepAfter: time.Minute,
		MaxFeePerGas: big.NewInt(500e9), ErrorABI: &contract.ABI, Log: testLogger(t),
	})
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// submitMany posts n increment() jobs from 8 concurrent clients.
func (s *failoverStack) submitMany(n int) []string {
	s.t.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := s.do(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
			if r.Status == http.StatusAccepted {
				ids[i] = r.job(s.t).ID
			}
		}()
	}
	wg.Wait()
	for i, id := range ids {
		require.NotEmpty(s.t, id, "job %d accepted", i)
	}
	return ids
}

// confirmed counts the jobs of ids that are confirmed.
func (s *failoverStack) confirmed(ids []string) int {
	n := 0
	for _, id := range ids {
		j, err := s.store.Get(context.Background(), id)
		require.NoError(s.t, err)
		if j.Status == jobs.Confirmed {
			n++
		}
	}
	return n
}

// The primary RPC endpoint is killed while 100 jobs are being relayed: the
// worker carries on through the secondary, every job is confirmed once, the
// signer's nonces are contiguous, and the calls after the outage went to
// the secondary.
func TestFailoverWhenPrimaryRPCIsKilled(t *testing.T) {
	t.Parallel()
	s := newFailoverStack(t, "--block-time", "1")
	const n = 100
	ids := s.submitMany(n / 2)

	// Kill the primary mid-run, once transactions have been broadcast
	// through it (they are then tracked through the secondary); the second
	// half of the jobs is submitted during the outage.
	deadline := time.Now().Add(60 * time.Second)
	for s.primary.Calls("eth_sendRawTransaction") == 0 {
		require.True(t, time.Now().Before(deadline), "nothing broadcast through the primary")
		time.Sleep(5 * time.Millisecond)
	}
	s.primary.Down()
	sendsBefore := s.second.Calls("eth_sendRawTransaction")
	receiptsBefore := s.second.Calls("eth_getBlockReceipts") + s.second.Calls("eth_getTransactionReceipt")
	headsBefore := s.second.Calls("eth_getBlockByNumber")
	midway := s.confirmed(ids)
	ids = append(ids, s.submitMany(n/2)...)

	all := make([]jobs.Job, len(ids))
	for i, id := range ids {
		all[i] = s.wait(id, jobs.Confirmed)
	}
	requireOncePerNonce(t, all, n)
	require.Equal(t, uint64(n), s.count(), "every job executed exactly once")
	latest, err := s.node.NonceAt(context.Background(), s.signer, nil)
	require.NoError(t, err)
	pending, err := s.node.PendingNonceAt(context.Background(), s.signer)
	require.NoError(t, err)
	require.Equal(t, uint64(n), latest)
	require.Equal(t, latest, pending, "nothing left in the pool")

	// After the outage the secondary did the work.
	require.Greater(t, s.second.Calls("eth_getBlockByNumber"), headsBefore, "heads read from the secondary")
	require.Greater(t, s.second.Calls("eth_getBlockReceipts")+s.second.Calls("eth_getTransactionReceipt"), receiptsBefore, "receipts read from the secondary")
	require.GreaterOrEqual(t, s.second.Calls("eth_sendRawTransaction")-sendsBefore, n/2, "the jobs submitted during the outage were broadcast through the secondary")
	h := s.multi.Health()
	require.NotEqual(t, "closed", h[0].State, "the primary's breaker is open: %+v", h[0])
	require.Positive(t, h[0].Faults)
	t.Logf("failover: %d of %d confirmed when the primary went down; health %+v", midway, n, h)
}

// A broadcast goes to both endpoints: each proxy sees every transaction.
func TestFailoverBroadcastReachesBothEndpoints(t *testing.T) {
	t.Parallel()
	s := newFailoverStack(t, "--block-time", "1")
	const n = 5
	ids := s.submitMany(n)
	for _, id := range ids {
		s.wait(id, jobs.Confirmed)
	}
	require.Equal(t, uint64(n), s.count())
	require.GreaterOrEqual(t, s.primary.Calls("eth_sendRawTransaction"), n)
	require.GreaterOrEqual(t, s.second.Calls("eth_sendRawTransaction"), n)
}

// `relayq worker` with RELAYQ_RPC_URL set to two endpoints keeps relaying
// when the primary is killed mid-run: every job is confirmed once, at
// contiguous nonces, the later ones broadcast through the secondary.
func TestFailoverRelayqWorkerWithRPCURLList(t *testing.T) {
	t.Parallel()
	c, counter := newCluster(t, clusterOptions{anvilArgs: []string{"--block-time", "1"}, proxy: true})
	second := testenv.NewRPCProxy(t, c.anvil.URL())
	// The API keeps the primary alone: submitting and reading jobs does
	// not touch the node.
	c.addWorker("RELAYQ_RPC_URL=" + c.proxy.URL() + "," + second.URL())
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter)
	const n = 40
	ids := c.post(n/2, body)
	deadline := time.Now().Add(60 * time.Second)
	for c.proxy.Calls("eth_sendRawTransaction") == 0 {
		require.True(t, time.Now().Before(deadline), "nothing broadcast through the primary")
		time.Sleep(5 * time.Millisecond)
	}
	c.proxy.Down()
	sendsBefore := second.Calls("eth_sendRawTransaction")
	ids = append(ids, c.post(n/2, body)...)

	requireOncePerNonce(t, c.waitAll(ids, 2*time.Minute), n)
	c.requireExecutedOnce(n, counter)
	require.GreaterOrEqual(t, second.Calls("eth_sendRawTransaction")-sendsBefore, n/2, "the jobs submitted during the outage were broadcast through the secondary")
}
