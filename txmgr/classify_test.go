package txmgr_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"github.com/relayq/relayq/internal/testenv"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/params"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/txmgr"
)

// TestClassifyNodeMessages feeds Classify the messages nodes actually print,
// one row per message, as they arrive: bare, and wrapped by our own code.
func TestClassifyNodeMessages(t *testing.T) {
	t.Parallel()

	const (
		known     = txmgr.ClassAlreadyKnown
		nonceLow  = txmgr.ClassNonceTooLow
		retry     = txmgr.ClassRetryable
		paused    = txmgr.ClassPaused
		permanent = txmgr.ClassPermanent
	)

	tests := []struct {
		client string
		msg    string
		want   txmgr.Class
	}{
		// go-ethereum: txpool validation, state transition, EVM, estimator.
		{"geth", "already known", known},
		{"geth", "nonce too low: next nonce 5, tx nonce 3", nonceLow},
		{"geth", "nonce too low: address 0x71562b71999873DB5b286dF957af199Ec94617F7, tx: 0 state: 1", nonceLow},
		{"geth", "nonce too high: address 0x71562b71999873DB5b286dF957af199Ec94617F7, tx: 9 state: 1", retry},
		{"geth", "replacement transaction underpriced", retry},
		{"geth", "transaction underpriced", retry},
		{"geth", "transaction gas price below minimum: gas tip cap 0, minimum needed 1", retry},
		{"geth", "txpool is full", retry},
		{"geth", "future transaction tries to replace pending", retry},
		{"geth", "address already reserved", retry},
		{"geth", "account limit exceeded: pooled 16 txs", retry},
		{"geth", "gas limit reached", retry},
		{"geth", "gas required exceeds allowance (30000000)", retry},
		{"geth", "max fee per gas less than block base fee: address 0x71562b71999873DB5b286dF957af199Ec94617F7, maxFeePerGas: 1, baseFee: 875000000", retry},
		{"geth", "insufficient funds for gas * price + value: balance 0, tx cost 21000000000000, overshot 21000000000000", paused},
		{"geth", "insufficient funds for gas * price + value: address 0x71562b71999873DB5b286dF957af199Ec94617F7 have 0 want 1000000000000000000", paused},
		{"geth", "insufficient funds for transfer", paused},
		{"geth", "intrinsic gas too low: gas 20000, minimum needed 21064", permanent},
		{"geth", "insufficient gas for floor data gas cost: gas 21000, minimum needed 21400", permanent},
		{"geth", "exceeds block gas limit", permanent},
		{"geth", "transaction gas limit too high (cap: 16777216, tx: 30000000)", permanent},
		{"geth", "transaction type not supported: tx type 3 not supported by this pool", permanent},
		{"geth", "oversized data: transaction size 131328, limit 131072", permanent},
		{"geth", "invalid sender: invalid chain id for signer: have 1 want 1337", permanent},
		{"geth", "max priority fee per gas higher than max fee per gas: address 0x71562b71999873DB5b286dF957af199Ec94617F7, maxPriorityFeePerGas: 2, maxFeePerGas: 1", permanent},
		{"geth", "max fee per gas higher than 2^256-1: address 0x71562b71999873DB5b286dF957af199Ec94617F7, maxFeePerGas bit length: 257", permanent},
		{"geth", "sender not an eoa: address 0x71562b71999873DB5b286dF957af199Ec94617F7, len(code): 23", permanent},
		{"geth", "tx fee (1.10 ether) exceeds the configured cap (1.00 ether)", permanent},
		{"geth", "execution reverted", permanent},
		{"geth", "execution reverted: boom", permanent},
		{"geth", "execution reverted: insufficient funds", permanent}, // the contract's words, not the signer's balance
		{"geth", "execution reverted: nonce too low", permanent},
		{"geth", "invalid opcode: INVALID", permanent},
		{"geth", "transaction indexing is in progress", retry},

		// anvil (foundry): InvalidTransactionError, PoolError and EVM halts.
		{"anvil", "transaction already imported", known},
		{"anvil", "nonce too low", nonceLow},
		{"anvil", "Nonce too high", retry},
		{"anvil", "replacement transaction underpriced", retry},
		{"anvil", "Insufficient funds for gas * price + value", paused},
		{"anvil", "insufficient funds for transfer", paused},
		{"anvil", "intrinsic gas too low", permanent},
		{"anvil", "intrinsic gas too high -- CallerGasLimitMoreThanBlock", permanent},
		{"anvil", "intrinsic gas too high -- tx.gas_limit > env.block.gas_limit", permanent},
		{"anvil", "Transaction gas limit is greater than the block gas limit, gas_limit: 40000000, cap: 30000000", permanent},
		{"anvil", "max fee per gas less than block base fee", retry},
		{"anvil", "max priority fee per gas higher than max fee per gas", permanent},
		{"anvil", "execution reverted: boom", permanent},
		{"anvil", "execution reverted: panic: division or modulo by zero (0x12)", permanent},
		{"anvil", "execution reverted: custom error 0x677fd0e3: 00000000000000000000000000000000000000000000000000000000000003e900000000000000000000000000000000000000000000000000000000000003e8", permanent},
		{"anvil", "EVM error InvalidFEOpcode", permanent},
		{"anvil", "EVM error OutOfGas", retry},
		{"geth", "out of gas", retry},
		{"anvil", "Out of gas: gas required exceeds allowance: 30000000", retry},
		{"anvil", "invalid chain id for signer", permanent},
		{"anvil", "Incompatible EIP-155 transaction, signed for another chain", permanent},
		{"anvil", "Unknown transaction type not supported", permanent}, // "unknown transaction" is not "known transaction"

		// reth
		{"reth", "nonce too low: next nonce 7, tx nonce 5", nonceLow},
		{"reth", "insufficient funds for gas * price + value: have 0 want 21000000000000", paused},
		{"reth", "gas limit too high", permanent},
		{"reth", "sender is not an EOA", permanent},
		{"reth", "EVM error: InvalidFEOpcode", permanent},

		// erigon: txpool DiscardReason strings.
		{"erigon", "already known", known},
		{"erigon", "INTERNAL_ERROR: existing tx with same hash", known},
		{"erigon", "underpriced", retry},
		{"erigon", "fee too low", retry},
		{"erigon", "could not replace existing tx", retry},
		{"erigon", "queued sub-pool is full", retry},
		{"erigon", "insufficient funds", paused},
		{"erigon", "IntrinsicGas", permanent},
		{"erigon", "fork supporting this transaction type is not activated yet", permanent},

		// Nethermind: AcceptTxResult names, as Chainlink logged them.
		{"nethermind", "call failed: AlreadyKnown", known},
		{"nethermind", "call failed: OldNonce, Current nonce: 22, nonce of rejected tx: 17", nonceLow},
		{"nethermind", "call failed: NonceGap, Future nonce. Expected nonce: 10", retry},
		{"nethermind", "FeeTooLow, MaxFeePerGas too low. MaxFeePerGas: 50, BaseFee: 100, MaxPriorityFeePerGas:200, Block number: 5", retry},
		{"nethermind", "FeeTooLowToCompete", retry},
		{"nethermind", "call failed: InsufficientFunds, Account balance: 4740799397601480913, cumulative cost: 22019342038993800000", paused},
		{"nethermind", "GasLimitExceeded, Gas limit: 30000000, gas limit of rejected tx: 40000000", permanent},
		{"nethermind", "SenderIsContract", permanent},

		// Besu
		{"besu", "Known transaction", known},
		{"besu", "Nonce too low", nonceLow},
		{"besu", "Replacement transaction underpriced", retry},
		{"besu", "Gas price below configured minimum gas price", retry},
		{"besu", "Upfront cost exceeds account balance", paused},
		{"besu", "Intrinsic gas exceeds gas limit", permanent},
		{"besu", "Transaction gas limit exceeds block gas limit", permanent},
		{"besu", "Invalid signature", permanent},
		{"besu", "Execution reverted", permanent},
		{"besu", "Transaction fee cap exceeded", permanent},

		// OpenEthereum / Parity
		{"openethereum", "Transaction with the same hash was already imported.", known},
		{"openethereum", "Transaction nonce is too low. Try incrementing the nonce.", nonceLow},
		{"openethereum", "Transaction gas price 100wei is too low. There is another transaction with same nonce in the queue with gas price 150wei. Try increasing the gas price or incrementing the nonce.", retry},
		{"openethereum", "There are too many transactions in the queue. Your transaction was dropped due to limit. Try increasing the fee.", retry},
		{"openethereum", "Insufficient funds. The account you tried to send transaction from does not have enough funds. Required 200 and got: 100.", paused},
		{"openethereum", "Transaction gas is too low. There is not enough gas to cover minimal cost of the transaction (minimal: 21000, got: 20000). Try increasing supplied gas.", permanent},
		{"openethereum", "VM execution error.", permanent},

		// L2s and others, from Chainlink's collection.
		{"arbitrum", "nonce too low: address 0x336394A3219e71D9d9bd18201d34E95C1Bb7122C, tx: 8089 state: 8090", nonceLow},
		{"arbitrum", "invalid transaction nonce", nonceLow},
		{"arbitrum", "not enough funds for gas", paused},
		{"arbitrum", "sequencer pending tx pool full, please try again", retry},
		{"arbitrum", "gas price too low", retry},
		{"zksync", "known transaction. transaction with hash 0x6013…3053 is already in the system", known},
		{"zksync", "nonce too low. allowed nonce range: 427 - 447, actual: 426", nonceLow},
		{"klaytn", "there is another tx which has the same nonce in the tx pool", retry},
		{"celo", "insufficient funds for gas * price + value + gatewayFee", paused},
		{"moonriver", "primary http (http://10.0.0.1:9933) call failed: submit transaction to pool failed: Pool(AlreadyImported)", known},
		{"moonriver", "primary http (http://10.0.0.1:9933) call failed: submit transaction to pool failed: Pool(Stale)", nonceLow},
		{"harmony", "transaction already finalized", known},

		// Transport failures that reached us only as text.
		{"http", `Post "http://127.0.0.1:8545": dial tcp 127.0.0.1:8545: connect: connection refused`, retry},
		{"http", `Post "http://127.0.0.1:8545": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`, retry},
		{"http", `429 Too Many Requests: {"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"rate limited"}}`, retry},
		{"nethermind", "call failed: 503 Service Unavailable: <html>\r\n<head><title>503 Service Temporarily Unavailable</title></head></html>", retry},
		{"arbitrum", "call failed: 502 Bad Gateway: <html>\r\n<head><title>502 Bad Gateway</title></head>", retry},

		// Nothing we know: retry, within the job's budget.
		{"unknown", "something nobody has seen before", retry},
		{"unknown", "unknown transaction status", retry},
	}
	for _, tt := range tests {
		t.Run(tt.client+"/"+tt.msg, func(t *testing.T) {
			t.Parallel()
			err := errors.New(tt.msg)
			require.Equal(t, tt.want, txmgr.Classify(err), "bare: %q", tt.msg)
			wrapped := fmt.Errorf("txmgr: broadcast 0xabc: %w", err)
			require.Equal(t, tt.want, txmgr.Classify(wrapped), "wrapped: %q", tt.msg)
			require.NotEmpty(t, txmgr.Reason(err))
		})
	}
}

