package config

import (
	"fmt"
	"time"
)

// DefaultChainName names the one chain the environment describes (the
// shortcut without RELAYQ_CONFIG).
const DefaultChainName = "default"

// Chain is one chain a relayq process serves: its nodes, policy and
// signers. The environment describes one (DefaultChainName); a relayq.yaml
// (RELAYQ_CONFIG) describes one or more.
type Chain struct {
	// Name routes requests ("chain" in a request body, ?chain= in a query).
	Name string
	// ChainID is the id the file declares; the process refuses to start if
	// a node answers another. 0 for the environment's chain: read from the
	// node.
	ChainID uint64
	// RPCURLs are the chain's JSON-RPC endpoints, primary first.
	RPCURLs []string

	Confirmations   uint64
	MaxFeePerGasWei uint64 // fee cap ceiling
	BumpPercent     uint64 // fee increase of a replacement, at least 10
	StuckBlocks     uint64 // blocks a transaction may wait unmined before a fee bump
	// BlockTime is the file's block-time hint (0: none); PollInterval, how
	// often the trackers look for a new block, is derived from it unless
	// the file sets poll_interval.
	BlockTime    time.Duration
	PollInterval time.Duration

	// Signers: hex keys (from RELAYQ_PRIVATE_KEYS, or the variable the
	// file names in private_keys_env), keystore v3 files and their password.
	PrivateKeys          []string
	PrivateKeysEnv       string // the variable the file's private_keys_env names ("" for the environment's chain)
	KeystoreFiles        []string
	KeystorePasswordFile string
	KeystorePassword     string
	SignerMaxInFlight    int
	// KMSKeyIDs are AWS KMS keys that sign in KMS (RELAYQ_KMS_KEY_IDS, or
	// the file's signers.kms_key_ids).
	KMSKeyIDs []string

	// Namespaced is true for the file's chains: their Redis keys and Asynq
	// queues carry the chain id (see KeyPrefix and Queue names in
	// cmd/relayq), so several chains share one Redis. The environment's
	// chain keeps the historical un-namespaced keys and queues.
	Namespaced bool
}

// KeyPrefix is the Redis key prefix of the chain's jobs, nonces, leases and
// registries, under the deployment's prefix.
func (ch Chain) KeyPrefix(base string) string {
	if !ch.Namespaced {
		return base
	}
	return fmt.Sprintf("%sc%d:", base, ch.ChainID)
}
