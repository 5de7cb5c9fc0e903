package worker

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// The tracker's cache: a record whose version is unchanged is not loaded
// again, one that changed is, a job no longer in flight is forgotten, and
// the tick gets copies, so what it writes into them never reaches the
// cache.
func TestTrackerReloadsOnlyChangedRecords(t *testing.T) {
	t.Parallel()
	rs := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	store := jobs.NewStore(rdb, "relayq:")
	ctx := context.Background()
	var ids []string
	for range 3 {
		j, _, err := store.Create(ctx, &jobs.Job{ChainID: 1, To: "0x00000000000000000000000000000000000000aa", Data: "0x", Value: "0"}, "")
		require.NoError(t, err)
		ids = append(ids, j.ID)
	}
	tr := &Tracker{w: &Worker{store: store}, cache: jobCache{}}
	loads := func() int64 {
		info, err := rdb.InfoMap(ctx, "commandstats").Result()
		require.NoError(t, err)
		n := int64(0)
		if v, ok := info["Commandstats"]["cmdstat_hgetall"]; ok {
			_, err := fmtSscanCalls(v, &n)
			require.NoError(t, err)
		}
		return n
	}

	first, err := tr.load(ctx, ids)
	require.NoError(t, err)
	require.Len(t, first, 3)
	before := loads()
	first[0].Status = jobs.Failed // the tick's own copy
	again, err := tr.load(ctx, ids)
	require.NoError(t, err)
	require.Equal(t, before, loads(), "nothing changed: nothing loaded whole")
	require.Equal(t, jobs.Queued, again[0].Status, "a change to the tick's copy is not in the cache")

	require.NoError(t, store.Update(ctx, ids[1], jobs.Queued, jobs.Fields{"warning", "w"}, nil))
	third, err := tr.load(ctx, ids[1:])
	require.NoError(t, err)
	require.Equal(t, before+1, loads(), "only the changed record is loaded")
	require.Equal(t, "w", third[0].Warning)
	require.Len(t, tr.cache, 2, "a job no longer in flight is forgotten")

	require.NoError(t, rdb.Del(ctx, store.JobKey(ids[2])).Err())
	gone, err := tr.load(ctx, ids[1:])
	require.NoError(t, err)
	require.Nil(t, gone[1], "a record that disappeared is not served from the cache")
}

// fmtSscanCalls reads "calls=N,..." of an INFO commandstats entry.
func fmtSscanCalls(v string, n *int64) (int, error) { return fmt.Sscanf(v, "calls=%d,", n) }
