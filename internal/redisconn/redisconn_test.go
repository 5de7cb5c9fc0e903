package redisconn

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestParseSentinel(t *testing.T) {
	c, err := Parse("redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster?db=2&sentinel_password=sp&pool_size=7&read_timeout=2s&dial_timeout=4")
	require.NoError(t, err)
	require.Equal(t, Sentinel, c.Mode())
	require.Equal(t, []string{"10.0.0.1:26379", "10.0.0.2:26379", "[::1]:26380"}, c.Addrs())
	require.Equal(t, 2*time.Second, c.ReadTimeout())

	rdb := c.Client(100)
	defer rdb.Close()
	cl, ok := rdb.(*redis.Client)
	require.True(t, ok, "a Sentinel URL gives a failover *redis.Client, got %T", rdb)
	require.Equal(t, 7, cl.Options().PoolSize, "pool_size in the URL wins over the minimum")
	require.Equal(t, 2, cl.Options().DB)
	require.Equal(t, "s3cret", cl.Options().Password)

	opt, ok := c.AsynqOpt().(asynq.RedisFailoverClientOpt)
	require.True(t, ok, "%T", c.AsynqOpt())
	require.Equal(t, "mymaster", opt.MasterName)
	require.Equal(t, []string{"10.0.0.1:26379", "10.0.0.2:26379", "[::1]:26380"}, opt.SentinelAddrs)
	require.Equal(t, "sp", opt.SentinelPassword)
	require.Equal(t, "s3cret", opt.Password)
	require.Equal(t, 2, opt.DB)
	require.Equal(t, 4*time.Second, opt.DialTimeout)
	require.Nil(t, opt.TLSConfig)
	require.Equal(t, "relayq:", c.KeyPrefix("relayq:"), "only a cluster changes the prefix")
}

func TestParseCluster(t *testing.T) {
	c, err := Parse("rediss-cluster://app:p%40ss@node1:7000,node2:7001,node3")
	require.NoError(t, err)
	require.Equal(t, Cluster, c.Mode())
	require.Equal(t, []string{"node1:7000", "node2:7001", "node3:6379"}, c.Addrs())
	require.Equal(t, defaultReadTimeout, c.ReadTimeout())

	rdb := c.Client(160)
	defer rdb.Close()
	cc, ok := rdb.(*redis.ClusterClient)
	require.True(t, ok, "%T", rdb)
	require.Equal(t, 160, cc.Options().PoolSize, "the minimum pool applies when the URL sets none")
	require.Equal(t, "app", cc.Options().Username)
	require.Equal(t, "p@ss", cc.Options().Password)
	require.NotNil(t, cc.Options().TLSConfig)

	opt, ok := c.AsynqOpt().(asynq.RedisClusterClientOpt)
	require.True(t, ok, "%T", c.AsynqOpt())
	require.Equal(t, []string{"node1:7000", "node2:7001", "node3:6379"}, opt.Addrs)
	require.Equal(t, "p@ss", opt.Password)
	require.NotNil(t, opt.TLSConfig)

	require.Equal(t, "{relayq}:", c.KeyPrefix("relayq:"))
	require.Equal(t, "{app:relayq}:", c.KeyPrefix("app:relayq:"))
	require.Equal(t, "{relayq}:", c.KeyPrefix("{relayq}:"), "a prefix is tagged once")
}

func TestParseStandalone(t *testing.T) {
	for _, tc := range []struct {
		url      string
		addr     string
		db, pool int
		tls      bool
	}{
		{"redis://127.0.0.1:6379/0", "127.0.0.1:6379", 0, 50, false},
		{"redis://:pw@localhost/3?pool_size=9", "localhost:6379", 3, 9, false},
		{"rediss://user:pw@cache.example:6380", "cache.example:6380", 0, 50, true},
		{"unix:///run/redis.sock?db=1", "/run/redis.sock", 1, 50, false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			c, err := Parse(tc.url)
			require.NoError(t, err)
			require.Equal(t, Standalone, c.Mode())
			rdb := c.Client(50)
			defer rdb.Close()
			cl := rdb.(*redis.Client)
			require.Equal(t, tc.addr, cl.Options().Addr)
			require.Equal(t, tc.db, cl.Options().DB)
			require.Equal(t, tc.pool, cl.Options().PoolSize)
			opt := c.AsynqOpt().(asynq.RedisClientOpt)
			require.Equal(t, tc.addr, opt.Addr)
			require.Equal(t, tc.db, opt.DB)
			require.Equal(t, tc.tls, opt.TLSConfig != nil)
			require.Equal(t, "relayq:", c.KeyPrefix("relayq:"))
		})
	}
}

// Every bad URL is refused with a message that says what to change, and
// never repeats the password.
func TestParseRejects(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "not a URL"},
		{"localhost:6379", "not a URL"},
		{"http://localhost:6379", `unknown scheme "http"`},
		{"redis-sentinel://h1:26379,h2:26379", "no master name"},
		{"redis-sentinel://h1:26379/", "no master name"},
		{"redis-sentinel://h1:26379/a/b", "no master name"},
		{"redis-sentinel:///mymaster", "no host"},
		{"redis-sentinel://:pw@/mymaster", "no host"},
		{"redis-sentinel://h1:26379,,h2/mymaster", "empty host"},
		{"redis-sentinel://h1:26379,/mymaster", "empty host"},
		{"redis-sentinel://h1:notaport/mymaster", `port "notaport"`},
		{"redis-sentinel://h1:70000/mymaster", `port "70000"`},
		{"redis-sentinel://:1/mymaster", "no host name"},
		{"redis-sentinel://h1/mymaster?db=x", `db="x"`},
		{"redis-sentinel://h1/mymaster?db=-1", `db="-1"`},
		{"redis-sentinel://h1/mymaster?master=m", "unknown parameter master"},
		{"redis-sentinel://h1/mymaster?read_timeout=soon", `read_timeout="soon"`},
		{"redis-sentinel://h1/mymaster?pool_size=0", `pool_size="0"`},
		{"redis-sentinel://:pw#x@h1/mymaster", "fragment"},
		{"redis-cluster://n1:7000/1", "only database 0"},
		{"redis-cluster://n1:7000?db=1", "unknown parameter db"},
		{"redis-cluster://n1:7000?sentinel_password=x", "unknown parameter sentinel_password"},
		{"redis-cluster://", "no host"},
		{"redis://:secretpw@h1:6379,h2:6379/0", "names one server"},
		{"redis://h1:6379/0?nonsense=1", "unexpected option"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Parse(tc.url)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "secretpw")
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379/0":                               "redis://127.0.0.1:6379/0",
		"redis://:pw@h:6379/0":                                   "redis://:***@h:6379/0",
		"redis://user:pw@h:6379/0":                               "redis://user:***@h:6379/0",
		"redis://user@h:6379/0":                                  "redis://user@h:6379/0",
		"redis-sentinel://:pw@h1,h2/m?sentinel_password=sp&db=1": "redis-sentinel://:***@h1,h2/m?sentinel_password=***&db=1",
		"redis-cluster://:p@w@n1:7000":                           "redis-cluster://:***@n1:7000",
		"not a url":                                              "not a url",
	} {
		require.Equal(t, want, Redact(in), in)
	}
}