// TestClassifyOrder pins the reasons whose right answer depends on the order
// of the table, not only on the class.
func TestClassifyOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		msg    string
		class  txmgr.Class
		reason string
		revert bool
	}{
		{"replacement transaction underpriced", txmgr.ClassRetryable, "replacement underpriced", false},
		{"transaction underpriced", txmgr.ClassRetryable, "underpriced", false},
		{"execution reverted: insufficient funds for gas * price + value", txmgr.ClassPermanent, "execution reverted", true},
		{"execution reverted: already known", txmgr.ClassPermanent, "execution reverted", true},
		{"Unknown transaction type not supported", txmgr.ClassPermanent, "tx type not supported", false},
		{"504 Gateway Timeout", txmgr.ClassRetryable, "node unavailable", false},
		{"intrinsic gas too low", txmgr.ClassPermanent, "intrinsic gas too low", false},
		{"max fee per gas less than block base fee", txmgr.ClassRetryable, "fee cap below base fee", false},
	}
	for _, tt := range tests {
		class, reason := txmgr.Explain(errors.New(tt.msg))
		require.Equal(t, tt.class, class, tt.msg)
		require.Equal(t, tt.reason, reason, tt.msg)
		require.Equal(t, tt.revert, txmgr.IsRevert(errors.New(tt.msg)), tt.msg)
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "none", txmgr.ClassNone.String())
	require.Equal(t, "already-known", txmgr.ClassAlreadyKnown.String())
	require.Equal(t, "nonce-too-low", txmgr.ClassNonceTooLow.String())
	require.Equal(t, "retryable", txmgr.ClassRetryable.String())
	require.Equal(t, "paused", txmgr.ClassPaused.String())
	require.Equal(t, "permanent", txmgr.ClassPermanent.String())
	require.Equal(t, "Class(42)", txmgr.Class(42).String())
}

