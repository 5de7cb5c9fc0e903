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
