package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writeFile writes relayq.yaml into a fresh directory and returns its path.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relayq.yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

const (
	key1 = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
	key2 = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
)

const twoChains = `
chains:
  - name: sepolia
    chain_id: 11155111
    rpc_urls:
      - https://a.example
      - wss://b.example/ws
    confirmations: 3
    block_time: 12s
    fees:
      max_fee_gwei: 200
      bump_percent: 15
      stuck_after_blocks: 5
    signers:
      private_keys_env: SEPOLIA_KEYS
      max_in_flight: 64
  - name: base
    chain_id: 8453
    rpc_urls: [https://base.example]
    block_time: 100ms
    signers:
      private_keys_env: BASE_KEYS
`

func TestFileTwoChains(t *testing.T) {
	t.Parallel()
	path := writeFile(t, twoChains)
	c, err := FromEnv(env(map[string]string{
		"RELAYQ_CONFIG":   path,
		"SEPOLIA_KEYS":    key1 + ", " + key2,
		"BASE_KEYS":       key2,
		"RELAYQ_API_KEYS": "0123456789abcdef",
	}))
	require.NoError(t, err)
	require.Equal(t, path, c.ConfigFile)
	require.Equal(t, []Chain{
		{
			Name: "sepolia", ChainID: 11155111, RPCURLs: []string{"https://a.example", "wss://b.example/ws"},
			Confirmations: 3, MaxFeePerGasWei: 200e9, BumpPercent: 15, StuckBlocks: 5,
			BlockTime: 12 * time.Second, PollInterval: 5 * time.Second, // 6s, clamped
			PrivateKeys: []string{key1, key2}, PrivateKeysEnv: "SEPOLIA_KEYS", SignerMaxInFlight: 64, Namespaced: true,
		},
		{
			Name: "base", ChainID: 8453, RPCURLs: []string{"https://base.example"},
			Confirmations: DefaultConfirmations, MaxFeePerGasWei: DefaultMaxFeeGwei * 1e9, BumpPercent: DefaultBumpPercent, StuckBlocks: DefaultStuckBlocks,
			BlockTime: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond, // 50ms, clamped
			PrivateKeys: []string{key2}, PrivateKeysEnv: "BASE_KEYS", SignerMaxInFlight: DefaultSignerMaxInFlight, Namespaced: true,
		},
	}, c.Chains)
	require.NoError(t, c.Check(RoleServe))
	require.Equal(t, "relayq:c8453:", c.Chains[1].KeyPrefix(c.Prefix))
}

func TestFilePollInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		chain string
		want  time.Duration
	}{
		{"", DefaultPollInterval},
		{"block_time: 2s", time.Second},
		{"block_time: 12s\n    poll_interval: 3s", 3 * time.Second},
		{"poll_interval: 250ms", 250 * time.Millisecond},
	} {
		path := writeFile(t, "chains:\n  - name: a\n    chain_id: 1\n    rpc_urls: [http://a:8545]\n    "+tc.chain+"\n")
		c, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": path, "RELAYQ_INSECURE_NO_AUTH": "1"}))
		require.NoError(t, err, tc.chain)
		require.Len(t, c.Chains, 1)
		require.Equal(t, tc.want, c.Chains[0].PollInterval, tc.chain)
		require.NoError(t, c.Check(RoleAPI), tc.chain)
	}
}

