package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// newClusterOn is newCluster on a Redis deployment the test started itself
// (Sentinel, Cluster): one `relayq api` and workers `relayq worker`
// processes with REDIS_URL=redisURL and env, on anvil with 1 s blocks and
// the sample contract, whose address it returns.
func newClusterOn(t *testing.T, redisURL string, workers int, env ...string) (*cluster, string) {
	t.Helper()
	return newCluster(t, clusterOptions{
		workers: workers, anvilArgs: []string{"--block-time", "1"}, redisURL: redisURL,
		env: append([]string{"RELAYQ_RATE_LIMIT=0"}, env...),
	})
}

// TestRedisCluster runs the core flow on a three-master Redis Cluster:
// relayq processes with REDIS_URL=redis-cluster://…, 100 jobs, all
// confirmed, once each, at contiguous nonces. Every relayq key carries the
// deployment's one hash tag ({relayq}), so all of them sit in one slot on
// one node, and the transition script's writes to keys it is only told in
// ARGV (the status indexes) really run there.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	rc := testenv.StartRedisCluster(t, 3, 0, testenv.WithoutAOF())
	c, counter := newClusterOn(t, rc.URL(), 2)
	const n = 100
	ids := c.post(n, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter))
	all := c.waitAll(ids, 2*time.Minute)
	requireOncePerNonce(t, all, n)
	c.requireExecutedOnce(n, counter)

	// Where the keys are.
	ctx := context.Background()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer cc.Close()
	slot, err := cc.ClusterKeySlot(ctx, "relayq").Result()
	require.NoError(t, err)
	owner, err := cc.MasterForKey(ctx, "{relayq}:")
	require.NoError(t, err)
	var keys []string
	var mu sync.Mutex // ForEachMaster calls concurrently
	require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		var found []string
		iter := m.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			if k := iter.Val(); strings.Contains(k, "relayq:") || strings.HasPrefix(k, "{relayq}") {
				found = append(found, k)
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		if m.Options().Addr != owner.Options().Addr {
			for _, k := range found {
				if !strings.HasPrefix(k, "asynq:") {
					return fmt.Errorf("relayq key %q on node %s, not on the owner of slot %d", k, m.Options().Addr, slot)
				}
			}
			return nil
		}
		mu.Lock()
		keys = append(keys, found...)
		mu.Unlock()
		return nil
	}))
	var relayqKeys int
	for _, k := range keys {
		if strings.HasPrefix(k, "asynq:") {
			continue
		}
		relayqKeys++
		require.True(t, strings.HasPrefix(k, "{relayq}:"), "key %q lacks the deployment's hash tag", k)
		ks, err := cc.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		require.Equal(t, slot, ks, "key %q", k)
	}
	require.Greater(t, relayqKeys, 3*n, "every job's record, history and attempts were found")
	// Written by the transition script through names it got in ARGV.
	require.EqualValues(t, n, cc.ZCard(ctx, "{relayq}:jobs:status:confirmed").Val())
	require.Zero(t, cc.ZCard(ctx, "{relayq}:jobs:status:queued").Val())
	code, b, err := c.request(http.MethodGet, "/v1/jobs?status=confirmed&limit=500", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, string(b))
	var list struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	require.NoError(t, jsonUnmarshal(b, &list))
	require.Len(t, list.Jobs, n)
	// The monitor reads Asynq's queues through the cluster too.
	code, b, err = c.request(http.MethodGet, "/monitor/api/queues", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, string(b))
	require.Contains(t, string(b), `"relayq"`)
}
