package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/nonce"
)

// Movable offers only final jobs that were created and became final before
// the bound and hold no nonce binding; Forget then deletes them and every
// index entry, and keeps one that changed since it was loaded.
func TestMovableAndForget(t *testing.T) {
	t.Parallel()
	rs := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	clock := time.Now().Add(-3 * time.Hour)
	s := jobs.NewStore(rdb, "test:", jobs.WithClock(func() time.Time { return clock }))
	from := common.HexToAddress("0x00000000000000000000000000000000000000bb")
	alloc := nonce.New(rdb, "test:", 1, from)
	_, err := alloc.Reconcile(ctx, 0)
	require.NoError(t, err)

	create := func(key string, bind bool, to ...jobs.Status) string {
		j := newJob()
		j.APIKey, j.From = key, from.Hex()
		j.ID = jobs.NewIDAt(clock)
		_, _, err := s.Create(ctx, j, "")
		require.NoError(t, err)
		if bind {
			_, err := alloc.Reserve(ctx, j.ID, s.JobKey(j.ID))
			require.NoError(t, err)
		}
		for _, st := range to {
			_, err := s.Transition(ctx, j.ID, st, "", nil, nil)
			require.NoError(t, err)
		}
		return j.ID
	}
	confirmed := create("alice", false, jobs.Submitted, jobs.Mined, jobs.Confirmed)
	failed := create("", false, jobs.Failed)
	bound := create("alice", true, jobs.Failed)
	inFlight := create("alice", false, jobs.Submitted)
	// Created long ago, final only now: still in the hot window.
	clock = time.Now()
	lateFinal := create("bob", false)
	_, err = s.Transition(ctx, lateFinal, jobs.Cancelled, "", nil, nil)
	require.NoError(t, err)

	hot := time.Now().Add(-time.Hour)
	got, err := s.Movable(ctx, hot, 100)
	require.NoError(t, err)
	ids := map[string]bool{}
	for _, j := range got {
		ids[j.ID] = true
		require.True(t, j.Status.Terminal())
	}
	require.Equal(t, map[string]bool{confirmed: true, failed: true}, ids, "neither the bound, the in-flight nor the recently final job")
	_ = bound
	_ = inFlight

	// A webhook attempt recorded after loading: that job stays.
	var stale *jobs.Job
	for _, j := range got {
		if j.ID == failed {
			stale = j
		}
	}
	require.NoError(t, s.SetWebhookState(ctx, failed, jobs.WebhookState{LastStatus: jobs.WebhookFailed, LastAttemptAt: time.Now()}))
	n, err := s.Forget(ctx, got)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.Get(ctx, confirmed)
	require.ErrorIs(t, err, jobs.ErrNotFound)
	left, err := rdb.Exists(ctx, s.JobKey(confirmed), s.JobKey(confirmed)+":history", s.JobKey(confirmed)+":attempts").Result()
	require.NoError(t, err)
	require.Zero(t, left)
	for _, k := range []string{"test:jobs:all", "test:jobs:status:confirmed", "test:jobs:all:key:alice", "test:jobs:status:confirmed:key:alice"} {
		_, err := rdb.ZScore(ctx, k, confirmed).Result()
		require.ErrorIs(t, err, redis.Nil, k)
	}
	_, err = s.Get(ctx, stale.ID)
	require.NoError(t, err, "changed since it was loaded: kept")

	// Loaded again, it goes; a repeat finds nothing to delete.
	again, err := s.Movable(ctx, hot, 100)
	require.NoError(t, err)
	require.Len(t, again, 1)
	n, err = s.Forget(ctx, again)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = s.Forget(ctx, again)
	require.NoError(t, err)
	require.Zero(t, n)

	// The bound job goes once the allocator releases it.
	require.NoError(t, alloc.Release(ctx, bound))
	again, err = s.Movable(ctx, hot, 100)
	require.NoError(t, err)
	require.Len(t, again, 1)
	require.Equal(t, bound, again[0].ID)
}
