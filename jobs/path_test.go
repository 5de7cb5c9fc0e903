package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// TransitionPath writes what two TransitionIf calls would: both history
// entries with their notes, both changes' fields, one webhook event per
// change with the job as it was right after it, and the status indexes
// (the deployment's and the API key's) moved from the first status to the
// last.
func TestTransitionPathIsTwoTransitionsInOne(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	in := hookedJob()
	in.APIKey = "alice"
	j, _, err := s.Create(ctx, in, "")
	require.NoError(t, err)
	id := j.ID
	require.NoError(t, s.TransitionIf(ctx, id, jobs.Queued, jobs.Submitted, "signed", jobs.Fields{"nonce", 3, "tx_hash", "0x01"}, &jobs.Attempt{Hash: "0x01", Nonce: 3, Kind: jobs.KindOriginal}))
	v0, err := s.Versions(ctx, []string{id, "no-such-job"})
	require.NoError(t, err)
	require.Equal(t, "", v0[1], "a missing job has no version")

	require.NoError(t, s.TransitionPath(ctx, id, jobs.Submitted, []jobs.PathStep{
		{To: jobs.Mined, Note: "mined", Fields: jobs.Fields{"block_number", 9, "block_hash", "0xb9", "receipt_status", 1}},
		{To: jobs.Confirmed, Note: "deep"},
	}))
	got, err := s.Get(ctx, id)
	require.NoError(t, err)
	require.Equal(t, jobs.Confirmed, got.Status)
	require.Equal(t, uint64(9), *got.BlockNumber)
	require.Len(t, got.History, 4)
	require.Equal(t, jobs.Change{From: jobs.Submitted, To: jobs.Mined, At: got.History[2].At, Note: "mined"}, got.History[2])
	require.Equal(t, jobs.Change{From: jobs.Mined, To: jobs.Confirmed, At: got.History[3].At, Note: "deep"}, got.History[3])
	v1, err := s.Versions(ctx, []string{id})
	require.NoError(t, err)
	require.NotEqual(t, v0[0], v1[0], "the version changes with the record")
	require.Equal(t, got.Version(), v1[0], "a loaded record's version is the stored one")

	for _, st := range []jobs.Status{jobs.Submitted, jobs.Mined} {
		ids, _, err := s.List(ctx, st, 10, "")
		require.NoError(t, err)
		require.Empty(t, ids, "%s index", st)
		owned, _, err := s.ListOwned(ctx, "alice", st, 10, "")
		require.NoError(t, err)
		require.Empty(t, owned, "alice's %s index", st)
	}
	done, _, err := s.List(ctx, jobs.Confirmed, 10, "")
	require.NoError(t, err)
	require.Len(t, done, 1)
	owned, _, err := s.ListOwned(ctx, "alice", jobs.Confirmed, 10, "")
	require.NoError(t, err)
	require.Len(t, owned, 1)

	evs := outbox(t, s)
	require.Len(t, evs, 2)
	mined, final := evs[id+".2"], evs[id+".3"]
	require.Equal(t, jobs.Mined, mined.Job.Status, "the mined event shows the job as mined")
	require.Len(t, mined.Job.History, 3)
	require.Equal(t, jobs.Confirmed, final.Job.Status)
	require.Len(t, final.Job.History, 4)
}

// A path from a status the job is not in, or through a change the table
// forbids, writes nothing.
func TestTransitionPathRefusesAndWritesNothing(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	j, _, err := s.Create(ctx, newJob(), "")
	require.NoError(t, err)
	before, err := s.Get(ctx, j.ID)
	require.NoError(t, err)

	err = s.TransitionPath(ctx, j.ID, jobs.Submitted, []jobs.PathStep{{To: jobs.Mined}, {To: jobs.Confirmed}})
	var bad *jobs.BadTransitionError
	require.True(t, errors.As(err, &bad), "%v", err)
	require.Equal(t, jobs.Queued, bad.Current)

	err = s.TransitionPath(ctx, j.ID, jobs.Queued, []jobs.PathStep{{To: jobs.Confirmed}})
	require.ErrorContains(t, err, "not allowed")
	require.ErrorContains(t, s.TransitionPath(ctx, j.ID, jobs.Queued, nil), "no steps")
	require.ErrorIs(t, s.TransitionPath(ctx, "no-such-job", jobs.Submitted, []jobs.PathStep{{To: jobs.Mined}}), jobs.ErrNotFound)

	after, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, before, after)
}
