package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKeystoreSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "key.json")
	require.NoError(t, os.WriteFile(key, []byte("{}"), 0o600))
	pw := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(pw, []byte("secret\n"), 0o600))
	base := func(extra map[string]string) map[string]string {
		m := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" when the worker config is good
	}{
		{"keystore alone is enough", map[string]string{"RELAYQ_KEYSTORE_FILES": key, "RELAYQ_KEYSTORE_PASSWORD_FILE": pw}, ""},
		{"password from env", map[string]string{"RELAYQ_KEYSTORE_FILES": key, "RELAYQ_KEYSTORE_PASSWORD": "secret", "RELAYQ_PRIVATE_KEYS": "0x01"}, ""},
		{"no keys at all", nil, "RELAYQ_PRIVATE_KEYS: is required"},
		{"no password", map[string]string{"RELAYQ_KEYSTORE_FILES": key}, "RELAYQ_KEYSTORE_PASSWORD_FILE: or RELAYQ_KEYSTORE_PASSWORD is required"},
		{"two passwords", map[string]string{"RELAYQ_KEYSTORE_FILES": key, "RELAYQ_KEYSTORE_PASSWORD": "x", "RELAYQ_KEYSTORE_PASSWORD_FILE": pw}, "both set"},
		{"missing key file", map[string]string{"RELAYQ_KEYSTORE_FILES": key + "," + filepath.Join(dir, "gone.json"), "RELAYQ_KEYSTORE_PASSWORD": "x"}, "gone.json"},
		{"missing password file", map[string]string{"RELAYQ_KEYSTORE_FILES": key, "RELAYQ_KEYSTORE_PASSWORD_FILE": filepath.Join(dir, "nopw")}, "RELAYQ_KEYSTORE_PASSWORD_FILE: stat"},
		{"password without files", map[string]string{"RELAYQ_PRIVATE_KEYS": "0x01", "RELAYQ_KEYSTORE_PASSWORD": "x"}, "RELAYQ_KEYSTORE_FILES: is empty"},
		{"limit out of range", map[string]string{"RELAYQ_PRIVATE_KEYS": "0x01", "RELAYQ_SIGNER_MAX_IN_FLIGHT": "0"}, "RELAYQ_SIGNER_MAX_IN_FLIGHT: 0 is not within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := FromEnv(env(base(tc.env)))
			require.NoError(t, err)
			err = c.Check(RoleWorker)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
	c, err := FromEnv(env(base(nil)))
	require.NoError(t, err)
	require.Equal(t, DefaultSignerMaxInFlight, c.Chains[0].SignerMaxInFlight)
}
