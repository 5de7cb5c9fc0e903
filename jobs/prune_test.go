package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/nonce"
)

// Prune deletes old jobs in a final status, and only those: a queued job of
// the same age and a recent confirmed one stay, and the indexes follow.
func TestPruneDeletesOldFinalJobsOnly(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	old := time.Now().Add(-48 * time.Hour)
	create := func(at time.Time, to ...jobs.Status) string {
		j := newJob()
		j.ID = jobs.NewIDAt(at)
		_, _, err := s.Create(ctx, j, "")
		require.NoError(t, err)
		for _, st := range to {
			_, err := s.Transition(ctx, j.ID, st, "", nil, nil)
			require.NoError(t, err)
		}
		return j.ID
	}
	confirmed := create(old, jobs.Submitted, jobs.Mined, jobs.Confirmed)
	failed := create(old.Add(time.Minute), jobs.Failed)
	cancelled := create(old.Add(2*time.Minute), jobs.Cancelled)
	queued := create(old)
	inFlight := create(old, jobs.Submitted)
	recent := create(time.Now(), jobs.Submitted, jobs.Mined, jobs.Confirmed)

	n, err := s.Prune(ctx, time.Now().Add(-24*time.Hour), 2)
	require.NoError(t, err)
	require.Equal(t, 2, n, "at most the limit")
	n, err = s.Prune(ctx, time.Now().Add(-24*time.Hour), 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	for _, id := range []string{confirmed, failed, cancelled} {
		_, err := s.Get(ctx, id)
		require.ErrorIs(t, err, jobs.ErrNotFound, id)
		left, err := rdb.Exists(ctx, s.JobKey(id), s.JobKey(id)+":history", s.JobKey(id)+":attempts").Result()
		require.NoError(t, err)
		require.Zero(t, left)
	}
	for _, id := range []string{queued, inFlight, recent} {
		_, err := s.Get(ctx, id)
		require.NoError(t, err, id)
	}
	all, _, err := s.List(ctx, "", 100, "")
	require.NoError(t, err)
	require.Len(t, all, 3)
	for _, st := range []jobs.Status{jobs.Confirmed, jobs.Failed, jobs.Cancelled} {
		c, err := s.Count(ctx, st)
		require.NoError(t, err)
		want := int64(0)
		if st == jobs.Confirmed {
			want = 1 // the recent one
		}
		require.Equal(t, want, c, st)
	}
	created, ok := jobs.CreatedAt(confirmed)
	require.True(t, ok)
	require.WithinDuration(t, old, created, time.Millisecond, "NewIDAt stamps the given time")
}

// A failed job whose nonce is still bound (its gap fill is not mined yet)
// survives pruning however old it is: deleting it would drop the binding
// and leave the nonce unfilled for good. Once the allocator releases it, the
// next prune deletes it. Jobs past a kept one are still pruned.
func TestPruneKeepsAJobWhoseNonceIsBound(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	signer := common.HexToAddress("0x00000000000000000000000000000000000000bb")
	alloc := nonce.New(rdb, "test:", 31337, signer)
	_, err := alloc.Reconcile(ctx, 7)
	require.NoError(t, err)
	old := time.Now().Add(-48 * time.Hour)
	create := func(at time.Time, bind bool) string {
		j := newJob()
		j.ChainID = 31337
		j.ID = jobs.NewIDAt(at)
		_, _, err := s.Create(ctx, j, "")
		require.NoError(t, err)
		if bind {
			n, err := alloc.Reserve(ctx, j.ID, s.JobKey(j.ID))
			require.NoError(t, err)
			require.Equal(t, uint64(7), n)
		}
		_, err = s.Transition(ctx, j.ID, jobs.Failed, "", nil, nil)
		require.NoError(t, err)
		return j.ID
	}
	waiting := create(old, true)
	done := create(old.Add(time.Minute), false)

	n, err := s.Prune(ctx, time.Now().Add(-24*time.Hour), 1)
	require.NoError(t, err)
	require.Equal(t, 1, n, "the unbound job after the bound one")
	_, err = s.Get(ctx, done)
	require.ErrorIs(t, err, jobs.ErrNotFound)
	got, err := s.Get(ctx, waiting)
	require.NoError(t, err, "its nonce still waits for the fill")
	require.Equal(t, jobs.Failed, got.Status)
	_, bound, err := alloc.Bound(ctx, waiting)
	require.NoError(t, err)
	require.True(t, bound)

	require.NoError(t, alloc.Release(ctx, waiting)) // the fill was mined
	n, err = s.Prune(ctx, time.Now().Add(-24*time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.Get(ctx, waiting)
	require.ErrorIs(t, err, jobs.ErrNotFound)
}
