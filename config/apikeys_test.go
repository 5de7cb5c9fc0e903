package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAPIKeysAndWebhookSecrets checks RELAYQ_API_KEYS (name:key[:admin] or
// a bare key) and RELAYQ_WEBHOOK_SECRETS (name:secret) at start, and that
// no error repeats a key or a secret.
func TestAPIKeysAndWebhookSecrets(t *testing.T) {
	t.Parallel()
	const (
		keyA   = "alice-key-0123456789abcdef"
		keyB   = "bob-key-0123456789abcdef"
		secret = "alice-secret-0123456789abcdef0123456789"
	)
	tests := []struct {
		name    string
		keys    string
		secrets string
		wantErr string // "" for a valid configuration
	}{
		{name: "bare key (as before names)", keys: keyA},
		{name: "named keys, one admin", keys: "alice:" + keyA + ",ops:" + keyB + ":admin"},
		{name: "a secret for a named key", keys: "alice:" + keyA, secrets: "alice:" + secret},
		{name: "a secret for the bare keys", keys: keyA, secrets: "default:" + secret},
		{name: "duplicate name", keys: "alice:" + keyA + ",alice:" + keyB, wantErr: "RELAYQ_API_KEYS: entry 2: has the same name as entry 1"},
		{name: "duplicate key", keys: "alice:" + keyA + ",bob:" + keyA, wantErr: "RELAYQ_API_KEYS: entry 2: has the same key as entry 1"},
		{name: "empty name", keys: ":" + keyA, wantErr: "RELAYQ_API_KEYS: entry 1: the name is empty"},
		{name: "bad name", keys: "al/ice:" + keyA, wantErr: "RELAYQ_API_KEYS: entry 1: the name must be"},
		{name: "short key", keys: "alice:short", wantErr: "RELAYQ_API_KEYS: entry 1: the key is shorter than 16"},
		{name: "secret for no key", keys: "alice:" + keyA, secrets: "bob:" + secret, wantErr: "RELAYQ_WEBHOOK_SECRETS: entry 1: names no key"},
		{name: "short secret", keys: "alice:" + keyA, secrets: "alice:short", wantErr: "RELAYQ_WEBHOOK_SECRETS: entry 1: the secret is 5 characters"},
		{name: "secret without a name", keys: "alice:" + keyA, secrets: secret, wantErr: "RELAYQ_WEBHOOK_SECRETS: entry 1: is not name:secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := FromEnv(env(map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545", "RELAYQ_PRIVATE_KEYS": "k",
				"RELAYQ_API_KEYS": tt.keys, "RELAYQ_WEBHOOK_SECRETS": tt.secrets}))
			require.NoError(t, err)
			err = c.Check(RoleServe)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			for _, s := range []string{keyA, keyB, secret} {
				require.NotContains(t, err.Error(), s)
			}
			require.False(t, strings.Contains(err.Error(), "alice-"), "no part of a key or secret is echoed")
		})
	}
}
