package nonce_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/nonce"
)

// ReserveMany hands out contiguous nonces in order, gives a job that holds
// one the same nonce back, skips jobs that are not queued, and refuses to
// start before a reconcile.
func TestReserveMany(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	k1, k2, k3 := queuedJob(t, rdb, "m1"), queuedJob(t, rdb, "m2"), queuedJob(t, rdb, "m3")
	_, err := a.ReserveMany(ctx, []string{"m1"}, []string{k1})
	require.ErrorIs(t, err, nonce.ErrNotInitialized)

	_, err = a.Reconcile(ctx, 7)
	require.NoError(t, err)
	n1, err := a.Reserve(ctx, "m1", k1)
	require.NoError(t, err)
	require.Equal(t, uint64(7), n1)
	require.NoError(t, rdb.HSet(ctx, k3, "status", "cancelled").Err())

	k4 := queuedJob(t, rdb, "m4")
	res, err := a.ReserveMany(ctx, []string{"m2", "m1", "m3", "m4"}, []string{k2, k1, k3, k4})
	require.NoError(t, err)
	require.Equal(t, []nonce.Reservation{{Nonce: 8}, {Nonce: 7}, {Err: nonce.ErrNotQueued}, {Nonce: 9}}, res)
	require.True(t, errors.Is(res[2].Err, nonce.ErrNotQueued))

	next, ok, err := a.Next(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(10), next)
	from, err := rdb.HGet(ctx, k4, "from").Result()
	require.NoError(t, err)
	require.Equal(t, signer.Hex(), from)
	n, bound, err := a.Bound(ctx, "m4")
	require.NoError(t, err)
	require.True(t, bound)
	require.Equal(t, uint64(9), n)

	_, err = a.ReserveMany(ctx, []string{"x"}, nil)
	require.Error(t, err)
}

// BenchmarkReserveMany is the batched reservation of the send path, 64 jobs
// a call; ns/op is per job, to compare with BenchmarkReserve.
func BenchmarkReserveMany(b *testing.B) {
	a, rdb := setup(b)
	ctx := context.Background()
	if _, err := a.Reconcile(ctx, 0); err != nil {
		b.Fatal(err)
	}
	const batch = 64
	ids := make([]string, b.N)
	keys := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("r%d", i)
		keys[i] = queuedJob(b, rdb, ids[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		if _, err := a.ReserveMany(ctx, ids[i:i+n], keys[i:i+n]); err != nil {
			b.Fatal(err)
		}
	}
}

// A job takes nonces from one signer only: once another signer's
// reservation (or the request) pinned its "from", this signer refuses it
// and binds nothing.
func TestReserveManyRefusesAJobPinnedElsewhere(t *testing.T) {
	t.Parallel()
	a, rdb := setup(t)
	ctx := context.Background()
	_, err := a.Reconcile(ctx, 0)
	require.NoError(t, err)
	other := nonce.New(rdb, "test:", 31337, common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"))
	_, err = other.Reconcile(ctx, 0)
	require.NoError(t, err)

	k := queuedJob(t, rdb, "p1")
	n, err := other.Reserve(ctx, "p1", k)
	require.NoError(t, err)
	require.Equal(t, uint64(0), n)
	_, err = a.Reserve(ctx, "p1", k)
	require.ErrorIs(t, err, nonce.ErrOtherSigner)
	_, bound, err := a.Bound(ctx, "p1")
	require.NoError(t, err)
	require.False(t, bound, "nothing bound on the refusing signer")
	next, _, err := a.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(0), next, "no nonce used up")

	// A request's own lower-case from pins it just the same.
	k2 := queuedJob(t, rdb, "p2")
	require.NoError(t, rdb.HSet(ctx, k2, "from", strings.ToLower(signer.Hex())).Err())
	n, err = a.Reserve(ctx, "p2", k2)
	require.NoError(t, err, "its own signer, in any case")
	require.Equal(t, uint64(0), n)
}
