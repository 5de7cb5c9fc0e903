package jobs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

func batchOf(n int, hash string) []*jobs.Job {
	js := make([]*jobs.Job, n)
	for i := range js {
		j := newJob()
		j.Function, j.Args, j.BodyHash = "add(uint256)", []byte(fmt.Sprintf("[%d]", i)), hash
		js[i] = j
	}
	return js
}

func keysOf(prefix string, n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return ks
}

// CreateMany writes every job of a batch, queued and indexed, as Create
// would have, and keeps their order.
func TestCreateManyWritesEveryJob(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	out, created, err := s.CreateMany(ctx, batchOf(jobs.MaxCreateMany, "h"), nil)
	require.NoError(t, err)
	require.Len(t, out, jobs.MaxCreateMany)
	for i, j := range out {
		require.True(t, created[i])
		got, err := s.Get(ctx, j.ID)
		require.NoError(t, err)
		require.Equal(t, jobs.Queued, got.Status)
		require.JSONEq(t, fmt.Sprintf("[%d]", i), string(got.Args))
		require.Len(t, got.History, 1)
		require.Equal(t, jobs.Queued, got.History[0].To)
	}
	n, err := s.Count(ctx, jobs.Queued)
	require.NoError(t, err)
	require.Equal(t, int64(jobs.MaxCreateMany), n)
	list, _, err := s.List(ctx, "", 5, "")
	require.NoError(t, err)
	require.Len(t, list, 5)

	_, _, err = s.CreateMany(ctx, batchOf(jobs.MaxCreateMany+1, "h"), nil)
	require.ErrorContains(t, err, "at most 1000")
	_, _, err = s.CreateMany(ctx, batchOf(2, "h"), []string{"k"})
	require.ErrorContains(t, err, "1 idempotency keys for 2 jobs")
	_, _, err = s.CreateMany(ctx, batchOf(2, "h"), []string{"k", "k"})
	require.ErrorContains(t, err, "given twice")
	n, err = s.Count(ctx, jobs.Queued)
	require.NoError(t, err)
	require.Equal(t, int64(jobs.MaxCreateMany), n, "refused batches write nothing")
}

// With idempotency keys: the same batch again returns the same jobs and
// writes nothing; a key used with a different body hash refuses the whole
// batch before anything is written, even the jobs whose keys are new; and
// a batch whose earlier write only got part way (some keys set) writes the
// rest.
func TestCreateManyIdempotency(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	first, created, err := s.CreateMany(ctx, batchOf(3, "batch-1"), keysOf("a", 3))
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, true}, created)

	again, created, err := s.CreateMany(ctx, batchOf(3, "batch-1"), keysOf("a", 3))
	require.NoError(t, err)
	require.Equal(t, []bool{false, false, false}, created)
	for i := range first {
		require.Equal(t, first[i].ID, again[i].ID)
		require.Equal(t, jobs.Queued, again[i].Status)
	}

	// One more job, so the batch's hash differs: refused as a whole.
	_, _, err = s.CreateMany(ctx, batchOf(4, "batch-2"), keysOf("a", 4))
	require.ErrorIs(t, err, jobs.ErrIdempotencyMismatch)
	var me *jobs.MismatchError
	require.ErrorAs(t, err, &me)
	require.Equal(t, 0, me.Index)
	require.Equal(t, first[0].ID, me.PrevID)
	n, err := s.Count(ctx, jobs.Queued)
	require.NoError(t, err)
	require.Equal(t, int64(3), n, "the mismatching batch wrote nothing")
	used, err := s.IdempotencyKeyUsed(ctx, "a-3")
	require.NoError(t, err)
	require.False(t, used, "not even the new job's key")

	// The mismatch is found wherever it is in the batch.
	_, _, err = s.CreateMany(ctx, batchOf(2, "batch-x"), []string{"fresh", "a-1"})
	require.ErrorAs(t, err, &me)
	require.Equal(t, 1, me.Index)

	// A batch cut short after its first job: the rest is written now.
	part, _, err := s.CreateMany(ctx, batchOf(1, "batch-3"), keysOf("c", 1))
	require.NoError(t, err)
	full, created, err := s.CreateMany(ctx, batchOf(3, "batch-3"), keysOf("c", 3))
	require.NoError(t, err)
	require.Equal(t, []bool{false, true, true}, created)
	require.Equal(t, part[0].ID, full[0].ID)
	n, err = s.Count(ctx, jobs.Queued)
	require.NoError(t, err)
	require.Equal(t, int64(6), n)

	// Redis lost its scripts (a restart): the script is loaded again.
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	_, created, err = s.CreateMany(ctx, batchOf(2, "batch-4"), keysOf("d", 2))
	require.NoError(t, err)
	require.Equal(t, []bool{true, true}, created)

	used, err = s.IdempotencyKeyUsed(ctx, "d-1")
	require.NoError(t, err)
	require.True(t, used)
	used, err = s.IdempotencyKeyUsed(ctx, "")
	require.NoError(t, err)
	require.False(t, used)
}

// A store that waits for a replica, on a primary without one: the batch is
// written on the primary but answers ErrNotReplicated; its retry finds it
// and still cannot vouch for it.
func TestCreateManyNotReplicated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	s := jobs.NewStore(rdb, "relayq:", jobs.WithReplicas(1, 20*time.Millisecond))
	plain := jobs.NewStore(rdb, "relayq:")

	out, created, err := s.CreateMany(ctx, batchOf(2, "h"), keysOf("r", 2))
	require.ErrorIs(t, err, jobs.ErrNotReplicated)
	require.Equal(t, []bool{true, true}, created)
	for _, j := range out {
		got, err := plain.Get(ctx, j.ID)
		require.NoError(t, err, "the job stands on the primary")
		require.Equal(t, jobs.Queued, got.Status)
	}
	again, created, err := s.CreateMany(ctx, batchOf(2, "h"), keysOf("r", 2))
	require.ErrorIs(t, err, jobs.ErrNotReplicated)
	require.Equal(t, []bool{false, false}, created)
	require.Equal(t, out[1].ID, again[1].ID)
}

// Redis down: an error, and nothing to act on.
func TestCreateManyRedisDown(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer rdb.Close()
	s := jobs.NewStore(rdb, "relayq:")
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _, err := s.CreateMany(ctx, batchOf(2, "h"), nil)
	require.Error(t, err)
	require.Nil(t, out)
}
