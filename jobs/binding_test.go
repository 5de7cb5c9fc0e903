package jobs_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// A step with a Binding writes the job's nonce only where the allocator's
// bound hash gives the job that nonce: a primary promoted after the
// reservation was made on its predecessor has no such binding, and the
// signed transaction is not recorded there at a nonce nobody holds.
func TestStepBinding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	s := jobs.NewStore(rdb, "relayq:")
	const bound = "relayq:{1:0xabc}:bound"
	signed := func(id string, n uint64) jobs.Step {
		return jobs.Step{ID: id, From: jobs.Queued, To: jobs.Submitted, Note: "signed",
			Fields: jobs.Fields{"nonce", n, "raw", "0xaa"}, Binding: bound}
	}
	a, _, err := s.Create(ctx, &jobs.Job{To: "0x1"}, "")
	require.NoError(t, err)
	b, _, err := s.Create(ctx, &jobs.Job{To: "0x2"}, "")
	require.NoError(t, err)
	c, _, err := s.Create(ctx, &jobs.Job{To: "0x3"}, "")
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, bound, a.ID, 7, b.ID, 8).Err())

	errs := s.TransitionMany(ctx, []jobs.Step{signed(a.ID, 7), signed(b.ID, 9), signed(c.ID, 10)})
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], jobs.ErrNotBound, "bound to another nonce")
	require.ErrorIs(t, errs[2], jobs.ErrNotBound, "bound to none")
	for id, want := range map[string]jobs.Status{a.ID: jobs.Submitted, b.ID: jobs.Queued, c.ID: jobs.Queued} {
		j, err := s.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, want, j.Status)
		if want == jobs.Queued {
			require.Nil(t, j.Nonce, "nothing was written")
			require.Empty(t, j.Raw)
		}
	}

	// After SCRIPT FLUSH (a restarted or promoted server) the guarded
	// script is loaded again like the plain one.
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	require.NoError(t, rdb.HSet(ctx, bound, b.ID, 9).Err())
	errs = s.TransitionMany(ctx, []jobs.Step{signed(b.ID, 9), {ID: c.ID, From: jobs.Queued, To: jobs.Failed}})
	require.NoError(t, errs[0])
	require.NoError(t, errs[1], "a step without a Binding is not checked")
}
