package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRateLimitAndRequestTimeout(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_API_KEYS": "0123456789abcdef"}
	c, err := FromEnv(env(base))
	require.NoError(t, err)
	require.Equal(t, uint64(DefaultRateLimit), c.RateLimit)
	require.Equal(t, uint64(DefaultRateBurst), c.RateBurst)
	require.Equal(t, DefaultRequestTimeout, c.RequestTimeout)
	require.NoError(t, c.Check(RoleAPI))

	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err = FromEnv(env(with("RELAYQ_RATE_LIMIT", "0", "RELAYQ_RATE_BURST", "0", "RELAYQ_REQUEST_TIMEOUT", "2s")))
	require.NoError(t, err)
	require.Zero(t, c.RateLimit)
	require.Equal(t, 2*time.Second, c.RequestTimeout)
	require.NoError(t, c.Check(RoleAPI), "with the limit off the burst does not matter")

	_, err = FromEnv(env(with("RELAYQ_RATE_LIMIT", "-1", "RELAYQ_REQUEST_TIMEOUT", "fast")))
	require.ErrorContains(t, err, "RELAYQ_RATE_LIMIT")
	require.ErrorContains(t, err, "RELAYQ_REQUEST_TIMEOUT")

	c, err = FromEnv(env(with("RELAYQ_RATE_LIMIT", "2000000", "RELAYQ_REQUEST_TIMEOUT", "1m")))
	require.NoError(t, err)
	err = c.Check(RoleAPI)
	require.ErrorContains(t, err, "RELAYQ_RATE_LIMIT:")
	require.ErrorContains(t, err, "RELAYQ_REQUEST_TIMEOUT:")
	if err := c.Check(RoleWorker); err != nil { // it lacks keys
		require.NotContains(t, err.Error(), "RELAYQ_RATE_LIMIT", "a worker serves no requests")
		require.NotContains(t, err.Error(), "RELAYQ_REQUEST_TIMEOUT", "a worker serves no requests")
	}

	c, err = FromEnv(env(with("RELAYQ_RATE_BURST", "0")))
	require.NoError(t, err)
	require.ErrorContains(t, c.Check(RoleAPI), "RELAYQ_RATE_BURST:")
}
