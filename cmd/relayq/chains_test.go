package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/config"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/txmgr"
	"github.com/relayq/relayq/worker"
)

// A relayq.yaml chain whose node is down keeps retrying its worker until
// the process stops (the other chains run meanwhile); the environment's one
// chain ends the process with the error, as it always has.
func TestRunChainWorkerRetriesOnlyAFileChainsNode(t *testing.T) {
	t.Parallel()
	dead := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	node, err := txmgr.DialNode(context.Background(), []string{dead}, time.Second, nil)
	require.NoError(t, err, "an http endpoint is dialed lazily")
	defer node.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	chain := func(namespaced bool) *servedChain {
		return &servedChain{cfg: config.Chain{Name: "c", Namespaced: namespaced}, node: node, backend: node, chainID: big.NewInt(5)}
	}

	err = runChainWorker(context.Background(), chain(false), worker.Config{}, log)
	require.ErrorContains(t, err, "chain c: the node does not answer")

	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	began := time.Now()
	require.NoError(t, runChainWorker(ctx, chain(true), worker.Config{}, log), "stopping while the node is down is no error")
	require.GreaterOrEqual(t, time.Since(began), 2*time.Second, "it waited for the node until the process stopped")
}
