package metrics_test

import (
	"context"
	"errors"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/metrics/metricstest"
	"github.com/relayq/relayq/txmgr"
)

// stubBackend answers every call with err (and zero values).
type stubBackend struct{ err error }

func (s stubBackend) ChainID(context.Context) (*big.Int, error) { return big.NewInt(1), s.err }
func (s stubBackend) HeaderByNumber(context.Context, *big.Int) (*types.Header, error) {
	return &types.Header{Number: big.NewInt(1)}, s.err
}
func (s stubBackend) SuggestGasTipCap(context.Context) (*big.Int, error) { return big.NewInt(1), s.err }
func (s stubBackend) EstimateGas(context.Context, ethereum.CallMsg) (uint64, error) {
	return 21000, s.err
}
func (s stubBackend) CallContract(context.Context, ethereum.CallMsg, *big.Int) ([]byte, error) {
	return nil, s.err
}
func (s stubBackend) SendTransaction(context.Context, *types.Transaction) error { return s.err }
func (s stubBackend) NonceAt(context.Context, common.Address, *big.Int) (uint64, error) {
	return 0, s.err
}
func (s stubBackend) PendingNonceAt(context.Context, common.Address) (uint64, error) {
	return 0, s.err
}
func (s stubBackend) BalanceAt(context.Context, common.Address, *big.Int) (*big.Int, error) {
	return big.NewInt(0), s.err
}
func (s stubBackend) TransactionReceipts(_ context.Context, h []common.Hash) ([]*types.Receipt, error) {
	return make([]*types.Receipt, len(h)), s.err
}
func (s stubBackend) TransactionsKnown(_ context.Context, h []common.Hash) ([]bool, error) {
	return make([]bool, len(h)), s.err
}

// callAll makes each Backend call once (receipts and lookups with one hash,
// then with none).
func callAll(b txmgr.Backend) []error {
	ctx := context.Background()
	one := []common.Hash{{1}}
	_, e1 := b.ChainID(ctx)
	_, e2 := b.HeaderByNumber(ctx, nil)
	_, e3 := b.SuggestGasTipCap(ctx)
	_, e4 := b.EstimateGas(ctx, ethereum.CallMsg{})
	_, e5 := b.CallContract(ctx, ethereum.CallMsg{}, nil)
	e6 := b.SendTransaction(ctx, types.NewTx(&types.LegacyTx{}))
	_, e7 := b.NonceAt(ctx, common.Address{}, nil)
	_, e8 := b.PendingNonceAt(ctx, common.Address{})
	_, e9 := b.BalanceAt(ctx, common.Address{}, nil)
	_, e10 := b.TransactionReceipts(ctx, one)
	_, e11 := b.TransactionsKnown(ctx, one)
	_, _ = b.TransactionReceipts(ctx, nil)
	_, _ = b.TransactionsKnown(ctx, nil)
	return []error{e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11}
}

// txmgr.Observed with Metrics.RPC counts every node call by its JSON-RPC
// method and every error by its class, and changes no answer.
func TestObservedBackendCountsCallsByMethodAndClass(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	for _, err := range callAll(txmgr.Observed(stubBackend{}, m.RPC)) {
		require.NoError(t, err)
	}
	timeout := context.DeadlineExceeded
	for _, err := range callAll(txmgr.Observed(stubBackend{err: timeout}, m.RPC)) {
		require.ErrorIs(t, err, timeout, "errors pass through unchanged")
	}
	s := metricstest.Gather(t, m.Registry())
	want := map[string]float64{
		"eth_chainId": 2, "eth_getBlockByNumber": 2, "eth_maxPriorityFeePerGas": 2, "eth_estimateGas": 2,
		"eth_call": 2, "eth_sendRawTransaction": 2, "eth_getTransactionCount": 4, "eth_getBalance": 2,
		"eth_getTransactionReceipt": 2, "eth_getTransactionByHash": 2,
	}
	var total float64
	for method, n := range want {
		require.Equal(t, n, s.Value("relayq_rpc_requests_total", "method", method), method)
		require.Equal(t, n/2, s.Value("relayq_rpc_errors_total", "method", method, "class", txmgr.Classify(timeout).String()), method)
		total += n
	}
	require.Equal(t, total, s.Value("relayq_rpc_requests_total"), "empty batches make no call and are not counted")
	require.Equal(t, uint64(total), s.Count("relayq_rpc_duration_seconds"))

	// A batched broadcast through the wrapper stays one batch and counts
	// each transaction.
	txs := []*types.Transaction{types.NewTx(&types.LegacyTx{Nonce: 1}), types.NewTx(&types.LegacyTx{Nonce: 2})}
	errs := txmgr.SendAll(context.Background(), txmgr.Observed(stubBackend{err: errors.New("nonce too low")}, m.RPC), txs)
	require.Len(t, errs, 2)
	s = metricstest.Gather(t, m.Registry())
	require.Equal(t, 4.0, s.Value("relayq_rpc_requests_total", "method", "eth_sendRawTransaction"))
	require.Equal(t, 2.0, s.Value("relayq_rpc_errors_total", "method", "eth_sendRawTransaction", "class", "nonce-too-low"))

	require.Equal(t, stubBackend{}, txmgr.Observed(stubBackend{}, nil), "no observer: the backend itself")
}