// TestClassifyStructural covers errors recognised by type rather than text.
func TestClassifyStructural(t *testing.T) {
	t.Parallel()

	t.Run("nil", func(t *testing.T) {
		require.Equal(t, txmgr.ClassNone, txmgr.Classify(nil))
		require.Equal(t, "", txmgr.Reason(nil))
		require.False(t, txmgr.IsRevert(nil))
	})
	t.Run("context deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		defer cancel()
		<-ctx.Done()
		err := fmt.Errorf("estimate gas: %w", ctx.Err())
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(err))
		require.Equal(t, "timeout", txmgr.Reason(err))
	})
	t.Run("remote signer unavailable", func(t *testing.T) {
		// Even when its cause would be retryable on its own: the signer
		// pauses, the job waits.
		err := fmt.Errorf("sign tx: kms key k: sign: %w: %w", signer.ErrUnavailable, context.DeadlineExceeded)
		require.Equal(t, txmgr.ClassPaused, txmgr.Classify(err))
		require.Equal(t, "signer unavailable", txmgr.Reason(err))
	})
	t.Run("context canceled", func(t *testing.T) {
		err := fmt.Errorf("send: %w", context.Canceled)
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(err))
		require.Equal(t, "canceled", txmgr.Reason(err))
	})
	t.Run("connection refused from dial", func(t *testing.T) {
		_, err := net.Dial("tcp", closedLoopbackAddr(t))
		require.Error(t, err)
		var opErr *net.OpError
		require.ErrorAs(t, err, &opErr)
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(fmt.Errorf("send: %w", err)))
		require.Equal(t, "connection failed", txmgr.Reason(err))
	})
	t.Run("connection refused from ethclient", func(t *testing.T) {
		client, err := ethclient.Dial("http://" + closedLoopbackAddr(t))
		require.NoError(t, err)
		defer client.Close()
		_, err = client.ChainID(context.Background())
		require.Error(t, err)
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(err), "%v", err)
	})
	t.Run("eof", func(t *testing.T) {
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(fmt.Errorf("read: %w", io.EOF)))
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(fmt.Errorf("read: %w", io.ErrUnexpectedEOF)))
	})
	t.Run("http status values", func(t *testing.T) {
		tests := []struct {
			err    error
			want   txmgr.Class
			reason string
		}{
			{rpc.HTTPError{StatusCode: 429, Status: "429 Too Many Requests"}, txmgr.ClassRetryable, "http 429"},
			{rpc.HTTPError{StatusCode: 503, Status: "503 Service Unavailable"}, txmgr.ClassRetryable, "http 503"},
			{&rpc.HTTPError{StatusCode: 500, Status: "500 Internal Server Error", Body: []byte("execution reverted")}, txmgr.ClassRetryable, "http 500"},
			{rpc.HTTPError{StatusCode: 400, Status: "400 Bad Request", Body: []byte("bad request")}, txmgr.ClassRetryable, "unknown error"},
			// A gateway that answers a JSON-RPC error with a 4xx: the body decides.
			{rpc.HTTPError{StatusCode: 400, Status: "400 Bad Request", Body: []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"nonce too low"}}`)}, txmgr.ClassNonceTooLow, "nonce too low"},
		}
		for _, tt := range tests {
			err := fmt.Errorf("send: %w", tt.err)
			require.Equal(t, tt.want, txmgr.Classify(err), "%v", err)
			require.Equal(t, tt.reason, txmgr.Reason(err), "%v", err)
		}
	})
	t.Run("http status over the wire", func(t *testing.T) {
		for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway} {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, http.StatusText(status), status)
			}))
			client, err := ethclient.Dial(srv.URL)
			require.NoError(t, err)
			_, err = client.ChainID(context.Background())
			client.Close()
			srv.Close()
			require.Error(t, err)
			var httpErr rpc.HTTPError
			require.ErrorAs(t, err, &httpErr)
			require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(err), "%v", err)
			require.Equal(t, "http "+strconv.Itoa(status), txmgr.Reason(err))
		}
	})
	t.Run("http client timeout", func(t *testing.T) {
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(block)
		client, err := ethclient.Dial(srv.URL)
		require.NoError(t, err)
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err = client.ChainID(ctx)
		require.Error(t, err)
		require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(err), "%v", err)
		require.Equal(t, "timeout", txmgr.Reason(err), "%v", err)
	})
	t.Run("json-rpc revert with data", func(t *testing.T) {
		data := hexutil.Encode(errorStringRevert("boom"))
		err := wireError(t, 3, "execution reverted: boom", data)
		require.Equal(t, txmgr.ClassPermanent, txmgr.Classify(err))
		require.True(t, txmgr.IsRevert(err))
	})
	t.Run("json-rpc code 3 with unusual wording", func(t *testing.T) {
		err := wireError(t, 3, "call failed", nil)
		require.Equal(t, txmgr.ClassPermanent, txmgr.Classify(err))
		require.True(t, txmgr.IsRevert(err))
	})
	t.Run("revert data under an unknown message", func(t *testing.T) {
		err := wireError(t, -32015, "the call did not go well", hexutil.Encode(errorStringRevert("boom")))
		require.Equal(t, txmgr.ClassPermanent, txmgr.Classify(err))
		require.True(t, txmgr.IsRevert(err))
	})
	t.Run("pool error carrying a hash keeps its meaning", func(t *testing.T) {
		hash := common.HexToHash("0x7f657507aee0511e36d2d1972a6b22e917cc89f92b6c12c4dbd57eaabb236960")
		err := wireError(t, -32000, "already known", hash.Hex())
		require.Equal(t, txmgr.ClassAlreadyKnown, txmgr.Classify(err))
		require.False(t, txmgr.IsRevert(err))
	})
	t.Run("json-rpc pool errors over the wire", func(t *testing.T) {
		require.Equal(t, txmgr.ClassNonceTooLow, txmgr.Classify(wireError(t, -32000, "nonce too low: next nonce 1, tx nonce 0", nil)))
		require.Equal(t, txmgr.ClassPaused, txmgr.Classify(wireError(t, -32003, "Insufficient funds for gas * price + value", nil)))
		require.Equal(t, txmgr.ClassAlreadyKnown, txmgr.Classify(wireError(t, -32003, "transaction already imported", nil)))
	})
}

// TestClassifyRealNodes provokes each error on a real node and classifies
// what the node actually said: go-ethereum's simulated backend always, and
// anvil when its binary is installed (scripts/install-test-deps.sh).
func TestClassifyRealNodes(t *testing.T) {
	t.Parallel()
	for name, start := range errNodeStarters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			classifyRealNode(t, start(t))
		})
	}
}

func classifyRealNode(t *testing.T, n *errNode) {
	ctx := context.Background()
	to := common.HexToAddress("0x000000000000000000000000000000000000dEaD")
	check := func(what string, err error, want txmgr.Class) {
		t.Helper()
		require.Error(t, err, what)
		t.Logf("%s: %s -> %s (%s)", what, err, txmgr.Classify(err), txmgr.Reason(err))
		require.Equal(t, want, txmgr.Classify(err), "%s: %v", what, err)
	}
	send := func(key *ecdsa.PrivateKey, s errTxSpec) error {
		return n.client.SendTransaction(ctx, n.sign(t, key, s))
	}

	nonce, err := n.client.PendingNonceAt(ctx, n.from)
	require.NoError(t, err)

	// The same signed bytes twice.
	tx := n.sign(t, n.key, errTxSpec{nonce: nonce, to: &to, value: big.NewInt(1), gas: 21000})
	require.NoError(t, n.client.SendTransaction(ctx, tx))
	check("already known", n.client.SendTransaction(ctx, tx), txmgr.ClassAlreadyKnown)

	// Same nonce, same fees, different payload.
	check("replacement underpriced", send(n.key, errTxSpec{nonce: nonce, to: &to, value: big.NewInt(2), gas: 21000}), txmgr.ClassRetryable)

	// After the block, the nonce is used. geth's pool resets after a new
	// head in the background; until it has, it still holds the pending tx
	// and answers "replacement underpriced" instead.
	n.mine(t)
	require.Eventually(t, func() bool {
		err := send(n.key, errTxSpec{nonce: nonce, to: &to, value: big.NewInt(3), gas: 21000})
		return txmgr.Classify(err) == txmgr.ClassNonceTooLow
	}, 10*time.Second, 20*time.Millisecond)
	check("nonce too low", send(n.key, errTxSpec{nonce: nonce, to: &to, value: big.NewInt(3), gas: 21000}), txmgr.ClassNonceTooLow)
	nonce++

	// A key with no ether.
	poor, err := crypto.GenerateKey()
	require.NoError(t, err)
	check("insufficient funds", send(poor, errTxSpec{to: &to, value: big.NewInt(1), gas: 21000}), txmgr.ClassPaused)

	// Too little gas for a transfer carrying data.
	check("intrinsic gas too low", send(n.key, errTxSpec{nonce: nonce, to: &to, gas: 20000, data: make([]byte, 100)}), txmgr.ClassPermanent)

	// More gas than a block holds, at a fee geth's tx fee cap lets through.
	head, err := n.client.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	cheap := new(big.Int).Add(head.BaseFee, big.NewInt(1))
	check("gas above block limit", send(n.key, errTxSpec{nonce: nonce, to: &to, gas: 100_000_000, tip: big.NewInt(1), feeCap: cheap}), txmgr.ClassPermanent)

	// A tip above the fee cap.
	check("tip above fee cap", send(n.key, errTxSpec{nonce: nonce, to: &to, gas: 21000, tip: big.NewInt(10 * params.GWei), feeCap: big.NewInt(params.GWei)}), txmgr.ClassPermanent)

	// Signed for another chain.
	other := n.signFor(t, big.NewInt(999), n.key, errTxSpec{nonce: nonce, to: &to, gas: 21000})
	check("wrong chain id", n.client.SendTransaction(ctx, other), txmgr.ClassPermanent)

	// The nodes differ in what they check where; each case runs where the
	// node rejects it.
	switch n.name {
	case nodeSim:
		// geth prices in the estimate and the pool's limits.
		_, err = n.client.EstimateGas(ctx, ethereum.CallMsg{From: crypto.PubkeyToAddress(poor.PublicKey), To: &to, Value: big.NewInt(params.Ether)})
		check("estimate: insufficient funds", err, txmgr.ClassPaused)
		_, err = n.client.EstimateGas(ctx, ethereum.CallMsg{From: n.from, To: &to, GasFeeCap: big.NewInt(1), GasTipCap: big.NewInt(1)})
		check("estimate: fee cap below base fee", err, txmgr.ClassRetryable)
		check("tip below pool minimum", send(n.key, errTxSpec{nonce: nonce, to: &to, gas: 21000, tip: big.NewInt(0)}), txmgr.ClassRetryable)
		check("oversized data", send(n.key, errTxSpec{nonce: nonce, to: &to, gas: 10_000_000, data: make([]byte, 200_000)}), txmgr.ClassPermanent)
		check("fee above node's cap", send(n.key, errTxSpec{nonce: nonce, to: &to, gas: 1 << 32}), txmgr.ClassPermanent)
	case nodeAnvil:
		// anvil checks the fee cap against the base fee on send (geth
		// parks such a transaction instead), and its estimates check
		// neither fees nor balance.
		check("fee cap below base fee", send(n.key, errTxSpec{nonce: nonce, to: &to, gas: 21000, tip: big.NewInt(1), feeCap: big.NewInt(1)}), txmgr.ClassRetryable)
	}

	// A revert, from the estimate that comes before any nonce is taken.
	boom := n.deploy(t, revertingInitCode(errorStringRevert("boom")))
	_, err = n.client.EstimateGas(ctx, ethereum.CallMsg{From: n.from, To: &boom})
	check("revert", err, txmgr.ClassPermanent)
	require.True(t, txmgr.IsRevert(err))

	// An invalid opcode: a halt, not a revert, and just as final.
	invalid := n.deploy(t, runtimeInitCode([]byte{0xfe}))
	_, err = n.client.EstimateGas(ctx, ethereum.CallMsg{From: n.from, To: &invalid})
	check("invalid opcode", err, txmgr.ClassPermanent)
	require.False(t, txmgr.IsRevert(err))

	// An endless loop: the estimate gives up at its gas cap. Ambiguous (the
	// cap may be the balance), so retryable within the job's budget.
	loop := n.deploy(t, runtimeInitCode([]byte{0x5b, 0x60, 0x00, 0x56})) // JUMPDEST PUSH1 0 JUMP
	_, err = n.client.EstimateGas(ctx, ethereum.CallMsg{From: n.from, To: &loop})
	check("gas required exceeds allowance", err, txmgr.ClassRetryable)
}

// errNodeStarters start the real nodes the tests provoke errors from.
var errNodeStarters = map[string]func(*testing.T) *errNode{
	nodeSim:   startSimErrNode,
	nodeAnvil: startAnvilErrNode,
}

const (
	nodeSim   = "geth-simulated"
	nodeAnvil = "anvil"
)

// errNode is a real node with a funded key, for provoking real errors.
type errNode struct {
	name    string
	client  errNodeClient
	chainID *big.Int
	key     *ecdsa.PrivateKey
	from    common.Address
	mine    func(t *testing.T) // seal the pending transactions into a block
}

// errNodeClient is the part of ethclient both nodes serve.
type errNodeClient interface {
	ethereum.TransactionSender
	ethereum.GasEstimator
	ethereum.ContractCaller
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	PendingNonceAt(ctx context.Context, account common.Address) (uint64, error)
	TransactionReceipt(ctx context.Context, txHash common.Hash) (*types.Receipt, error)
}

func newErrNodeKey(t *testing.T) (*ecdsa.PrivateKey, common.Address) {
	t.Helper()
	key, err := crypto.GenerateKey()
	require.NoError(t, err)
	return key, crypto.PubkeyToAddress(key.PublicKey)
}

// startSimErrNode starts go-ethereum's simulated backend with a funded key.
func startSimErrNode(t *testing.T) *errNode {
	t.Helper()
	key, from := newErrNodeKey(t)
	backend := simulated.NewBackend(types.GenesisAlloc{
		from: {Balance: new(big.Int).Mul(big.NewInt(1000), big.NewInt(params.Ether))},
	})
	t.Cleanup(func() { _ = backend.Close() })
	client := backend.Client()
	chainID, err := client.ChainID(context.Background())
	require.NoError(t, err)
	return &errNode{
		name: nodeSim, client: client, chainID: chainID, key: key, from: from,
		mine: func(*testing.T) { backend.Commit() },
	}
}

// startAnvilErrNode starts anvil (testenv: fails, never skips, when it is
// not installed) without automine, so a sent transaction stays in the pool
// until mine is called.
func startAnvilErrNode(t *testing.T) *errNode {
	t.Helper()
	node := testenv.Anvil(t, "--no-mining", "--quiet")
	rc, err := rpc.Dial(node.URL())
	require.NoError(t, err)
	t.Cleanup(rc.Close)
	client := ethclient.NewClient(rc)
	chainID, err := client.ChainID(context.Background())
	require.NoError(t, err)

	key, from := newErrNodeKey(t)
	balance := new(big.Int).Mul(big.NewInt(1000), big.NewInt(params.Ether))
	require.NoError(t, rc.Call(nil, "anvil_setBalance", from, hexutil.EncodeBig(balance)))
	return &errNode{
		name: nodeAnvil, client: client, chainID: chainID, key: key, from: from,
		mine: func(t *testing.T) { require.NoError(t, rc.Call(nil, "evm_mine")) },
	}
}

// errTxSpec describes a dynamic-fee transaction; zero fees mean "a fair price
// for the current base fee".
type errTxSpec struct {
	nonce       uint64
	to          *common.Address
	value       *big.Int
	gas         uint64
	tip, feeCap *big.Int
	data        []byte
}

func (n *errNode) sign(t *testing.T, key *ecdsa.PrivateKey, s errTxSpec) *types.Transaction {
	t.Helper()
	return n.signFor(t, n.chainID, key, s)
}

func (n *errNode) signFor(t *testing.T, chainID *big.Int, key *ecdsa.PrivateKey, s errTxSpec) *types.Transaction {
	t.Helper()
	if s.tip == nil {
		s.tip = big.NewInt(params.GWei)
	}
	if s.feeCap == nil {
		head, err := n.client.HeaderByNumber(context.Background(), nil)
		require.NoError(t, err)
		s.feeCap = new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), s.tip)
	}
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
		ChainID: chainID, Nonce: s.nonce, GasTipCap: s.tip, GasFeeCap: s.feeCap,
		Gas: s.gas, To: s.to, Value: s.value, Data: s.data,
	})
	require.NoError(t, err)
	return tx
}

// deploy creates a contract from initCode and returns its address.
func (n *errNode) deploy(t *testing.T, initCode []byte) common.Address {
	t.Helper()
	ctx := context.Background()
	nonce, err := n.client.PendingNonceAt(ctx, n.from)
	require.NoError(t, err)
	gas, err := n.client.EstimateGas(ctx, ethereum.CallMsg{From: n.from, Data: initCode})
	require.NoError(t, err)
	tx := n.sign(t, n.key, errTxSpec{nonce: nonce, gas: gas * 2, data: initCode})
	require.NoError(t, n.client.SendTransaction(ctx, tx))
	n.mine(t)
	receipt, err := n.client.TransactionReceipt(ctx, tx.Hash())
	require.NoError(t, err)
	require.Equal(t, types.ReceiptStatusSuccessful, receipt.Status)
	return receipt.ContractAddress
}

// runtimeInitCode returns creation code that deploys runtime as is:
// CODECOPY the runtime that follows this 12-byte prefix, then RETURN it.
func runtimeInitCode(runtime []byte) []byte {
	n := byte(len(runtime)) // the contracts here are under 256 bytes
	prefix := []byte{
		0x60, n, // PUSH1 len(runtime)
		0x60, 12, // PUSH1 offset of runtime in this code
		0x60, 0, // PUSH1 0 (memory offset)
		0x39,    // CODECOPY
		0x60, n, // PUSH1 len(runtime)
		0x60, 0, // PUSH1 0
		0xf3, // RETURN
	}
	return append(prefix, runtime...)
}

// revertingInitCode returns creation code for a contract whose every call
// reverts with payload: the runtime CODECOPYs the payload that follows its
// own 12-byte prefix into memory and REVERTs with it.
func revertingInitCode(payload []byte) []byte {
	n := byte(len(payload))
	runtime := append([]byte{
		0x60, n, // PUSH1 len(payload)
		0x60, 12, // PUSH1 offset of payload in the runtime
		0x60, 0, // PUSH1 0
		0x39,    // CODECOPY
		0x60, n, // PUSH1 len(payload)
		0x60, 0, // PUSH1 0
		0xfd, // REVERT
	}, payload...)
	return runtimeInitCode(runtime)
}

// errorStringRevert is the ABI encoding of Error(reason), built by hand so
// the test does not trust the code under test to produce its own input.
func errorStringRevert(reason string) []byte {
	out := crypto.Keccak256([]byte("Error(string)"))[:4]
	out = append(out, common.LeftPadBytes([]byte{0x20}, 32)...)
	out = append(out, common.LeftPadBytes(big.NewInt(int64(len(reason))).Bytes(), 32)...)
	padded := make([]byte, (len(reason)+31)/32*32)
	copy(padded, reason)
	return append(out, padded...)
}

// closedLoopbackAddr returns a loopback address nothing listens on.
func closedLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// wireError returns the error go-ethereum's RPC client produces when a node
// answers with this JSON-RPC error object, by serving it over HTTP.
func wireError(t *testing.T, code int, message string, data interface{}) error {
	t.Helper()
	srv := rpc.NewServer()
	require.NoError(t, srv.RegisterName("test", &wireErrorService{err: &wireRPCError{code, message, data}}))
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Stop()
	client, err := rpc.Dial(hs.URL)
	require.NoError(t, err)
	defer client.Close()
	err = client.Call(nil, "test_fail")
	require.Error(t, err)
	return err
}

type wireErrorService struct{ err error }

func (s *wireErrorService) Fail() error { return s.err }

// wireRPCError is what a server-side handler returns to make go-ethereum's
// RPC server put code, message and data on the wire.
type wireRPCError struct {
	code int
	msg  string
	data interface{}
}

func (e *wireRPCError) Error() string          { return e.msg }
func (e *wireRPCError) ErrorCode() int         { return e.code }
func (e *wireRPCError) ErrorData() interface{} { return e.data }
