package testenv_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
)

// A replica receives the primary's writes; when the primary dies, the
// sentinels promote it.
func TestSentinelsFailOverToTheReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := testenv.Redis(t, testenv.WithoutAOF())
	replica := testenv.RedisReplica(t, primary, testenv.WithoutAOF())
	p := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	defer p.Close()
	require.NoError(t, p.Set(ctx, "k", "v", 0).Err())
	n, err := p.Wait(ctx, 1, 5*time.Second).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the replica acknowledged the write")
	r := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer r.Close()
	require.Equal(t, "v", r.Get(ctx, "k").Val())

	s := testenv.StartSentinels(t, primary, 1, testenv.SentinelOptions{})
	require.Len(t, s.Addrs(), 3)
	addr, err := s.PrimaryAddr(ctx)
	require.NoError(t, err)
	require.Equal(t, primary.Addr(), addr)

	primary.Kill()
	now, err := s.WaitPrimary(primary.Addr(), 30*time.Second)
	require.NoError(t, err)
	require.Equal(t, replica.Addr(), now)
	require.Equal(t, "v", r.Get(ctx, "k").Val())
	require.NoError(t, r.Set(ctx, "k2", "v2", 0).Err(), "the promoted replica takes writes")
}

// A cluster of three masters serves every slot, and a key goes to the
// node that owns its slot.
func TestRedisClusterForms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.StartRedisCluster(t, 3, 0, testenv.WithoutAOF())
	require.Len(t, c.Addrs(), 3)
	require.Contains(t, c.URL(), "redis-cluster://127.0.0.1:")
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()
	var masters atomic.Int32 // ForEachMaster calls concurrently
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		masters.Add(1)
		return nil
	}))
	require.EqualValues(t, 3, masters.Load())
	for _, k := range []string{"a", "b", "c", "{relayq}:x"} {
		require.NoError(t, cc.Set(ctx, k, k, 0).Err())
		require.Equal(t, k, cc.Get(ctx, k).Val())
	}
}
