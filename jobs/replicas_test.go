package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// A store that waits for one replica, on a primary that has none: every
// write still happens on the primary, but answers ErrNotReplicated, so
// nobody acts on it (answers 202, broadcasts) yet.
func TestWithReplicasNoReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := testenv.Redis(t, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	s := jobs.NewStore(rdb, "relayq:", jobs.WithReplicas(1, 20*time.Millisecond))
	plain := jobs.NewStore(rdb, "relayq:")

	j, created, err := s.Create(ctx, &jobs.Job{To: "0x1", BodyHash: "h1"}, "idem-1")
	require.ErrorIs(t, err, jobs.ErrNotReplicated)
	require.True(t, created)
	got, err := plain.Get(ctx, j.ID)
	require.NoError(t, err, "the job stands on the primary")
	require.Equal(t, jobs.Queued, got.Status)

	// The retry with the same key finds the job, and still cannot vouch for it.
	again, created, err := s.Create(ctx, &jobs.Job{To: "0x1", BodyHash: "h1"}, "idem-1")
	require.ErrorIs(t, err, jobs.ErrNotReplicated)
	require.False(t, created)
	require.Equal(t, j.ID, again.ID)
	// A different body with the same key is still a 409, not a 503.
	_, _, err = s.Create(ctx, &jobs.Job{To: "0x1", BodyHash: "h2"}, "idem-1")
	require.ErrorIs(t, err, jobs.ErrIdempotencyMismatch)

	_, err = s.Transition(ctx, j.ID, jobs.Submitted, "signed", jobs.Fields{"raw", "0xaa"}, nil)
	require.ErrorIs(t, err, jobs.ErrNotReplicated)
	got, err = plain.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Submitted, got.Status, "the transition happened on the primary")
	require.Equal(t, "0xaa", got.Raw)

	// A transition that does not apply says so, whatever the replicas.
	_, err = s.Transition(ctx, j.ID, jobs.Queued, "", nil, nil)
	require.Error(t, err)
	require.NotErrorIs(t, err, jobs.ErrNotReplicated)

	j2, _, err := plain.Create(ctx, &jobs.Job{To: "0x2"}, "")
	require.NoError(t, err)
	errs := s.TransitionMany(ctx, []jobs.Step{
		{ID: j2.ID, From: jobs.Queued, To: jobs.Submitted, Fields: jobs.Fields{"raw", "0xbb"}},
		{ID: j.ID, From: jobs.Queued, To: jobs.Submitted}, // already submitted
	})
	require.ErrorIs(t, errs[0], jobs.ErrNotReplicated)
	var bad *jobs.BadTransitionError
	require.ErrorAs(t, errs[1], &bad)
	got, err = plain.Get(ctx, j2.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Submitted, got.Status)

	require.ErrorIs(t, s.Replicated(ctx, j.ID, "raw", "0xaa"), jobs.ErrNotReplicated)
	require.ErrorIs(t, s.Replicated(ctx, j.ID, "raw", "0xcc"), jobs.ErrChanged)
	require.ErrorIs(t, s.Replicated(ctx, jobs.NewID(), "", ""), jobs.ErrNotFound)
	require.NoError(t, plain.Replicated(ctx, j.ID, "raw", "0xcc"), "a store that does not wait checks nothing")
}

// With a replica attached the same writes succeed, and the replica has
// them by the time they return — also when the primary has forgotten the
// scripts, as a freshly promoted one has.
func TestWithReplicasReplicaAcknowledges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := testenv.Redis(t, testenv.WithoutAOF())
	replica := testenv.RedisReplica(t, primary, testenv.WithoutAOF())
	rdb := redis.NewClient(&redis.Options{Addr: primary.Addr()})
	defer rdb.Close()
	rr := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer rr.Close()
	s := jobs.NewStore(rdb, "relayq:", jobs.WithReplicas(1, 2*time.Second))
	onReplica := jobs.NewStore(rr, "relayq:")

	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	j, created, err := s.Create(ctx, &jobs.Job{To: "0x1", BodyHash: "h"}, "k")
	require.NoError(t, err)
	require.True(t, created)
	// WAIT returned: the replica has processed the job's write.
	got, err := onReplica.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, got.Status)
	again, created, err := s.Create(ctx, &jobs.Job{To: "0x1", BodyHash: "h"}, "k")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, j.ID, again.ID)

	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	_, err = s.Transition(ctx, j.ID, jobs.Submitted, "signed", jobs.Fields{"raw", "0xaa"}, nil)
	require.NoError(t, err)
	got, err = onReplica.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, "0xaa", got.Raw)

	j2, _, err := s.Create(ctx, &jobs.Job{To: "0x2"}, "")
	require.NoError(t, err)
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	for _, err := range s.TransitionMany(ctx, []jobs.Step{{ID: j2.ID, From: jobs.Queued, To: jobs.Submitted, Fields: jobs.Fields{"raw", "0xbb"}}}) {
		require.NoError(t, err)
	}
	got, err = onReplica.Get(ctx, j2.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Submitted, got.Status)

	require.NoError(t, rdb.ScriptFlush(ctx).Err())
	require.NoError(t, s.Replicated(ctx, j2.ID, "raw", "0xbb"))
	require.ErrorIs(t, s.Replicated(ctx, j2.ID, "raw", "0xcc"), jobs.ErrChanged)
}

