package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// RELAYQ_PPROF_LISTEN is off unless set, and a value that is not host:port
// stops the process at start.
func TestPprofListen(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_PRIVATE_KEYS": "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"}
	c, err := FromEnv(env(base))
	require.NoError(t, err)
	require.Empty(t, c.PprofListen)
	require.NoError(t, c.Check(RoleWorker))

	base["RELAYQ_PPROF_LISTEN"] = "127.0.0.1:6060"
	c, err = FromEnv(env(base))
	require.NoError(t, err)
	require.NoError(t, c.Check(RoleWorker))

	base["RELAYQ_PPROF_LISTEN"] = "6060"
	c, err = FromEnv(env(base))
	require.NoError(t, err)
	require.ErrorContains(t, c.Check(RoleWorker), "RELAYQ_PPROF_LISTEN")
}

// RELAYQ_JOB_RETENTION: 7 days unless set, 0 keeps jobs forever, and less
// than a day is refused (an Idempotency-Key is remembered 24 h, and a retry
// with it must still find its job).
func TestJobRetention(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_PRIVATE_KEYS": "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"}
	c, err := FromEnv(env(base))
	require.NoError(t, err)
	require.Equal(t, DefaultJobRetention, c.JobRetention)
	for v, ok := range map[string]bool{"0": true, "24h": true, "720h": true, "1h": false, "30m": false} {
		base["RELAYQ_JOB_RETENTION"] = v
		c, err := FromEnv(env(base))
		require.NoError(t, err, v)
		if ok {
			require.NoError(t, c.Check(RoleWorker), v)
		} else {
			require.ErrorContains(t, c.Check(RoleWorker), "RELAYQ_JOB_RETENTION", v)
		}
	}
}

// RELAYQ_RPC_URL may list several endpoints, primary first; each is checked,
// and a repeated or empty list is refused.
func TestRPCURLList(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RELAYQ_PRIVATE_KEYS": "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"}
	for v, want := range map[string]string{
		"http://a:8545, http://b:8545":  "",
		"http://a:8545,nope":            "RELAYQ_RPC_URL",
		"http://a:8545,http://a:8545":   "RELAYQ_RPC_URL",
		",":                             "RELAYQ_RPC_URL",
		"ws://a:8546,https://b.example": "",
	} {
		base["RELAYQ_RPC_URL"] = v
		c, err := FromEnv(env(base))
		require.NoError(t, err, v)
		if want == "" {
			require.NoError(t, c.Check(RoleWorker), v)
			require.Len(t, c.Chains[0].RPCURLs, 2, v)
		} else {
			require.ErrorContains(t, c.Check(RoleWorker), want, v)
		}
	}
}
