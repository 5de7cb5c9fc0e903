package nonce_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/nonce"
)

var signer = common.HexToAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")

func setup(t testing.TB) (*nonce.Allocator, *redis.Client) {
	t.Helper()
	rs := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return nonce.New(rdb, "test:", 31337, signer), rdb
}

// queuedJob writes the minimal job record the reserve script checks.
func queuedJob(t testing.TB, rdb *redis.Client, id string) string {
	key := "test:job:{" + id + "}"
	require.NoError(t, rdb.HSet(context.Background(), key, "status", "queued").Err())
	return key
}

func TestReserveNeedsReconcileFirst(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	_, err := a.Reserve(ctx, "j1", queuedJob(t, rdb, "j1"))
	require.ErrorIs(t, err, nonce.ErrNotInitialized)
	next, err := a.Reconcile(ctx, 5)
	require.NoError(t, err)
	require.Equal(t, uint64(5), next)
	n, err := a.Reserve(ctx, "j1", queuedJob(t, rdb, "j1"))
	require.NoError(t, err)
	require.Equal(t, uint64(5), n)
}

// Workers in many processes reserve concurrently: every job gets one nonce,
// a retried reservation gets the same one, and the sequence has no gap.
func TestConcurrentReservationsAreContiguous(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	_, err := a.Reconcile(ctx, 0)
	require.NoError(t, err)
	const workers, per = 16, 50
	got := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker uses its own allocator value, as another process would.
			mine := nonce.New(rdb, "test:", 31337, signer)
			for i := range per {
				id := fmt.Sprintf("w%d-%d", w, i)
				key := queuedJob(t, rdb, id)
				n1, err := mine.Reserve(ctx, id, key)
				require.NoError(t, err)
				n2, err := mine.Reserve(ctx, id, key) // a retry
				require.NoError(t, err)
				require.Equal(t, n1, n2)
				got[w] = append(got[w], n1)
			}
		}()
	}
	wg.Wait()
	var all []uint64
	for _, g := range got {
		all = append(all, g...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, n := range all {
		require.Equal(t, uint64(i), n)
	}
	next, ok, err := a.Next(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(workers*per), next)
	count, err := a.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(workers*per), count)
}

func TestReserveRefusesAJobThatIsNoLongerQueued(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	_, err := a.Reconcile(ctx, 0)
	require.NoError(t, err)
	key := queuedJob(t, rdb, "done")
	require.NoError(t, rdb.HSet(ctx, key, "status", "confirmed").Err())
	_, err = a.Reserve(ctx, "done", key)
	require.ErrorIs(t, err, nonce.ErrNotQueued)
	next, _, err := a.Next(ctx)
	require.NoError(t, err)
	require.Zero(t, next, "no nonce was used")
}

func TestReconcileNeverLowers(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	_, err := a.Reconcile(ctx, 10)
	require.NoError(t, err)
	for i := range 3 {
		_, err := a.Reserve(ctx, fmt.Sprint(i), queuedJob(t, rdb, fmt.Sprint(i)))
		require.NoError(t, err)
	}
	// The chain has not seen 10..12 yet: they are bound, so next stays 13.
	next, err := a.Reconcile(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, uint64(13), next)
	// Someone used the key outside relayq up to 20: next jumps.
	next, err = a.Reconcile(ctx, 20)
	require.NoError(t, err)
	require.Equal(t, uint64(20), next)
}

func TestBelowAndRelease(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	_, err := a.Reconcile(ctx, 0)
	require.NoError(t, err)
	for i := range 5 {
		_, err := a.Reserve(ctx, fmt.Sprint(i), queuedJob(t, rdb, fmt.Sprint(i)))
		require.NoError(t, err)
	}
	below, err := a.Below(ctx, 3, 100)
	require.NoError(t, err)
	require.Equal(t, []nonce.InFlight{{JobID: "0", Nonce: 0}, {JobID: "1", Nonce: 1}, {JobID: "2", Nonce: 2}}, below)
	none, err := a.Below(ctx, 0, 100)
	require.NoError(t, err)
	require.Empty(t, none)
	require.NoError(t, a.Release(ctx, "1"))
	below, err = a.Below(ctx, 3, 100)
	require.NoError(t, err)
	require.Len(t, below, 2)
	_, bound, err := a.Bound(ctx, "1")
	require.NoError(t, err)
	require.False(t, bound)
	n, bound, err := a.Bound(ctx, "4")
	require.NoError(t, err)
	require.True(t, bound)
	require.Equal(t, uint64(4), n)
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	_, rdb := setup(t)
	r := nonce.NewRegistry(rdb, "test:")
	ctx := context.Background()
	require.NoError(t, r.Register(ctx, 31337, []common.Address{signer}))
	m, err := r.Signers(ctx)
	require.NoError(t, err)
	require.Equal(t, map[common.Address]uint64{signer: 31337}, m)
}

func BenchmarkReserve(b *testing.B) {
	a, rdb := setup(b)
	ctx := context.Background()
	if _, err := a.Reconcile(ctx, 0); err != nil {
		b.Fatal(err)
	}
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = queuedJob(b, rdb, fmt.Sprint(i))
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := a.Reserve(ctx, fmt.Sprint(i), keys[i]); err != nil {
			b.Fatal(err)
		}
	}
}

// A paused mark expires unless renewed, so no process can leave a signer
// marked paused for good.
func TestPausedMarkExpires(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	require.NoError(t, a.SetPaused(ctx, "insufficient funds"))
	why, err := a.Paused(ctx)
	require.NoError(t, err)
	require.Equal(t, "insufficient funds", why)
	ttl, err := rdb.PTTL(ctx, a.KeyTag()+"paused").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0))
	require.LessOrEqual(t, ttl, nonce.PausedTTL)
	require.NoError(t, a.SetPaused(ctx, ""))
	why, err = a.Paused(ctx)
	require.NoError(t, err)
	require.Empty(t, why)
}
