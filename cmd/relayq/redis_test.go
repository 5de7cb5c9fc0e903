package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
)

// healthcheck reaches Redis through every REDIS_URL form: a Sentinel-managed
// primary and a cluster. A Sentinel URL whose master name the sentinels do
// not know fails, as does a start with a malformed one (which names the
// variable and hides the password).
func TestRedisURLForms(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	node := testenv.Anvil(t)
	primary := testenv.Redis(t, testenv.WithoutAOF())
	testenv.RedisReplica(t, primary, testenv.WithoutAOF())
	sentinels := testenv.StartSentinels(t, primary, 1, testenv.SentinelOptions{})
	cluster := testenv.StartRedisCluster(t, 3, 0, testenv.WithoutAOF())

	var out bytes.Buffer
	for _, url := range []string{sentinels.URL(), cluster.URL()} {
		env := map[string]string{"REDIS_URL": url, "RELAYQ_RPC_URL": node.URL()}
		require.NoError(t, run(ctx, []string{"relayq", "healthcheck"}, envOf(env), &out, &out), url)
	}
	wrong := "redis-sentinel://" + sentinels.Addrs()[0] + "/nosuchmaster?dial_timeout=1s"
	env := map[string]string{"REDIS_URL": wrong, "RELAYQ_RPC_URL": node.URL()}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.ErrorContains(t, run(cctx, []string{"relayq", "healthcheck"}, envOf(env), &out, &out), "redis")

	err := run(ctx, []string{"relayq", "worker"}, envOf(map[string]string{
		"REDIS_URL": "redis-sentinel://:hunter2@127.0.0.1:1", "RELAYQ_RPC_URL": node.URL(), "RELAYQ_PRIVATE_KEYS": "00",
	}), &out, &out)
	require.ErrorContains(t, err, "REDIS_URL")
	require.ErrorContains(t, err, "no master name")
	require.NotContains(t, err.Error(), "hunter2")
}
