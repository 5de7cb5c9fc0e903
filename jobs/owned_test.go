package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// ownedJob is newJob created by the API key named owner.
func ownedJob(owner string) *jobs.Job {
	j := newJob()
	j.APIKey = owner
	return j
}

// TestListOwned: each API key's listing holds its own jobs only, pages
// through them with cursors as List does, follows them through
// transitions (status filter) and forgets them when they are pruned.
func TestListOwned(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	var alice []string
	for i := range 5 {
		j, _, err := s.Create(ctx, ownedJob("alice"), "")
		require.NoError(t, err)
		alice = append([]string{j.ID}, alice...) // newest first
		// Bob's jobs interleave with Alice's: a filter after the fact
		// would leave her pages short.
		_, _, err = s.Create(ctx, ownedJob("bob"), "")
		require.NoError(t, err)
		if i == 0 {
			_, _, err = s.CreateMany(ctx, []*jobs.Job{ownedJob("bob"), ownedJob("bob")}, nil)
			require.NoError(t, err)
		}
	}
	got, err := s.Get(ctx, alice[0])
	require.NoError(t, err)
	require.Equal(t, "alice", got.APIKey)

	var paged []string
	cursor := ""
	for {
		page, next, err := s.ListOwned(ctx, "alice", "", 2, cursor)
		require.NoError(t, err)
		for _, j := range page {
			require.Equal(t, "alice", j.APIKey)
			paged = append(paged, j.ID)
		}
		if next == "" {
			break
		}
		require.Len(t, page, 2, "every page but the last is full")
		cursor = next
	}
	require.Equal(t, alice, paged)

	bob, _, err := s.ListOwned(ctx, "bob", "", 100, "")
	require.NoError(t, err)
	require.Len(t, bob, 7)
	all, _, err := s.List(ctx, "", 100, "")
	require.NoError(t, err)
	require.Len(t, all, 12)

	// A transition moves the job between its key's status indexes too.
	require.NoError(t, s.TransitionIf(ctx, alice[0], jobs.Queued, jobs.Cancelled, "", nil, nil))
	cancelled, _, err := s.ListOwned(ctx, "alice", jobs.Cancelled, 10, "")
	require.NoError(t, err)
	require.Len(t, cancelled, 1)
	require.Equal(t, alice[0], cancelled[0].ID)
	queued, _, err := s.ListOwned(ctx, "alice", jobs.Queued, 10, "")
	require.NoError(t, err)
	require.Len(t, queued, 4)
	none, _, err := s.ListOwned(ctx, "bob", jobs.Cancelled, 10, "")
	require.NoError(t, err)
	require.Empty(t, none)

	// Pruning removes it from its key's indexes as well.
	n, err := s.Prune(ctx, time.Now().Add(time.Hour), 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	for _, st := range []jobs.Status{"", jobs.Cancelled} {
		left, _, err := s.ListOwned(ctx, "alice", st, 10, "")
		require.NoError(t, err)
		for _, j := range left {
			require.NotEqual(t, alice[0], j.ID)
		}
	}
	left, _, err := s.ListOwned(ctx, "alice", "", 10, "")
	require.NoError(t, err)
	require.Len(t, left, 4)
}

// TestCreateManyOneOwner: a batch is one API key's.
func TestCreateManyOneOwner(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	_, _, err := s.CreateMany(context.Background(), []*jobs.Job{ownedJob("alice"), ownedJob("bob")}, nil)
	require.ErrorContains(t, err, "in one batch")
}
