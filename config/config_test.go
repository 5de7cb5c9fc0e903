package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := FromEnv(env(map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_PRIVATE_KEYS": "k1, k2 ,", "RELAYQ_API_KEYS": "0123456789abcdef"}))
	require.NoError(t, err)
	require.Equal(t, DefaultRedisURL, c.RedisURL)
	require.Equal(t, DefaultListen, c.Listen)
	require.Len(t, c.Chains, 1)
	ch := c.Chains[0]
	require.Equal(t, DefaultChainName, ch.Name)
	require.Equal(t, uint64(1), ch.Confirmations)
	require.Equal(t, []string{"k1", "k2"}, ch.PrivateKeys)
	require.Equal(t, time.Second, ch.PollInterval)
	require.Equal(t, uint64(500e9), ch.MaxFeePerGasWei)
	require.NoError(t, c.Check(RoleServe))
}

// Every bad variable is reported at once, by name.
func TestCheckNamesEveryBadVariable(t *testing.T) {
	t.Parallel()
	_, err := FromEnv(env(map[string]string{
		"RELAYQ_CONFIRMATIONS": "many",
		"RELAYQ_POLL_INTERVAL": "soon",
	}))
	require.Error(t, err)
	require.Contains(t, err.Error(), "RELAYQ_CONFIRMATIONS")
	require.Contains(t, err.Error(), "RELAYQ_POLL_INTERVAL")

	c, err := FromEnv(env(map[string]string{
		"REDIS_URL":                 "http://nope",
		"RELAYQ_RPC_URL":            "localhost:8545",
		"RELAYQ_LISTEN":             "8080",
		"RELAYQ_API_KEYS":           "short",
		"RELAYQ_WORKER_CONCURRENCY": "0",
		"RELAYQ_LOG_LEVEL":          "loud",
		"RELAYQ_REDIS_PREFIX":       "{bad}",
	}))
	require.NoError(t, err)
	err = c.Check(RoleServe)
	require.Error(t, err)
	for _, name := range []string{"REDIS_URL", "RELAYQ_RPC_URL", "RELAYQ_LISTEN", "RELAYQ_API_KEYS", "RELAYQ_PRIVATE_KEYS", "RELAYQ_WORKER_CONCURRENCY", "RELAYQ_LOG_LEVEL", "RELAYQ_REDIS_PREFIX"} {
		require.Contains(t, err.Error(), name+":")
	}
}

func TestAuthIsRequiredUnlessExplicitlyDisabled(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545"}
	c, err := FromEnv(env(base))
	require.NoError(t, err)
	err = c.Check(RoleAPI)
	require.ErrorContains(t, err, "RELAYQ_API_KEYS")
	require.ErrorContains(t, err, "RELAYQ_INSECURE_NO_AUTH")
	// The worker serves no HTTP and needs no API key.
	base["RELAYQ_PRIVATE_KEYS"] = "k"
	c, _ = FromEnv(env(base))
	require.NoError(t, c.Check(RoleWorker))
	base["RELAYQ_INSECURE_NO_AUTH"] = "1"
	c, _ = FromEnv(env(base))
	require.NoError(t, c.Check(RoleAPI))
}

// A node URL's secrets (user info, path, query) never reach a message
// about it, whatever is wrong with it.
func TestRPCURLMessagesAreRedacted(t *testing.T) {
	const secret = "cfg-S3CRET-41d2"
	for _, tc := range []struct{ name, urls, want string }{
		{"not http", "ftp://u:" + secret + "@x.example/v2/" + secret, `"ftp://x.example/…" is not an http(s)`},
		{"no scheme", "x.example/v2/" + secret, `"…" is not an http(s)`},
		{"twice", "https://x.example/v2/" + secret + "?k=" + secret + ",https://X.example/v2/" + secret + "?k=" + secret, `"https://X.example/…" is listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromEnv(env(map[string]string{"RELAYQ_RPC_URL": tc.urls, "RELAYQ_INSECURE_NO_AUTH": "1"}))
			require.NoError(t, err)
			err = c.Check(RoleAPI)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), secret)
		})
	}
}
