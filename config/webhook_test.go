package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWebhookVariables(t *testing.T) {
	t.Parallel()
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_PRIVATE_KEYS": "k", "RELAYQ_INSECURE_NO_AUTH": "1"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	// Unset: webhooks are off, and that is a valid configuration.
	c, err := FromEnv(env(base(nil)))
	require.NoError(t, err)
	require.Empty(t, c.WebhookSecret)
	require.Empty(t, c.WebhookAllow)
	require.NoError(t, c.Check(RoleServe))

	secret := strings.Repeat("s", 32)
	c, err = FromEnv(env(base(map[string]string{"RELAYQ_WEBHOOK_SECRET": " " + secret + " ", "RELAYQ_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8, ::1"})))
	require.NoError(t, err)
	require.Equal(t, secret, c.WebhookSecret)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}, c.WebhookAllow)
	require.NoError(t, c.Check(RoleServe))

	c, err = FromEnv(env(base(map[string]string{"RELAYQ_WEBHOOK_SECRET": "short"})))
	require.NoError(t, err)
	require.ErrorContains(t, c.Check(RoleWorker), "RELAYQ_WEBHOOK_SECRET: is 5 characters")

	_, err = FromEnv(env(base(map[string]string{"RELAYQ_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8,intranet"})))
	require.ErrorContains(t, err, "RELAYQ_WEBHOOK_ALLOW_CIDRS")
	require.ErrorContains(t, err, "intranet")
}
