package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// RELAYQ_ARCHIVE_URL is off by default; set, it must be a postgres URL, and
// RELAYQ_HOT_RETENTION (1h by default) must be at least a second.
func TestArchiveSettings(t *testing.T) {
	t.Parallel()
	base := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_PRIVATE_KEYS": key1, "RELAYQ_API_KEYS": "0123456789abcdef"}
	c, err := FromEnv(env(base))
	require.NoError(t, err)
	require.Empty(t, c.ArchiveURL)
	require.Equal(t, DefaultHotRetention, c.HotRetention)
	require.NoError(t, c.Check(RoleServe))

	for _, tc := range []struct {
		url, hot, bad string
	}{
		{url: "postgres://relayq@db:5432/relayq?sslmode=disable"},
		{url: "postgresql://db/relayq", hot: "10m"},
		{url: "mysql://db/relayq", bad: "RELAYQ_ARCHIVE_URL"},
		{url: "postgres://db/relayq", hot: "500ms", bad: "RELAYQ_HOT_RETENTION"},
	} {
		env2 := map[string]string{"RELAYQ_ARCHIVE_URL": tc.url, "RELAYQ_HOT_RETENTION": tc.hot}
		for k, v := range base {
			env2[k] = v
		}
		c, err := FromEnv(env(env2))
		require.NoError(t, err, tc.url)
		require.Equal(t, tc.url, c.ArchiveURL)
		if tc.bad == "" {
			require.NoError(t, c.Check(RoleServe), tc.url)
		} else {
			require.ErrorContains(t, c.Check(RoleServe), tc.bad)
		}
	}
	_, err = FromEnv(env(map[string]string{"RELAYQ_HOT_RETENTION": "soon"}))
	require.ErrorContains(t, err, "RELAYQ_HOT_RETENTION")
}

// archive_url in relayq.yaml sets the archive; the variable wins over it.
func TestFileArchiveURL(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "archive_url: postgres://file/relayq\n"+twoChains)
	vars := map[string]string{"RELAYQ_CONFIG": path, "SEPOLIA_KEYS": key1, "BASE_KEYS": key2, "RELAYQ_API_KEYS": "0123456789abcdef"}
	c, err := FromEnv(env(vars))
	require.NoError(t, err)
	require.Equal(t, "postgres://file/relayq", c.ArchiveURL)
	require.Equal(t, time.Hour, c.HotRetention)
	require.NoError(t, c.Check(RoleServe))
	vars["RELAYQ_ARCHIVE_URL"] = "postgres://env/relayq"
	c, err = FromEnv(env(vars))
	require.NoError(t, err)
	require.Equal(t, "postgres://env/relayq", c.ArchiveURL)
}
