package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/worker"
)

// The sweeper's prune deletes final jobs past RELAYQ_JOB_RETENTION and
// leaves a job that is still running, however old; a retention of 0 keeps
// everything.
func TestPruneHonoursTheRetention(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true, worker: func(c *worker.Config) { c.JobRetention = 24 * time.Hour }})
	ctx := context.Background()
	old := time.Now().Add(-25 * time.Hour)
	mk := func(to ...jobs.Status) string {
		j := &jobs.Job{ID: jobs.NewIDAt(old), ChainID: 1, To: s.counter.Hex(), Data: "0x", Value: "0", Confirmations: 1}
		_, _, err := s.store.Create(ctx, j, "")
		require.NoError(t, err)
		for _, st := range to {
			_, err := s.store.Transition(ctx, j.ID, st, "", nil, nil)
			require.NoError(t, err)
		}
		return j.ID
	}
	done := mk(jobs.Submitted, jobs.Mined, jobs.Confirmed)
	running := mk(jobs.Submitted)
	fresh := s.submit(`{"to":"` + s.counter.Hex() + `","function":"increment()"}`).ID

	n, err := s.worker.Prune(ctx, time.Now())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.store.Get(ctx, done)
	require.ErrorIs(t, err, jobs.ErrNotFound)
	for _, id := range []string{running, fresh} {
		_, err := s.store.Get(ctx, id)
		require.NoError(t, err)
	}

	keep := newStack(t, stackOptions{noWorkerRun: true})
	n, err = keep.worker.Prune(ctx, time.Now().Add(1000*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n, "without a retention nothing is deleted")
}

// A worker that dies holding a send task leaves it active in Asynq with a
// lease nobody renews. The sweeper runs such a job itself instead of waiting
// for Asynq's once-a-minute recoverer. The dead worker is emulated in Redis
// the way Asynq records a task being worked on (its layout in v0.26: the
// task id in the queue's active list, its lease in the lease set).
func TestSweeperRunsAJobOrphanedByADeadWorker(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true})
	ctx := context.Background()
	j := s.submit(`{"to":"` + s.counter.Hex() + `","function":"increment()"}`)
	const q = "asynq:{" + tasks.QueueSend + "}:"
	// The API enqueues a little after it answers (api/sendq.go); a job
	// accepted alone gets a task whose id is its own.
	require.Eventually(t, func() bool {
		moved, err := s.rdb.LRem(ctx, q+"pending", 0, j.ID).Result()
		require.NoError(t, err)
		return moved == 1
	}, 5*time.Second, 10*time.Millisecond, "the API enqueued the job's task")
	require.NoError(t, s.rdb.LPush(ctx, q+"active", j.ID).Err())
	require.NoError(t, s.rdb.HSet(ctx, q+"t:"+j.ID, "state", "active").Err())
	require.NoError(t, s.rdb.ZAdd(ctx, q+"lease", redis.Z{Score: float64(time.Now().Add(-time.Minute).Unix()), Member: j.ID}).Err())

	n, err := s.worker.Sweep(ctx, time.Now())
	require.NoError(t, err)
	require.Zero(t, n, "its task exists: nothing to enqueue")
	n, err = s.worker.RecoverOrphans(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	sub, err := s.store.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Submitted, sub.Status, "signed and broadcast by the sweeper")

	// A task whose lease is alive belongs to a live worker: left alone.
	k := s.submit(`{"to":"` + s.counter.Hex() + `","function":"increment()"}`)
	require.NoError(t, s.rdb.LRem(ctx, q+"pending", 0, k.ID).Err())
	require.NoError(t, s.rdb.LPush(ctx, q+"active", k.ID).Err())
	require.NoError(t, s.rdb.HSet(ctx, q+"t:"+k.ID, "state", "active").Err())
	require.NoError(t, s.rdb.ZAdd(ctx, q+"lease", redis.Z{Score: float64(time.Now().Add(time.Minute).Unix()), Member: k.ID}).Err())
	n, err = s.worker.RecoverOrphans(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	still, err := s.store.Get(ctx, k.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, still.Status)
}

// Issue 13, case 5. A job the node rejects for good is given up with its
// nonce still bound; while the no-op that must take its nonce cannot be
// sent (the node refuses every broadcast), pruning with a tiny retention
// keeps it, since dropping its binding would leave the nonce unused and
// block the signer. Once the node takes transactions again, the no-op goes
// out, the job fails, a later job confirms, and only then is it pruned.
func TestPruneKeepsAFailedJobUntilItsNonceIsFilled(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}, proxy: true, worker: func(c *worker.Config) {
		c.JobRetention = time.Nanosecond
		c.SweepAfter = 2 * time.Second // the sweeper prunes every second
	}})
	ctx := context.Background()
	s.proxy.Inject(testenv.Fault{Methods: []string{"eth_sendRawTransaction"}, RPCError: &testenv.RPCErrorSpec{Message: "intrinsic gas too low"}})
	rejected := s.submit(`{"to":"` + s.counter.Hex() + `","function":"increment()"}`).ID
	failed := s.waitFor("given up", nil, func(j jobs.Job) bool { return j.Abandon != nil }, rejected)
	require.Equal(t, jobs.ErrCodeRejected, failed.Abandon.Code)
	require.NotNil(t, failed.Nonce)

	// Blocks go by, the tracker's fills are refused, the sweeper prunes.
	for range 3 {
		time.Sleep(time.Second)
		_, err := s.worker.Prune(ctx, time.Now())
		require.NoError(t, err)
		_, err = s.store.Get(ctx, rejected)
		require.NoError(t, err, "its nonce still waits for the fill")
	}
	require.Positive(t, s.proxy.Faulted(), "the fill was tried and refused")

	s.proxy.Clear()
	gone := s.waitFor("failed", nil, status(jobs.Failed), rejected)
	require.Equal(t, jobs.ErrCodeRejected, gone.Error.Code)
	next := s.submit(`{"to":"` + s.counter.Hex() + `","function":"increment()"}`).ID
	done := s.wait(next, jobs.Confirmed)
	require.Equal(t, *failed.Nonce+1, *done.Nonce)
	require.Equal(t, uint64(1), s.count(), "the rejected job never ran; the next one once")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.store.Get(ctx, rejected)
		if errors.Is(err, jobs.ErrNotFound) {
			break
		}
		require.NoError(t, err)
		require.True(t, time.Now().Before(deadline), "the filled job was never pruned")
		time.Sleep(100 * time.Millisecond)
	}
}