// Every problem of every chain is reported at once, each naming its place.
func TestFileReportsEveryProblem(t *testing.T) {
	t.Parallel()
	key := stubKeystoreFile(t)
	dir := filepath.Dir(key)
	path := writeFile(t, `
chains:
  - name: sepolia
    chain_id: 11155111
    rpc_urls: [https://a.example, "https://a.example/"]
    confirmations: 5000
    poll_interval: 1ms
    block_time: -1s
    fees:
      max_fee_gwei: 0
      bump_percent: 5
      stuck_after_blocks: 0
    signers:
      keystore_files: [`+key+`, `+filepath.Join(dir, "gone.json")+`]
      max_in_flight: 0
  - name: Sepolia!
    chain_id: 11155111
    rpc_urls: [ftp://x, https://A.example]
  - name: sepolia
    rpc_urls: []
  - name: "42"
    chain_id: 7
    rpc_urls: [http://c:8545]
    signers:
      private_keys_env: C_KEYS
      keystore_password_env: C_PW
`)
	c, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": path, "C_KEYS": key1, "C_PW": "pw"}))
	require.NoError(t, err)
	err = c.Check(RoleWorker)
	require.Error(t, err)
	for _, want := range []string{
		`RELAYQ_CONFIG chains[0] (sepolia).rpc_urls: "https://a.example/" is listed twice`,
		`RELAYQ_CONFIG chains[0] (sepolia).confirmations: 5000 is more than 1000`,
		`RELAYQ_CONFIG chains[0] (sepolia).poll_interval: 1ms is below 10ms`,
		`RELAYQ_CONFIG chains[0] (sepolia).block_time: -1s is negative`,
		`RELAYQ_CONFIG chains[0] (sepolia).fees.max_fee_gwei: must be from 1 to 1000000`,
		`RELAYQ_CONFIG chains[0] (sepolia).fees.bump_percent: 5 is not within 10..1000`,
		`RELAYQ_CONFIG chains[0] (sepolia).fees.stuck_after_blocks: 0 is not within 1..1000`,
		`RELAYQ_CONFIG chains[0] (sepolia).signers.keystore_files: stat ` + filepath.Join(dir, "gone.json"),
		`RELAYQ_CONFIG chains[0] (sepolia).signers.keystore_password_file: or signers.keystore_password_env is required with signers.keystore_files`,
		`RELAYQ_CONFIG chains[0] (sepolia).signers.max_in_flight: 0 is not within 1..100000`,
		`RELAYQ_CONFIG chains[1] ("Sepolia!").name: "Sepolia!" is not 1 to 32 of a-z`,
		`RELAYQ_CONFIG chains[1] ("Sepolia!").chain_id: 11155111 is chains[0] (sepolia)'s too`,
		`RELAYQ_CONFIG chains[1] ("Sepolia!").rpc_urls: "ftp://x" is not an http(s):// or ws(s):// URL`,
		`RELAYQ_CONFIG chains[1] ("Sepolia!").rpc_urls: "https://A.example" is chains[0] (sepolia)'s too`,
		`RELAYQ_CONFIG chains[1] ("Sepolia!").signers.private_keys_env: is required for the worker`,
		`RELAYQ_CONFIG chains[2] (sepolia).name: "sepolia" is chains[0] (sepolia)'s name too`,
		`RELAYQ_CONFIG chains[2] (sepolia).chain_id: is required`,
		`RELAYQ_CONFIG chains[2] (sepolia).rpc_urls: is required`,
		`RELAYQ_CONFIG chains[3] (42).name: "42" is a number but not this chain's chain_id`,
		`RELAYQ_CONFIG chains[3] (42).signers.keystore_files: is empty, but a keystore password is set`,
	} {
		require.Contains(t, err.Error(), want)
	}
	require.NotContains(t, err.Error(), "chains[3] (42).rpc_urls", "a good chain is not blamed")
	require.NotContains(t, err.Error(), "RELAYQ_RPC_URL", "file chains are named by their place")

	// Parse problems are collected too, each placed in its chain.
	path = writeFile(t, `
chains:
  - name: a
    chain_id: one
    rpc_urls: [http://a:8545]
    confirmations: -1
  - name: b
    chain_id: 2
    rpc_urls: [http://b:8545]
    block_time: soon
    fees:
      bump_pct: 20
`)
	_, err = FromEnv(env(map[string]string{"RELAYQ_CONFIG": path}))
	require.Error(t, err)
	for _, want := range []string{
		"RELAYQ_CONFIG chains[0] (a): line 4: cannot unmarshal !!str `one` into uint64",
		"RELAYQ_CONFIG chains[0] (a): line 6: cannot unmarshal !!int `-1` into uint64",
		"RELAYQ_CONFIG chains[1] (b): line 10: cannot unmarshal !!str `soon` into time.Duration",
		"RELAYQ_CONFIG chains[1] (b): line 12: field bump_pct not found in fees",
	} {
		require.Contains(t, err.Error(), want)
	}
}

func TestFileUnknownKey(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "chains:\n  - name: a\n    chain_id: 1\n    rpc_url: http://a:8545\nredis: x\n")
	_, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": path}))
	require.ErrorContains(t, err, "RELAYQ_CONFIG chains[0] (a): line 4: field rpc_url not found in a chain")
	require.ErrorContains(t, err, "RELAYQ_CONFIG: "+path+": line 5: field redis not found at the top level")
}

