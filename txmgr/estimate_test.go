package txmgr_test

import (
	"context"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/txmgr"
)

// Concurrent estimates travel in JSON-RPC batches, and each caller still
// gets its own answer: a call's gas, or its own revert with its data, as a
// lone estimate would.
func TestConcurrentEstimatesShareRequests(t *testing.T) {
	t.Parallel()
	node := testenv.Anvil(t, "--quiet")
	ctx := context.Background()
	var requests atomic.Int64
	up, err := url.Parse(node.URL())
	require.NoError(t, err)
	fwd := httputil.NewSingleHostReverseProxy(up)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		fwd.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rpc, err := txmgr.Dial(ctx, srv.URL, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(rpc.Close)
	key := testenv.AnvilKeys()[5]
	counter, err := devchain.DeployCounter(ctx, rpc.Client, key, func() {})
	require.NoError(t, err)
	from := crypto.PubkeyToAddress(key.PublicKey)
	lone, err := rpc.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &counter, Data: selector("increment()")})
	require.NoError(t, err)
	_, loneErr := rpc.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &counter, Data: addCall(5000)})
	require.Error(t, loneErr)
	loneData, ok := txmgr.RevertData(loneErr)
	require.True(t, ok, "a lone revert carries its data: %v", loneErr)

	const n = 64
	before := requests.Load()
	gas := make([]uint64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			msg := ethereum.CallMsg{From: from, To: &counter, Data: selector("increment()")}
			if i%4 == 3 {
				msg.Data = addCall(5000 + int64(i))
			}
			gas[i], errs[i] = rpc.EstimateGas(ctx, msg)
		})
	}
	wg.Wait()
	sent := requests.Load() - before
	require.Less(t, sent, int64(n/2), "%d estimates took %d HTTP requests", n, sent)
	for i := range n {
		if i%4 == 3 {
			require.Error(t, errs[i], "estimate %d", i)
			require.Equal(t, txmgr.Classify(loneErr), txmgr.Classify(errs[i]), "estimate %d: %v", i, errs[i])
			data, ok := txmgr.RevertData(errs[i])
			require.True(t, ok, "estimate %d: %v", i, errs[i])
			require.Equal(t, loneData[:4], data[:4], "estimate %d: the same custom error", i)
			require.Equal(t, common.LeftPadBytes(big.NewInt(5000+int64(i)).Bytes(), 32), data[4:36], "estimate %d: its own argument", i)
			continue
		}
		require.NoError(t, errs[i], "estimate %d", i)
		require.Equal(t, lone, gas[i], "estimate %d", i)
	}

	// A caller that stops waiting gets its context's error; the others are
	// not disturbed.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = rpc.EstimateGas(cctx, ethereum.CallMsg{From: from, To: &counter, Data: selector("increment()")})
	require.ErrorIs(t, err, context.Canceled)
	g, err := rpc.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &counter, Data: selector("increment()")})
	require.NoError(t, err)
	require.Equal(t, lone, g)
}

func selector(sig string) []byte { return crypto.Keccak256([]byte(sig))[:4] }

func addCall(n int64) []byte {
	return append(selector("add(uint256)"), common.LeftPadBytes(big.NewInt(n).Bytes(), 32)...)
}
