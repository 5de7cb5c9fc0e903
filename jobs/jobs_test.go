package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// The state machine, spelled out: every pair that may move, and nothing else.
func TestCanTransition(t *testing.T) {
	t.Parallel()
	allowed := map[[2]jobs.Status]bool{
		{jobs.Queued, jobs.Submitted}:    true,
		{jobs.Queued, jobs.Failed}:       true,
		{jobs.Queued, jobs.Cancelled}:    true,
		{jobs.Submitted, jobs.Mined}:     true,
		{jobs.Submitted, jobs.Failed}:    true,
		{jobs.Submitted, jobs.Cancelled}: true,
		{jobs.Mined, jobs.Confirmed}:     true,
		{jobs.Mined, jobs.Failed}:        true,
		{jobs.Mined, jobs.Cancelled}:     true, // a cancellation, final once deep
		{jobs.Mined, jobs.Submitted}:     true, // a reorg: the one step back
	}
	for _, from := range jobs.Statuses {
		for _, to := range jobs.Statuses {
			require.Equal(t, allowed[[2]jobs.Status{from, to}], jobs.CanTransition(from, to), "%s → %s", from, to)
		}
	}
	for _, s := range []jobs.Status{jobs.Confirmed, jobs.Failed, jobs.Cancelled} {
		require.True(t, s.Terminal())
	}
	for _, s := range []jobs.Status{jobs.Queued, jobs.Submitted, jobs.Mined} {
		require.False(t, s.Terminal())
	}
	require.False(t, jobs.Status("done").Valid())
}

func setup(t *testing.T) (*jobs.Store, *redis.Client) {
	t.Helper()
	rs := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return jobs.NewStore(rdb, "test:"), rdb
}

func newJob() *jobs.Job {
	return &jobs.Job{ChainID: 1, To: "0x00000000000000000000000000000000000000aa", Data: "0x", Value: "0", Confirmations: 1, BodyHash: "h1"}
}

func TestTransitionsMoveForwardAndAreRecorded(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	j, created, err := s.Create(ctx, newJob(), "")
	require.NoError(t, err)
	require.True(t, created)

	// Skipping ahead is refused and writes nothing.
	_, err = s.Transition(ctx, j.ID, jobs.Confirmed, "", jobs.Fields{"tx_hash", "0xbad"}, nil)
	var bad *jobs.BadTransitionError
	require.ErrorAs(t, err, &bad)
	require.Equal(t, jobs.Queued, bad.Current)
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, got.Status)
	require.Empty(t, got.TxHash)

	att := &jobs.Attempt{Hash: "0x01", Nonce: 7, Kind: "original", SentAt: time.Now().UTC()}
	prev, err := s.Transition(ctx, j.ID, jobs.Submitted, "signed", jobs.Fields{"nonce", 7, "tx_hash", "0x01", "raw", "0xf0"}, att)
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, prev)
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, "", jobs.Fields{"block_number", 5, "block_hash", "0xb5"}, nil))
	// Reorg: back to submitted, recorded.
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Submitted, "reorg", jobs.Fields{"block_number", "", "block_hash", ""}, nil))
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, "", jobs.Fields{"block_number", 6, "block_hash", "0xb6"}, nil))
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Confirmed, "", nil, nil))
	// Terminal is terminal.
	_, err = s.Transition(ctx, j.ID, jobs.Failed, "", nil, nil)
	require.ErrorAs(t, err, &bad)
	// TransitionIf refuses a pair outside the table before touching Redis.
	require.Error(t, s.TransitionIf(ctx, j.ID, jobs.Confirmed, jobs.Queued, "", nil, nil))

	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Confirmed, got.Status)
	require.Equal(t, uint64(7), *got.Nonce)
	require.Equal(t, uint64(6), *got.BlockNumber)
	require.Equal(t, "0xf0", got.Raw)
	require.Len(t, got.Attempts, 1)
	require.Equal(t, "0x01", got.Attempts[0].Hash)
	var path []jobs.Status
	for _, c := range got.History {
		path = append(path, c.To)
	}
	require.Equal(t, []jobs.Status{jobs.Queued, jobs.Submitted, jobs.Mined, jobs.Submitted, jobs.Mined, jobs.Confirmed}, path)
	require.Equal(t, "reorg", got.History[3].Note)

	// The status indexes follow.
	n, err := rdb.ZCard(ctx, "test:jobs:status:confirmed").Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	for _, st := range []jobs.Status{jobs.Queued, jobs.Submitted, jobs.Mined} {
		c, err := s.Count(ctx, st)
		require.NoError(t, err)
		require.Zero(t, c, st)
	}
}

// Of many concurrent attempts at the same transition, exactly one wins.
func TestConcurrentTransitionsHaveOneWinner(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	j, _, err := s.Create(ctx, newJob(), "")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Submitted, "", jobs.Fields{"nonce", i}, &jobs.Attempt{Hash: "0x", Nonce: uint64(i)})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 1, wins)
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Len(t, got.Attempts, 1)
	require.Equal(t, *got.Nonce, got.Attempts[0].Nonce, "fields and attempt come from the same winner")
}

func TestCreateIsIdempotent(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	first, created, err := s.Create(ctx, newJob(), "key-1")
	require.NoError(t, err)
	require.True(t, created)

	again, created, err := s.Create(ctx, newJob(), "key-1")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, again.ID)

	other := newJob()
	other.BodyHash = "h2"
	prev, created, err := s.Create(ctx, other, "key-1")
	require.ErrorIs(t, err, jobs.ErrIdempotencyMismatch)
	require.False(t, created)
	require.Equal(t, first.ID, prev.ID)

	n, err := rdb.ZCard(ctx, "test:jobs:all").Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	ttl, err := rdb.TTL(ctx, "test:idem:key-1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0), "idempotency keys expire")

	// Without a key every create is a new job.
	_, created, err = s.Create(ctx, newJob(), "")
	require.NoError(t, err)
	require.True(t, created)
}

func TestGetMissing(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	_, err := s.Get(context.Background(), jobs.NewID())
	require.True(t, errors.Is(err, jobs.ErrNotFound))
	_, err = s.Transition(context.Background(), jobs.NewID(), jobs.Submitted, "", nil, nil)
	require.ErrorIs(t, err, jobs.ErrNotFound)
}

func TestCreatedAtComesFromTheID(t *testing.T) {
	t.Parallel()
	before := time.Now().Add(-time.Millisecond)
	id := jobs.NewID()
	at, ok := jobs.CreatedAt(id)
	require.True(t, ok)
	require.False(t, at.Before(before))
	_, ok = jobs.CreatedAt("not-an-id")
	require.False(t, ok)
	_, ok = jobs.CreatedAt("6ba7b810-9dad-11d1-80b4-00c04fd430c8") // v1
	require.False(t, ok)
}

func BenchmarkTransition(b *testing.B) {
	rs := testenv.Redis(b, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	s := jobs.NewStore(rdb, "bench:")
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		j, _, err := s.Create(ctx, newJob(), "")
		require.NoError(b, err)
		ids[i] = j.ID
	}
	b.ResetTimer()
	for i := range b.N {
		if err := s.TransitionIf(ctx, ids[i], jobs.Queued, jobs.Submitted, "", jobs.Fields{"nonce", i}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// A corrupt numeric field is an error, not a silent zero.
func TestCorruptRecordIsAnError(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	j, _, err := s.Create(ctx, newJob(), "")
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, s.JobKey(j.ID), "nonce", "seven").Err())
	_, err = s.Get(ctx, j.ID)
	require.ErrorContains(t, err, "field nonce")
}
