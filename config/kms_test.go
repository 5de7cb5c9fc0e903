package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKMSKeySettings reads RELAYQ_KMS_KEY_IDS and signers.kms_key_ids: KMS
// keys alone are enough for a worker, they mix with local keys, and what
// cannot be a KMS key id is refused at start without being echoed.
func TestKMSKeySettings(t *testing.T) {
	t.Parallel()
	const (
		keyID = "1234abcd-12ab-34cd-56ef-1234567890ab"
		arn   = "arn:aws:kms:us-east-1:111122223333:key/" + keyID
	)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string // "" when the worker config is good
	}{
		{"kms keys alone are enough", map[string]string{"RELAYQ_KMS_KEY_IDS": keyID + ", alias/relayq-hot ," + arn}, ""},
		{"mixed with local keys", map[string]string{"RELAYQ_KMS_KEY_IDS": "alias/relayq", "RELAYQ_PRIVATE_KEYS": key1}, ""},
		{"multi-region key and alias arn", map[string]string{"RELAYQ_KMS_KEY_IDS": "mrk-1234abcd12ab34cd56ef1234567890ab,arn:aws:kms:eu-west-1:111122223333:alias/x"}, ""},
		{"not a key id", map[string]string{"RELAYQ_KMS_KEY_IDS": "my-key"}, `RELAYQ_KMS_KEY_IDS: "my-key" is not a KMS key id`},
		{"an arn of another service", map[string]string{"RELAYQ_KMS_KEY_IDS": "arn:aws:s3:::bucket/key/x"}, "is not a KMS key id"},
		{"a hex key in the wrong place", map[string]string{"RELAYQ_KMS_KEY_IDS": key1}, "RELAYQ_KMS_KEY_IDS: an entry (not shown) is not a KMS key id"},
		{"listed twice", map[string]string{"RELAYQ_KMS_KEY_IDS": "alias/a,alias/a"}, "RELAYQ_KMS_KEY_IDS: alias/a is listed twice"},
		{"no keys at all", nil, "unless RELAYQ_KEYSTORE_FILES or RELAYQ_KMS_KEY_IDS is set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:8545"}
			for k, v := range tc.env {
				m[k] = v
			}
			c, err := FromEnv(env(m))
			require.NoError(t, err)
			require.Equal(t, list(m["RELAYQ_KMS_KEY_IDS"]), c.Chains[0].KMSKeyIDs, "the environment's chain carries them")
			err = c.Check(RoleWorker)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), key1, "a key never reaches a message")
		})
	}

	t.Run("file", func(t *testing.T) {
		path := writeFile(t, `
chains:
  - name: a
    chain_id: 1
    rpc_urls: [http://a:8545]
    signers:
      kms_key_ids: [alias/relayq-a, " `+keyID+` "]
  - name: b
    chain_id: 2
    rpc_urls: [http://b:8545]
    signers:
      kms_key_ids: [not-a-key]
`)
		c, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": path}))
		require.NoError(t, err)
		require.Equal(t, []string{"alias/relayq-a", keyID}, c.Chains[0].KMSKeyIDs)
		require.ErrorContains(t, c.Check(RoleWorker), `RELAYQ_CONFIG chains[1] (b).signers.kms_key_ids: "not-a-key" is not a KMS key id`)

		_, err = FromEnv(env(map[string]string{"RELAYQ_CONFIG": path, "RELAYQ_KMS_KEY_IDS": "alias/x"}))
		require.ErrorContains(t, err, "RELAYQ_KMS_KEY_IDS: is set, but chains come from RELAYQ_CONFIG")
	})
}
