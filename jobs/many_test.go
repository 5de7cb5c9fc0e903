package jobs_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// TransitionMany gives each step TransitionIf's outcome in one round trip,
// including after Redis forgot its scripts (a restart), when the steps are
// answered NOSCRIPT and must run again, once.
func TestTransitionMany(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	var ids []string
	for range 3 {
		j, _, err := s.Create(ctx, newJob(), "")
		require.NoError(t, err)
		ids = append(ids, j.ID)
	}
	require.NoError(t, s.TransitionIf(ctx, ids[1], jobs.Queued, jobs.Submitted, "", nil, nil))
	require.NoError(t, rdb.ScriptFlush(ctx).Err())

	att := &jobs.Attempt{Hash: "0xaa", Nonce: 4, Gas: 21000, GasTipCap: "1", GasFeeCap: "2", Kind: jobs.KindOriginal}
	errs := s.TransitionMany(ctx, []jobs.Step{
		{ID: ids[0], From: jobs.Queued, To: jobs.Submitted, Note: "signed", Fields: jobs.Fields{"nonce", 4, "tx_hash", "0xaa"}, Attempt: att},
		{ID: ids[1], From: jobs.Queued, To: jobs.Submitted}, // already submitted
		{ID: ids[2], From: jobs.Confirmed, To: jobs.Queued}, // not a move the table allows
		{ID: "no-such-job", From: jobs.Queued, To: jobs.Submitted},
		{ID: ids[2], From: jobs.Queued, To: jobs.Cancelled, Fields: jobs.Fields{"odd"}},
	})
	require.Len(t, errs, 5)
	require.NoError(t, errs[0])
	var bad *jobs.BadTransitionError
	require.ErrorAs(t, errs[1], &bad)
	require.Equal(t, jobs.Submitted, bad.Current)
	require.ErrorContains(t, errs[2], "not allowed")
	require.True(t, errors.Is(errs[3], jobs.ErrNotFound), "%v", errs[3])
	require.ErrorContains(t, errs[4], "odd number of fields")

	j, err := s.Get(ctx, ids[0])
	require.NoError(t, err)
	require.Equal(t, jobs.Submitted, j.Status)
	require.Equal(t, "0xaa", j.TxHash)
	require.Len(t, j.Attempts, 1)
	require.Equal(t, "signed", j.History[len(j.History)-1].Note)
	n, err := s.Count(ctx, jobs.Submitted)
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
	j2, err := s.Get(ctx, ids[2])
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, j2.Status, "a refused step changes nothing")
}

// BenchmarkTransitionMany is the send path's pipelined write-ahead, 64 jobs
// a round trip; ns/op is per job, to compare with BenchmarkTransition.
func BenchmarkTransitionMany(b *testing.B) {
	s := benchStore(b)
	ctx := context.Background()
	steps := make([]jobs.Step, b.N)
	for i := range steps {
		j, _, err := s.Create(ctx, newJob(), "")
		if err != nil {
			b.Fatal(err)
		}
		steps[i] = jobs.Step{ID: j.ID, From: jobs.Queued, To: jobs.Submitted, Fields: jobs.Fields{"nonce", i}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		for _, err := range s.TransitionMany(ctx, steps[i:min(i+64, b.N)]) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
