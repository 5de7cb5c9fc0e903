package txmgr_test

import (
	"context"
	"math/big"
	"strconv"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/txmgr"
)

// onlyBackend hides the RPC's batch method, for SendAll's fallback.
type onlyBackend struct{ txmgr.Backend }

// A batch of sends reports each transaction's own outcome: accepted ones
// have no error, a re-sent mined one is classified as its node error, and
// the one-at-a-time fallback gives the same answers.
func TestSendAllReportsEachTransaction(t *testing.T) {
	t.Parallel()
	node := testenv.Anvil(t, "--quiet") // automine: each accepted tx is mined at once
	ctx := context.Background()
	rpc, err := txmgr.Dial(ctx, node.URL(), 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(rpc.Close)
	chainID := big.NewInt(testenv.AnvilChainID)
	s := signer.NewKey(testenv.AnvilKeys()[3], chainID)
	fees, err := txmgr.NewFeeOracle(rpc, big.NewInt(1e12), 0).Fees(ctx)
	require.NoError(t, err)
	sign := func(n uint64) *types.Transaction {
		tx, _, err := txmgr.Sign(context.Background(), s, chainID, n, 21000, fees, txmgr.Call{From: s.Address(), To: common.HexToAddress("0xbeef"), Value: big.NewInt(1)})
		require.NoError(t, err)
		return tx
	}
	first := sign(0)
	require.NoError(t, rpc.SendTransaction(ctx, first))
	require.Eventually(t, func() bool {
		n, err := rpc.NonceAt(ctx, s.Address(), nil)
		return err == nil && n == 1
	}, 10*time.Second, 20*time.Millisecond, "the first transaction is mined")

	for name, b := range map[string]txmgr.Backend{"batch": rpc, "one by one": onlyBackend{rpc}} {
		base, err := rpc.NonceAt(ctx, s.Address(), nil)
		require.NoError(t, err)
		errs := txmgr.SendAll(ctx, b, []*types.Transaction{first, sign(base), sign(base + 1)})
		require.Len(t, errs, 3, name)
		require.Error(t, errs[0], name)
		require.Contains(t, []txmgr.Class{txmgr.ClassNonceTooLow, txmgr.ClassAlreadyKnown}, txmgr.Classify(errs[0]), "%s: %v", name, errs[0])
		require.NoError(t, errs[1], name)
		require.NoError(t, errs[2], name)
		require.Eventually(t, func() bool {
			n, err := rpc.NonceAt(ctx, s.Address(), nil)
			return err == nil && n == base+2
		}, 10*time.Second, 50*time.Millisecond, name)
	}
}

// A batch that cannot reach the node gives every transaction the error.
func TestSendTransactionsUnreachableNode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rpc, err := txmgr.Dial(ctx, "http://127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(rpc.Close)
	chainID := big.NewInt(1)
	s := signer.NewKey(testenv.AnvilKeys()[0], chainID)
	fees := txmgr.Fees{TipCap: big.NewInt(1), FeeCap: big.NewInt(2)}
	var txs []*types.Transaction
	for n := range uint64(3) {
		tx, _, err := txmgr.Sign(context.Background(), s, chainID, n, 21000, fees, txmgr.Call{From: s.Address(), To: common.HexToAddress("0xbeef")})
		require.NoError(t, err)
		txs = append(txs, tx)
	}
	errs := rpc.SendTransactions(ctx, txs)
	for i, err := range errs {
		require.Error(t, err, "tx %d", i)
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(err), "tx %d: %v", i, err)
	}
}
