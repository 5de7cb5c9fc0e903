package integration

import (
	"context"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/worker"
)

// newPoolStack is a stack on anvil (one block a second) whose worker holds
// n of anvil's funded keys (not key 1, which deploys the contract), with
// the per-signer in-flight limit maxInFlight (0: the default).
func newPoolStack(t *testing.T, n, maxInFlight int) (*stack, []common.Address) {
	t.Helper()
	idx := []int{0, 2, 3, 4}[:n]
	var addrs []common.Address
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}, worker: func(c *worker.Config) {
		chainID := big.NewInt(31337)
		c.Signers = nil
		for _, i := range idx {
			k := signer.NewKey(testenv.AnvilKeys()[i], chainID)
			c.Signers = append(c.Signers, k)
			addrs = append(addrs, k.Address())
		}
		c.MaxInFlight = maxInFlight
		c.Concurrency = 16
	}})
	return s, addrs
}

// postJobs submits n increment() calls (from "" lets the pool choose).
func (s *stack) postJobs(n int, from string) []string {
	s.t.Helper()
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter)
	if from != "" {
		body = fmt.Sprintf(`{"to":%q,"function":"increment()","from":%q}`, s.counter, from)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.submit(body).ID
	}
	return ids
}

// waitConfirmed waits, bounded, until every job is final, and requires each
// confirmed.
func (s *stack) waitConfirmed(ids []string, within time.Duration) []jobs.Job {
	s.t.Helper()
	deadline := time.Now().Add(within)
	done := make(map[string]jobs.Job, len(ids))
	for len(done) < len(ids) {
		for _, id := range ids {
			if _, ok := done[id]; ok {
				continue
			}
			j, err := s.store.Get(context.Background(), id)
			require.NoError(s.t, err)
			if j.Status.Terminal() {
				require.Equal(s.t, jobs.Confirmed, j.Status, "job %s: %+v", id, j.Error)
				done[id] = *j
			}
		}
		if len(done) < len(ids) {
			require.True(s.t, time.Now().Before(deadline), "%d of %d jobs confirmed", len(done), len(ids))
			time.Sleep(200 * time.Millisecond)
		}
	}
	out := make([]jobs.Job, len(ids))
	for i, id := range ids {
		out[i] = done[id]
	}
	return out
}

// bySigner groups the nonces of jobs by signer (lower-case hex address).
func bySigner(t *testing.T, js []jobs.Job) map[string][]uint64 {
	t.Helper()
	out := map[string][]uint64{}
	for _, j := range js {
		require.NotEmpty(t, j.From, "job %s", j.ID)
		require.NotNil(t, j.Nonce, "job %s", j.ID)
		from := strings.ToLower(j.From)
		out[from] = append(out[from], *j.Nonce)
	}
	return out
}

// The pool spreads 1,000 jobs that name no signer across 4 signers: every
// job is confirmed exactly once, each signer's nonces run from 0 without a
// gap, and each signer gets a fair share.
func TestPoolSpreadsJobsAcrossSigners(t *testing.T) {
	t.Parallel()
	s, addrs := newPoolStack(t, 4, 0)
	const n = 1000
	ids := s.postJobs(n, "")
	done := s.waitConfirmed(ids, 4*time.Minute)
	require.Equal(t, uint64(n), s.count(), "each job ran exactly once")

	nonces := bySigner(t, done)
	require.Len(t, nonces, len(addrs), "every signer got jobs")
	for from, got := range nonces {
		t.Logf("signer %s: %d jobs", from, len(got))
	}
	for _, a := range addrs {
		got := nonces[strings.ToLower(a.Hex())]
		require.GreaterOrEqual(t, len(got), n/4*6/10, "signer %s got a fair share (%d of %d)", a, len(got), n)
		slices.Sort(got)
		for i, nc := range got {
			require.Equal(t, uint64(i), nc, "signer %s: nonces contiguous from 0", a)
		}
	}
	for _, sg := range s.signers().Signers {
		require.Equal(t, sg.Latest, sg.Pending, "signer %s: nothing left pending", sg.Address)
		require.Equal(t, uint64(len(nonces[strings.ToLower(sg.Address)])), sg.Latest, "signer %s: the chain saw exactly its jobs", sg.Address)
		require.Zero(t, sg.InFlight, sg.Address)
	}
}

