package jobs_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// A re-sign records its nonce only where the allocator binds the job to it;
// elsewhere (a rebind lost in a failover) nothing is written.
func TestUpdateBound(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	j, _, err := s.Create(ctx, newJob(), "")
	require.NoError(t, err)
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Submitted, "", jobs.Fields{"nonce", 3}, nil))
	const bound = "test:{31337:0xabc}:bound"
	att := &jobs.Attempt{Hash: "0xbb", Nonce: 9, Kind: jobs.KindResign}

	err = s.UpdateBound(ctx, j.ID, jobs.Submitted, jobs.Fields{"nonce", 9, "tx_hash", "0xbb"}, att, bound)
	require.ErrorIs(t, err, jobs.ErrNotBound)
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(3), *got.Nonce, "nothing written")
	require.Empty(t, got.Attempts)

	require.NoError(t, rdb.HSet(ctx, bound, j.ID, 9).Err())
	require.NoError(t, s.UpdateBound(ctx, j.ID, jobs.Submitted, jobs.Fields{"nonce", 9, "tx_hash", "0xbb"}, att, bound))
	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(9), *got.Nonce)
	require.Equal(t, "0xbb", got.TxHash)
	require.Len(t, got.Attempts, 1)

	var bad *jobs.BadTransitionError
	require.ErrorAs(t, s.UpdateBound(ctx, j.ID, jobs.Queued, jobs.Fields{"nonce", 9}, nil, bound), &bad, "the status must still be the one read")
}
