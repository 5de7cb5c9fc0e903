package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/config"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
	"github.com/relayq/relayq/worker"
)

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
	for _, ch := range cfg.Chains {
		// The environment's chain keeps the historical queues and
		// unlabelled gauges; a file chain has its own, named for it.
		where, queues, observe, label := "RELAYQ_RPC_URL", tasks.DefaultQueues, m.RPC, ""
		if ch.Namespaced {
			where, queues, observe, label = "chain "+ch.Name, tasks.ChainQueues(cfg.Prefix, ch.ChainID), m.RPCFor(ch.Name), ch.Name
		}
		// Several URLs: reads fail over, broadcasts go to all (txmgr.Multi).
		node, err := txmgr.DialNode(ctx, ch.RPCURLs, cfg.RPCTimeout, log.With("chain", ch.Name))
		if err != nil {
			return out, fmt.Errorf("%s: %w", where, err)
		}
		sc := &servedChain{cfg: ch, node: node, prefix: ch.KeyPrefix(cfg.Prefix), queues: queues}
		out = append(out, sc)
		id, err := node.ChainID(ctx)
		switch {
		case err == nil && ch.Namespaced && id.Uint64() != ch.ChainID:
			return out, fmt.Errorf("%s: %w", where, &chainIDMismatch{want: ch.ChainID, current: id.Uint64()})
		case err == nil:
			sc.chainID = id
		case ch.Namespaced:
			// The file declares the id: serve the chain's API now, and
			// start its worker when the node answers (runChainWorker).
			sc.chainID = new(big.Int).SetUint64(ch.ChainID)
			log.Warn("the node does not answer; the chain is served (its jobs wait), and a worker for it starts when the node answers", "chain", ch.Name, "err", err)
		default:
			return out, fmt.Errorf("%s: the node does not answer: %w", where, err)
		}
		if sc.signers, err = loadSigners(ctx, ch, sc.chainID); err != nil {
			return out, fmt.Errorf("%s: %w", where, err)
		}
		sc.backend = txmgr.Observed(node, observe)
		gauges := metrics.Cluster{
			Redis: rdb, Prefix: sc.prefix, ChainID: sc.chainID.Uint64(), Node: sc.backend,
			Signers: signer.Addresses(sc.signers), Log: log, Chain: label, Queues: sc.queues,
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

// loadSigners reads a chain's keys: hex keys, then keystore v3 files, then
// KMS keys (whose addresses KMS tells, so KMS must answer at start).
func loadSigners(ctx context.Context, ch config.Chain, chainID *big.Int) ([]signer.Signer, error) {
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
	if len(ch.KMSKeyIDs) > 0 {
		// Region, credentials and endpoint come from the AWS SDK's
		// standard chain (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL_KMS, ...).
		client, err := signer.NewKMSClient(ctx)
		if err != nil {
			return nil, err
		}
		ks, err := signer.FromKMSKeys(ctx, client, ch.KMSKeyIDs, chainID, 0)
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

// runChainWorker runs the worker of one chain until ctx ends. A chain of
// the relayq.yaml whose node does not answer is retried with backoff,
// logging each failure, so one chain's outage leaves the others served.
// Anything else that stops a worker from starting ends the process, as it
// always has: the environment's one chain (its node answered at start), a
// Redis that refuses the worker's writes (a replica, an ACL), and a node
// that answers another chain id than declared (nothing is signed for it).
func runChainWorker(ctx context.Context, ch *servedChain, wc worker.Config, log *slog.Logger) error {
	log = log.With("chain", ch.cfg.Name)
	backoff := time.Second
	for {
		w, err := startChainWorker(ctx, ch, wc)
		if err == nil {
			log.Info("worker started", "chain_id", ch.chainID, "signers", len(ch.signers))
			err = w.Run(ctx)
			w.Close()
			return err
		}
		if ctx.Err() != nil {
			return nil // stopping
		}
		var mismatch *chainIDMismatch
		var refused redis.Error
		if !ch.cfg.Namespaced || errors.As(err, &mismatch) || errors.As(err, &refused) {
			return fmt.Errorf("chain %s: %w", ch.cfg.Name, err)
		}
		log.Error("worker cannot start; retrying", "in", backoff.String(), "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// chainIDMismatch is a node serving another chain than the one declared.
type chainIDMismatch struct {
	want, current uint64
}

func (e *chainIDMismatch) Error() string {
	return fmt.Sprintf("chain_id is %d, but its node serves chain %d", e.want, e.current)
}

// startChainWorker checks the chain id and builds the chain's worker (which
// reconciles its signers' nonces with the chain), within 30 s.
func startChainWorker(ctx context.Context, ch *servedChain, wc worker.Config) (*worker.Worker, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	id, err := ch.backend.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("the node does not answer: %w", err)
	}
	if id.Cmp(ch.chainID) != 0 {
		return nil, &chainIDMismatch{want: ch.chainID.Uint64(), current: id.Uint64()}
	}
	return worker.New(ctx, wc)
}