func TestFileWithChainLevelVariables(t *testing.T) {
	t.Parallel()
	path := writeFile(t, "chains:\n  - name: a\n    chain_id: 1\n    rpc_urls: [http://a:8545]\n")
	_, err := FromEnv(env(map[string]string{
		"RELAYQ_CONFIG":        path,
		"RELAYQ_RPC_URL":       "http://a:8545",
		"RELAYQ_CONFIRMATIONS": "many", // reported as set, not as malformed
		"RELAYQ_PRIVATE_KEYS":  key1,
		"RELAYQ_API_KEYS":      "0123456789abcdef", // global: fine
	}))
	require.Error(t, err)
	require.ErrorContains(t, err, "RELAYQ_RPC_URL: is set, but chains come from RELAYQ_CONFIG ("+path+"); set it there (as rpc_urls)")
	require.ErrorContains(t, err, "RELAYQ_CONFIRMATIONS: is set, but chains come from RELAYQ_CONFIG")
	require.ErrorContains(t, err, "RELAYQ_PRIVATE_KEYS: is set, but chains come from RELAYQ_CONFIG")
	require.NotContains(t, err.Error(), "not a non-negative integer")
	require.NotContains(t, err.Error(), "RELAYQ_API_KEYS")
	require.NotContains(t, err.Error(), key1, "a key never reaches a message")
}

func TestFileNamedVariables(t *testing.T) {
	t.Parallel()
	key := stubKeystoreFile(t)
	path := writeFile(t, `
chains:
  - name: a
    chain_id: 1
    rpc_urls: [http://a:8545]
    signers:
      private_keys_env: RELAYQ_PRIVATE_KEYS
      keystore_files: [`+key+`]
      keystore_password_env: KS_PW
`)
	// A chain may name the chain-level variable itself.
	c, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": path, "RELAYQ_PRIVATE_KEYS": " " + key1 + " ,", "KS_PW": "secret"}))
	require.NoError(t, err)
	require.Equal(t, []string{key1}, c.Chains[0].PrivateKeys)
	require.Equal(t, "secret", c.Chains[0].KeystorePassword)
	require.Equal(t, []string{key}, c.Chains[0].KeystoreFiles)
	require.NoError(t, c.Check(RoleWorker))

	// A named variable that is empty or unset is an error, said once: Check
	// does not add that the chain has no keys.
	c, err = FromEnv(env(map[string]string{"RELAYQ_CONFIG": path, "RELAYQ_PRIVATE_KEYS": " , "}))
	require.ErrorContains(t, err, "RELAYQ_CONFIG chains[0] (a).signers.private_keys_env: RELAYQ_PRIVATE_KEYS holds no keys")
	require.ErrorContains(t, err, "RELAYQ_CONFIG chains[0] (a).signers.keystore_password_env: KS_PW is not set or empty")
	only := writeFile(t, "chains:\n  - {name: a, chain_id: 1, rpc_urls: [http://a:8545], signers: {private_keys_env: A_KEYS}}\n")
	c, err = FromEnv(env(map[string]string{"RELAYQ_CONFIG": only}))
	require.ErrorContains(t, err, "RELAYQ_CONFIG chains[0] (a).signers.private_keys_env: A_KEYS is not set or empty")
	require.NotContains(t, fmt.Sprint(c.Check(RoleWorker)), "is required for the worker")
	c, err = FromEnv(env(map[string]string{"RELAYQ_CONFIG": writeFile(t, "chains:\n  - {name: a, chain_id: 1, rpc_urls: [http://a:8545]}\n")}))
	require.NoError(t, err)
	require.ErrorContains(t, c.Check(RoleWorker), "signers.private_keys_env: is required for the worker", "no keys named at all")

	// A key written where a variable's name goes is refused, not echoed.
	path = writeFile(t, "chains:\n  - name: a\n    chain_id: 1\n    rpc_urls: [http://a:8545]\n    signers:\n      private_keys_env: "+key1+"\n      keystore_password_env: hunter2!\n")
	_, err = FromEnv(env(map[string]string{"RELAYQ_CONFIG": path}))
	require.ErrorContains(t, err, "signers.private_keys_env: the variable it names is not set or empty")
	require.ErrorContains(t, err, "signers.keystore_password_env: is not the name of an environment variable")
	require.NotContains(t, err.Error(), key1)
	require.NotContains(t, err.Error(), "hunter2")
}

func TestFileUnreadable(t *testing.T) {
	t.Parallel()
	gone := filepath.Join(t.TempDir(), "relayq.yaml")
	c, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": gone}))
	require.ErrorContains(t, err, "RELAYQ_CONFIG: open "+gone+": no such file or directory")
	require.Empty(t, c.Chains)
	require.ErrorContains(t, c.Check(RoleAPI), "RELAYQ_CONFIG: "+gone+" gives no chains to serve", "Check alone does not pass it")

	for text, want := range map[string]string{
		"":             "lists no chains",
		"chains: []\n": "lists no chains",
		"chains: [\n":  "yaml: line",
		"chains:\n  - name: a\n---\nchains: []\n": "more than one YAML document",
	} {
		path := writeFile(t, text)
		_, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": path}))
		require.ErrorContains(t, err, "RELAYQ_CONFIG: "+path+": ", text)
		require.ErrorContains(t, err, want, text)
	}
}