// On a Redis Cluster the WAIT must follow the write on the primary of the
// deployment's slot, whose replicas are the ones that count: with one
// replica per master, waiting for one succeeds and the replica has the
// job; waiting for two cannot, and says so (instead of a MOVED error from
// a write sent to the wrong node).
func TestWithReplicasOnCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rc := testenv.StartRedisCluster(t, 3, 1, testenv.WithoutAOF())
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	defer cc.Close()
	const prefix = "{relayq}:" // one hash tag per deployment (internal/redisconn)
	s := jobs.NewStore(cc, prefix, jobs.WithReplicas(1, 2*time.Second))

	require.NoError(t, cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.ScriptFlush(ctx).Err() }))
	j, created, err := s.Create(ctx, &jobs.Job{To: "0x1", BodyHash: "h"}, "k")
	require.NoError(t, err)
	require.True(t, created)
	j2, _, err := s.Create(ctx, &jobs.Job{To: "0x2"}, "")
	require.NoError(t, err)
	for _, err := range s.TransitionMany(ctx, []jobs.Step{
		{ID: j.ID, From: jobs.Queued, To: jobs.Submitted, Fields: jobs.Fields{"raw", "0xaa"}},
		{ID: j2.ID, From: jobs.Queued, To: jobs.Submitted, Fields: jobs.Fields{"raw", "0xbb"}},
	}) {
		require.NoError(t, err)
	}
	require.NoError(t, s.Replicated(ctx, j.ID, "raw", "0xaa"))

	// The replica of the slot's primary has both jobs, and the status
	// index the transition script wrote through a name it got in ARGV.
	primary, err := cc.MasterForKey(ctx, prefix)
	require.NoError(t, err)
	var replica *redis.Client
	var replicaServer *testenv.RedisServer
	for i, addr := range rc.Addrs() {
		c := redis.NewClient(&redis.Options{Addr: addr, OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.ReadOnly(ctx).Err() // a cluster replica serves reads only when asked
		}})
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		require.NoError(t, err)
		if strings.Contains(info, "master_port:"+portOf(primary.Options().Addr)+"\r") {
			replica, replicaServer = c, rc.Nodes[i]
		}
	}
	require.NotNil(t, replica, "the slot's primary has a replica")
	got, err := replica.HGet(ctx, prefix+"job:{"+j2.ID+"}", "raw").Result()
	require.NoError(t, err)
	require.Equal(t, "0xbb", got)
	require.EqualValues(t, 2, replica.ZCard(ctx, prefix+"jobs:status:submitted").Val())

	// That replica stops acknowledging (the other masters' replicas do
	// not count): the write is not vouched for until it is back.
	replicaServer.Pause()
	_, _, err = jobs.NewStore(cc, prefix, jobs.WithReplicas(1, 200*time.Millisecond)).Create(ctx, &jobs.Job{To: "0x4"}, "")
	replicaServer.Resume()
	require.ErrorIs(t, err, jobs.ErrNotReplicated)

	two := jobs.NewStore(cc, prefix, jobs.WithReplicas(2, 20*time.Millisecond))
	_, _, err = two.Create(ctx, &jobs.Job{To: "0x3"}, "")
	require.ErrorIs(t, err, jobs.ErrNotReplicated)
	require.ErrorIs(t, two.Replicated(ctx, j.ID, "raw", "0xaa"), jobs.ErrNotReplicated)
}

func portOf(addr string) string {
	_, port, _ := strings.Cut(addr, ":")
	return port
}