// A signer that cannot pay gets no new jobs while others can; a job that
// names it stays pinned to it and waits until it is funded again.
func TestPoolSkipsAPausedSignerAndKeepsPinnedJobs(t *testing.T) {
	t.Parallel()
	s, addrs := newPoolStack(t, 3, 0)
	poor := addrs[1]
	s.anvil.RPC(t, "anvil_setBalance", poor, "0x0")

	// A job pinned to the poor signer pauses it.
	pinned := s.postJobs(1, poor.Hex())[0]
	deadline := time.Now().Add(30 * time.Second)
	for !s.paused(poor) {
		require.True(t, time.Now().Before(deadline), "signer never paused")
		time.Sleep(100 * time.Millisecond)
	}
	// Past the pool's refresh interval, every choice sees the mark.
	time.Sleep(300 * time.Millisecond)

	ids := s.postJobs(30, "")
	done := s.waitConfirmed(ids, 2*time.Minute)
	nonces := bySigner(t, done)
	require.NotContains(t, nonces, strings.ToLower(poor.Hex()), "the paused signer got no new job")
	require.Len(t, nonces, 2, "the funded signers shared the jobs")

	j, err := s.store.Get(context.Background(), pinned)
	require.NoError(t, err)
	require.False(t, j.Status.Terminal(), "the pinned job waits: %s", j.Status)
	s.anvil.RPC(t, "anvil_setBalance", poor, hexutil.EncodeBig(big.NewInt(1e18)))
	got := s.waitConfirmed([]string{pinned}, 2*time.Minute)[0]
	require.True(t, strings.EqualFold(poor.Hex(), got.From), "the pinned job kept its signer: %s", got.From)
	require.Equal(t, uint64(0), *got.Nonce)
	require.Equal(t, uint64(31), s.count())
}

func (s *stack) paused(addr common.Address) bool {
	s.t.Helper()
	for _, sg := range s.signers().Signers {
		if strings.EqualFold(sg.Address, addr.Hex()) {
			return sg.Paused
		}
	}
	s.t.Fatalf("signer %s not listed", addr)
	return false
}

// With a small in-flight limit, no signer ever has more transactions in
// flight than the limit, and the jobs still all go through.
func TestPoolInFlightLimitHolds(t *testing.T) {
	t.Parallel()
	const limit = 2
	s, addrs := newPoolStack(t, 2, limit)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	peak := make([]int64, len(addrs))
	var sampleErr error
	wg.Go(func() {
		for {
			for i, addr := range addrs {
				a, _ := s.worker.Account(addr)
				n, err := a.Nonces.Count(context.Background())
				if err != nil {
					sampleErr = err
					return
				}
				peak[i] = max(peak[i], n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	ids := s.postJobs(12, "")
	done := s.waitConfirmed(ids, 3*time.Minute)
	close(stop)
	wg.Wait()
	require.NoError(t, sampleErr)
	require.Equal(t, uint64(len(ids)), s.count())
	for i, a := range addrs {
		require.LessOrEqual(t, peak[i], int64(limit), "signer %s went over the limit", a)
	}
	require.Equal(t, int64(limit), max(peak[0], peak[1]), "the jobs filled a signer up to the limit")
	for from, got := range bySigner(t, done) {
		slices.Sort(got)
		for i, nc := range got {
			require.Equal(t, uint64(i), nc, "signer %s: nonces contiguous from 0", from)
		}
	}
}

// Runs of one job's task that race pick signers on their own; only the first
// reservation binds, the others follow it, so no other signer is left with
// a nonce bound to a job it will never sign (which would stall it).
func TestRacingRunsOfAJobUseOneSigner(t *testing.T) {
	t.Parallel()
	s, addrs := newPoolStack(t, 4, 0)
	ctx := context.Background()
	ids := s.postJobs(3, "")
	var wg sync.WaitGroup
	for _, id := range ids {
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = s.worker.Send(ctx, id) // some runs lose: that is the point
			}()
		}
	}
	wg.Wait()
	s.waitConfirmed(ids, 60*time.Second)
	require.Equal(t, uint64(3), s.count())
	var used uint64
	for _, a := range addrs {
		latest, err := s.node.NonceAt(ctx, a, nil)
		require.NoError(t, err)
		pending, err := s.node.PendingNonceAt(ctx, a)
		require.NoError(t, err)
		require.Equal(t, latest, pending, "signer %s has nothing stuck", a)
		used += latest
		n, err := nonce.New(s.rdb, "relayq:", 31337, a).Count(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "signer %s holds no nonce for these jobs", a)
	}
	require.Equal(t, uint64(3), used, "three transactions in all: one per job")
}
