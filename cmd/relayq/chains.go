package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"

	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/config"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
)

// chainsOf is the chains a process serves: the relayq.yaml's, or the one
// the environment describes (read again here, as relayq dev sets the
// chain-level fields after FromEnv).
func chainsOf(cfg config.Config) []config.Chain {
	if cfg.ConfigFile != "" {
		return cfg.Chains
	}
	return []config.Chain{cfg.EnvChain()}
}

// servedChain is one chain as serve runs it.
type servedChain struct {
	cfg     config.Chain
	node    txmgr.Node    // closed at the end
	backend txmgr.Backend // node, with every call counted in the metrics
	chainID *big.Int
	signers []signer.Signer
	prefix  string       // Redis key prefix of its jobs, nonces and contracts
	queues  tasks.Queues // its Asynq queues
}

// startChains dials every chain's nodes, checks that they serve the chain
// id the file declares, loads its signers and registers its cluster gauges
// on m. The nodes of the chains it returns must be closed, also on error.
func startChains(ctx context.Context, cfg config.Config, rdb redis.UniversalClient, m *metrics.Metrics, log *slog.Logger) ([]*servedChain, error) {
	var out []*servedChain
	for _, ch := range chainsOf(cfg) {
		where := "RELAYQ_RPC_URL"
		if ch.Namespaced {
			where = fmt.Sprintf("chain %s", ch.Name)
		}
		// Several URLs: reads fail over, broadcasts go to all (txmgr.Multi).
		node, err := txmgr.DialNode(ctx, ch.RPCURLs, cfg.RPCTimeout, log.With("chain", ch.Name))
		if err != nil {
			return out, fmt.Errorf("%s: %w", where, err)
		}
		sc := &servedChain{cfg: ch, node: node, prefix: ch.KeyPrefix(cfg.Prefix), queues: tasks.DefaultQueues}
		out = append(out, sc)
		if sc.chainID, err = node.ChainID(ctx); err != nil {
			return out, fmt.Errorf("%s: the node does not answer: %w", where, err)
		}
		if ch.Namespaced {
			if sc.chainID.Uint64() != ch.ChainID {
				return out, fmt.Errorf("%s: chain_id is %d, but its node serves chain %d", where, ch.ChainID, sc.chainID)
			}
			sc.queues = tasks.ChainQueues(ch.ChainID)
		}
		if sc.signers, err = loadSigners(ch, sc.chainID); err != nil {
			return out, fmt.Errorf("%s: %w", where, err)
		}
		sc.backend = txmgr.Observed(node, m.RPC)
		gauges := metrics.Cluster{
			Redis: rdb, Prefix: sc.prefix, ChainID: sc.chainID.Uint64(), Node: sc.backend,
			Signers: signer.Addresses(sc.signers), Log: log,
		}
		if ch.Namespaced {
			gauges.Chain, gauges.Queues = ch.Name, sc.queues
		}
		// The cluster gauges (jobs, queues, signers) are read from Redis and
		// the node at each scrape; in serve and dev the API's /metrics shows
		// the worker's counters too.
		if err := m.WatchCluster(gauges); err != nil {
			// Only a programming error gets here (no Redis, registered
			// twice): the process still runs, without these gauges.
			log.Error("metrics: cluster gauges not registered", "chain", ch.Name, "err", err)
		}
	}
	return out, nil
}

// loadSigners reads a chain's keys: hex keys, then keystore v3 files.
func loadSigners(ch config.Chain, chainID *big.Int) ([]signer.Signer, error) {
	var signers []signer.Signer
	var err error
	if len(ch.PrivateKeys) > 0 {
		if signers, err = signer.FromHexKeys(ch.PrivateKeys, chainID); err != nil {
			return nil, err
		}
	}
	if len(ch.KeystoreFiles) > 0 {
		pw, err := signer.KeystorePassword(ch.KeystorePasswordFile, ch.KeystorePassword)
		if err != nil {
			return nil, err
		}
		ks, err := signer.FromKeystoreFiles(ch.KeystoreFiles, pw, chainID)
		if err != nil {
			return nil, err
		}
		signers = append(signers, ks...)
		if err := signer.Unique(signers); err != nil {
			return nil, err
		}
	}
	return signers, nil
}