// Without RELAYQ_CONFIG the variables describe the one chain.
func TestEnvChain(t *testing.T) {
	t.Parallel()
	c, err := FromEnv(env(map[string]string{
		"RELAYQ_RPC_URL":      "http://a:8545,http://b:8545",
		"RELAYQ_PRIVATE_KEYS": key1,
		"RELAYQ_BUMP_PERCENT": "20",
	}))
	require.NoError(t, err)
	require.Empty(t, c.ConfigFile)
	require.Equal(t, []Chain{{
		Name: DefaultChainName, RPCURLs: []string{"http://a:8545", "http://b:8545"},
		Confirmations: 1, MaxFeePerGasWei: 500e9, BumpPercent: 20, StuckBlocks: 3, PollInterval: time.Second,
		PrivateKeys: []string{key1}, SignerMaxInFlight: DefaultSignerMaxInFlight,
	}}, c.Chains)
	require.Equal(t, "relayq:", c.Chains[0].KeyPrefix(c.Prefix))
	// A hand-built Config without Chains is checked by its fields.
	err = Config{RedisURL: DefaultRedisURL, Prefix: DefaultPrefix, LogLevel: "info", Concurrency: 1}.Check(RoleWorker)
	require.ErrorContains(t, err, "RELAYQ_RPC_URL: is required")
	require.False(t, strings.Contains(err.Error(), "RELAYQ_CONFIG"))
}

// stubKeystoreFile writes a file where a keystore file is named: Check only
// looks that it is there (decrypting is for the start).
func stubKeystoreFile(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "key.json")
	require.NoError(t, os.WriteFile(key, []byte("{}"), 0o600))
	return key
}

// The environment shortcut and a one-chain file give the same Chain: every
// setting lands in the same field. They differ only where the shortcut is
// historical (name default, chain id from the node, un-namespaced keys)
// and where the file names a variable instead of holding a value.
func TestEnvChainMatchesFileChain(t *testing.T) {
	t.Parallel()
	ks, pw := stubKeystoreFile(t), stubKeystoreFile(t)
	fromEnv, err := FromEnv(env(map[string]string{
		"RELAYQ_RPC_URL":                "http://a:8545, http://b:8545",
		"RELAYQ_CONFIRMATIONS":          "4",
		"RELAYQ_POLL_INTERVAL":          "250ms",
		"RELAYQ_MAX_FEE_GWEI":           "70",
		"RELAYQ_BUMP_PERCENT":           "25",
		"RELAYQ_STUCK_BLOCKS":           "6",
		"RELAYQ_PRIVATE_KEYS":           key1 + "," + key2,
		"RELAYQ_KEYSTORE_FILES":         ks,
		"RELAYQ_KEYSTORE_PASSWORD_FILE": pw,
		"RELAYQ_KMS_KEY_IDS":            "alias/a",
		"RELAYQ_SIGNER_MAX_IN_FLIGHT":   "9",
	}))
	require.NoError(t, err)
	require.NoError(t, fromEnv.Check(RoleWorker))
	path := writeFile(t, fmt.Sprintf(`
chains:
  - name: one
    chain_id: 5
    rpc_urls: [http://a:8545, http://b:8545]
    confirmations: 4
    poll_interval: 250ms
    fees: {max_fee_gwei: 70, bump_percent: 25, stuck_after_blocks: 6}
    signers:
      private_keys_env: ONE_KEYS
      keystore_files: [%s]
      keystore_password_file: %s
      kms_key_ids: [alias/a]
      max_in_flight: 9
`, ks, pw))
	fromFile, err := FromEnv(env(map[string]string{"RELAYQ_CONFIG": path, "ONE_KEYS": key1 + "," + key2}))
	require.NoError(t, err)
	require.NoError(t, fromFile.Check(RoleWorker))
	require.Len(t, fromEnv.Chains, 1)
	require.Len(t, fromFile.Chains, 1)
	want := fromFile.Chains[0]
	want.Name, want.ChainID, want.Namespaced, want.PrivateKeysEnv = DefaultChainName, 0, false, ""
	require.Equal(t, want, fromEnv.Chains[0])
	require.Equal(t, "relayq:", fromEnv.Chains[0].KeyPrefix(fromEnv.Prefix), "the shortcut keeps the historical keys")
}
