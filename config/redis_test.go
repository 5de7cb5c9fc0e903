package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRedisModesAndReplicas(t *testing.T) {
	t.Parallel()
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_API_KEYS": "0123456789abcdef", "RELAYQ_PRIVATE_KEYS": "k"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	c, err := FromEnv(env(base(nil)))
	require.NoError(t, err)
	require.Zero(t, c.RedisMinReplicas, "no wait unless asked")
	require.Equal(t, DefaultRedisWaitTimeout, c.RedisWaitTimeout)

	for _, good := range []map[string]string{
		{"REDIS_URL": "redis-sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster?db=0", "RELAYQ_REDIS_MIN_REPLICAS": "1"},
		{"REDIS_URL": "redis-cluster://127.0.0.1:7000,127.0.0.1:7001", "RELAYQ_REDIS_MIN_REPLICAS": "1", "RELAYQ_REDIS_WAIT_TIMEOUT": "1s"},
		{"REDIS_URL": "rediss://:pw@cache:6380/0"},
	} {
		c, err := FromEnv(env(base(good)))
		require.NoError(t, err)
		require.NoError(t, c.Check(RoleServe), good["REDIS_URL"])
	}
	c, err = FromEnv(env(base(map[string]string{"RELAYQ_REDIS_MIN_REPLICAS": "2", "RELAYQ_REDIS_WAIT_TIMEOUT": "250ms"})))
	require.NoError(t, err)
	require.Equal(t, 2, c.RedisMinReplicas)
	require.Equal(t, 250*time.Millisecond, c.RedisWaitTimeout)

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"REDIS_URL": "redis-sentinel://:hunter2@h1:26379,h2:26379"}, "REDIS_URL: redis-sentinel://:***@h1:26379,h2:26379: no master name"},
		{map[string]string{"REDIS_URL": "redis-cluster://n1:7000/3"}, "only database 0"},
		{map[string]string{"REDIS_URL": "http://nope"}, "REDIS_URL: http://nope: unknown scheme"},
		{map[string]string{"RELAYQ_REDIS_MIN_REPLICAS": "17"}, "RELAYQ_REDIS_MIN_REPLICAS: 17 is not within 0..16"},
		{map[string]string{"RELAYQ_REDIS_WAIT_TIMEOUT": "5ms"}, "RELAYQ_REDIS_WAIT_TIMEOUT: 5ms is not within 10ms..2s"},
		{map[string]string{"RELAYQ_REDIS_WAIT_TIMEOUT": "3s"}, "RELAYQ_REDIS_WAIT_TIMEOUT: 3s is not within"},
		// The WAIT's answer must arrive within the socket's read timeout.
		{map[string]string{"REDIS_URL": "redis-sentinel://h/m?read_timeout=1s", "RELAYQ_REDIS_MIN_REPLICAS": "1", "RELAYQ_REDIS_WAIT_TIMEOUT": "900ms"}, "below two thirds of the Redis read timeout"},
		// ... and within the API request's deadline.
		{map[string]string{"RELAYQ_REDIS_MIN_REPLICAS": "1", "RELAYQ_REDIS_WAIT_TIMEOUT": "1s", "RELAYQ_REQUEST_TIMEOUT": "500ms"}, "shorter than RELAYQ_REQUEST_TIMEOUT"},
	} {
		c, err := FromEnv(env(base(tc.env)))
		require.NoError(t, err)
		err = c.Check(RoleServe)
		require.ErrorContains(t, err, tc.want)
		require.NotContains(t, err.Error(), "hunter2", "a password never reaches a message")
	}
	_, err = FromEnv(env(base(map[string]string{"RELAYQ_REDIS_MIN_REPLICAS": "one"})))
	require.ErrorContains(t, err, "RELAYQ_REDIS_MIN_REPLICAS")
}
