package txmgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/txmgr"
)

// panicRevert is the ABI encoding of Panic(code), built by hand.
func panicRevert(code uint64) []byte {
	out := crypto.Keccak256([]byte("Panic(uint256)"))[:4]
	return append(out, common.LeftPadBytes(new(big.Int).SetUint64(code).Bytes(), 32)...)
}

// customRevert encodes the custom error name declared in a with args.
func customRevert(t *testing.T, a abi.ABI, name string, args ...interface{}) []byte {
	t.Helper()
	e, ok := a.Errors[name]
	require.True(t, ok, "ABI has no error %s", name)
	packed, err := e.Inputs.Pack(args...)
	require.NoError(t, err)
	return append(append([]byte(nil), e.ID[:4]...), packed...)
}

func TestDecodeRevert(t *testing.T) {
	t.Parallel()
	counterABI := contract.ABI
	tooLarge := customRevert(t, counterABI, "TooLarge", big.NewInt(1001), big.NewInt(contract.MaxAdd))
	tooLargeSel := hexutil.Encode(tooLarge[:4])

	richABI, err := abi.JSON(strings.NewReader(`[{"type":"error","name":"Rich","inputs":[
		{"name":"who","type":"address"},{"name":"blob","type":"bytes"},{"name":"note","type":"string"},
		{"name":"small","type":"uint8[]"},{"name":"tag","type":"bytes4"},{"name":"ok","type":"bool"},
		{"name":"","type":"int256"}]}]`))
	require.NoError(t, err)
	who := common.HexToAddress("0x71562b71999873DB5b286dF957af199Ec94617F7")
	rich := customRevert(t, richABI, "Rich", who, []byte{1, 2}, "hi", []uint8{1, 2}, [4]byte{0xde, 0xad, 0xbe, 0xef}, true, big.NewInt(-5))

	// ABIs stored before ParseABI's limits: abi.JSON takes them, and an
	// unbounded decode of these reverts asks for terabytes (E) or half a
	// gigabyte (Big: 1000 elements of 65536 words, from 32 KB of data).
	hostileABI, err := abi.JSON(strings.NewReader(`[
		{"type":"error","name":"E","inputs":[{"name":"","type":"uint256[100000000000][10]"}]},
		{"type":"error","name":"Big","inputs":[{"name":"","type":"uint256[65536][]"}]}]`))
	require.NoError(t, err)
	hostileE := append(hostileABI.Errors["E"].ID.Bytes()[:4:4], make([]byte, 320)...)
	hostileBig := append(hostileABI.Errors["Big"].ID.Bytes()[:4:4], common.LeftPadBytes([]byte{0x20}, 32)...)
	hostileBig = append(hostileBig, common.LeftPadBytes(big.NewInt(1000).Bytes(), 32)...)
	hostileBig = append(hostileBig, make([]byte, 32000)...)

	tests := []struct {
		name   string
		data   []byte
		abi    *abi.ABI
		kind   string
		reason string
	}{
		{"hostile fixed array", hostileE, &hostileABI, txmgr.RevertKindCustom,
			"custom error " + hexutil.Encode(hostileE[:4]) + " (E, undecodable arguments)"},
		{"hostile dynamic array", hostileBig, &hostileABI, txmgr.RevertKindCustom,
			"custom error " + hexutil.Encode(hostileBig[:4]) + " (Big, arguments too large to decode safely: " + hexutil.Encode(hostileBig) + ")"},
		{"error string", errorStringRevert("boom"), nil, txmgr.RevertKindError, "boom"},
		{"empty error string", errorStringRevert(""), nil, txmgr.RevertKindError, ""},
		{"long error string", errorStringRevert(strings.Repeat("x", 70)), nil, txmgr.RevertKindError, strings.Repeat("x", 70)},
		{"panic assert", panicRevert(0x01), nil, txmgr.RevertKindPanic, "panic 0x01: assert(false)"},
		{"panic overflow", panicRevert(0x11), nil, txmgr.RevertKindPanic, "panic 0x11: arithmetic underflow or overflow"},
		{"panic division", panicRevert(0x12), nil, txmgr.RevertKindPanic, "panic 0x12: division or modulo by zero"},
		{"panic enum", panicRevert(0x21), nil, txmgr.RevertKindPanic, "panic 0x21: enum overflow"},
		{"panic storage", panicRevert(0x22), nil, txmgr.RevertKindPanic, "panic 0x22: invalid encoded storage byte array accessed"},
		{"panic pop", panicRevert(0x31), nil, txmgr.RevertKindPanic, "panic 0x31: out-of-bounds array access; popping on an empty array"},
		{"panic index", panicRevert(0x32), nil, txmgr.RevertKindPanic, "panic 0x32: out-of-bounds access of an array or bytesN"},
		{"panic memory", panicRevert(0x41), nil, txmgr.RevertKindPanic, "panic 0x41: out of memory"},
		{"panic zero function", panicRevert(0x51), nil, txmgr.RevertKindPanic, "panic 0x51: uninitialized function"},
		{"panic unknown code", panicRevert(0x99), nil, txmgr.RevertKindPanic, "panic: unknown panic code: 0x99"},
		{"custom with abi", tooLarge, &counterABI, txmgr.RevertKindCustom, "TooLarge(given: 1001, max: 1000)"},
		{"custom without abi", tooLarge, nil, txmgr.RevertKindCustom, "custom error " + tooLargeSel},
		{"custom not in abi", []byte{0xde, 0xad, 0xbe, 0xef}, &counterABI, txmgr.RevertKindCustom, "custom error 0xdeadbeef"},
		{"custom with bad arguments", tooLarge[:20], &counterABI, txmgr.RevertKindCustom, "custom error " + tooLargeSel + " (TooLarge, undecodable arguments)"},
		{"custom with rich arguments", rich, &richABI, txmgr.RevertKindCustom,
			`Rich(who: 0x71562b71999873DB5b286dF957af199Ec94617F7, blob: 0x0102, note: "hi", small: [1, 2], tag: 0xdeadbeef, ok: true, arg6: -5)`},
		{"empty", nil, nil, txmgr.RevertKindEmpty, "reverted without a reason"},
		{"too short", []byte{1, 2}, nil, txmgr.RevertKindUnknown, "unrecognised revert data 0x0102"},
		{"error selector only", errorStringRevert("x")[:4], nil, txmgr.RevertKindUnknown, "malformed Error(string) revert 0x08c379a0"},
		{"panic selector only", panicRevert(1)[:4], nil, txmgr.RevertKindUnknown, "malformed Panic(uint256) revert 0x4e487b71"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := txmgr.DecodeRevert(tt.data, tt.abi)
			require.Equal(t, tt.kind, r.Kind)
			require.Equal(t, tt.reason, r.Reason)
			require.Equal(t, len(tt.data), len(r.Data))
		})
	}

	t.Run("data is a copy", func(t *testing.T) {
		data := errorStringRevert("boom")
		r := txmgr.DecodeRevert(data, nil)
		data[0] = 0
		require.Equal(t, errorStringRevert("boom"), r.Data)
	})
}

func TestRevertData(t *testing.T) {
	t.Parallel()
	boom := errorStringRevert("boom")
	boomHex := hexutil.Encode(boom)

	tests := []struct {
		name string
		err  error
		want []byte
		ok   bool
	}{
		{"geth and anvil hex string", wireError(t, 3, "execution reverted: boom", boomHex), boom, true},
		{"openethereum Reverted prefix", wireError(t, -32015, "VM execution error.", "Reverted "+boomHex), boom, true},
		{"bare hex", wireError(t, 3, "execution reverted", strings.TrimPrefix(boomHex, "0x")), boom, true},
		{"nested object", wireError(t, 3, "execution reverted", map[string]interface{}{"data": boomHex}), boom, true},
		{"empty revert", wireError(t, 3, "execution reverted", "0x"), []byte{}, true},
		{"already decoded bytes", &wireRPCError{3, "execution reverted", boom}, boom, true},
		{"already decoded hexutil", &wireRPCError{3, "execution reverted", hexutil.Bytes(boom)}, boom, true},
		{"wrapped twice", fmt.Errorf("job 7: %w", fmt.Errorf("estimate: %w", wireError(t, 3, "execution reverted", boomHex))), boom, true},
		{"joined", errors.Join(errors.New("first"), wireError(t, 3, "execution reverted", boomHex)), boom, true},
		{"no data", wireError(t, 3, "execution reverted", nil), nil, false},
		{"text data", wireError(t, 5, "transaction indexing is in progress", "transaction indexing is in progress"), nil, false},
		{"not an rpc error", errors.New("execution reverted: boom"), nil, false},
		{"nil", nil, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := txmgr.RevertData(tt.err)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRevertFromError(t *testing.T) {
	t.Parallel()
	counterABI := contract.ABI

	r, ok := txmgr.RevertFromError(wireError(t, 3, "execution reverted: boom", hexutil.Encode(errorStringRevert("boom"))), nil)
	require.True(t, ok)
	require.Equal(t, txmgr.Revert{Reason: "boom", Data: errorStringRevert("boom"), Kind: txmgr.RevertKindError}, r)

	data := customRevert(t, counterABI, "TooLarge", big.NewInt(5000), big.NewInt(contract.MaxAdd))
	r, ok = txmgr.RevertFromError(wireError(t, 3, "execution reverted", hexutil.Encode(data)), &counterABI)
	require.True(t, ok)
	require.Equal(t, "TooLarge(given: 5000, max: 1000)", r.Reason)

	// A node that says why in words but sends no data.
	r, ok = txmgr.RevertFromError(errors.New("execution reverted: Ownable: caller is not the owner"), nil)
	require.True(t, ok)
	require.Equal(t, txmgr.RevertKindUnknown, r.Kind)
	require.Equal(t, "Ownable: caller is not the owner", r.Reason)

	r, ok = txmgr.RevertFromError(errors.New("execution reverted"), nil)
	require.True(t, ok)
	require.Equal(t, txmgr.RevertKindEmpty, r.Kind)

	_, ok = txmgr.RevertFromError(errors.New("nonce too low"), nil)
	require.False(t, ok)
	_, ok = txmgr.RevertFromError(nil, nil)
	require.False(t, ok)
}

// TestRevertRealNodes decodes reverts as real nodes report them: a
// hand-assembled contract that reverts with Error("boom"), and the sample
// Counter contract's custom error, panic and Error(string).
func TestRevertRealNodes(t *testing.T) {
	t.Parallel()
	for name, start := range errNodeStarters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			revertRealNode(t, start(t))
		})
	}
}

func revertRealNode(t *testing.T, n *errNode) {
	ctx := context.Background()
	counterABI := contract.ABI

	t.Run("hand-assembled Error(boom)", func(t *testing.T) {
		boom := n.deploy(t, revertingInitCode(errorStringRevert("boom")))
		_, estimateErr := n.client.EstimateGas(ctx, ethereum.CallMsg{From: n.from, To: &boom})
		_, callErr := n.client.CallContract(ctx, ethereum.CallMsg{From: n.from, To: &boom}, nil)
		for _, err := range []error{estimateErr, callErr} {
			require.Error(t, err)
			t.Logf("%s", err)
			require.Equal(t, txmgr.ClassPermanent, txmgr.Classify(err))
			require.True(t, txmgr.IsRevert(err))
			data, ok := txmgr.RevertData(err)
			require.True(t, ok, "no revert data in %v", err)
			require.Equal(t, errorStringRevert("boom"), data)
			r := txmgr.DecodeRevert(data, nil)
			require.Equal(t, txmgr.RevertKindError, r.Kind)
			require.Equal(t, "boom", r.Reason)
		}
	})

	counter := n.deploy(t, contract.Bytecode)
	estimate := func(method string, args ...interface{}) error {
		t.Helper()
		input, err := counterABI.Pack(method, args...)
		require.NoError(t, err)
		_, err = n.client.EstimateGas(ctx, ethereum.CallMsg{From: n.from, To: &counter, Data: input})
		require.Error(t, err)
		t.Logf("%s: %s", method, err)
		require.Equal(t, txmgr.ClassPermanent, txmgr.Classify(err), "%v", err)
		return err
	}

	t.Run("custom error", func(t *testing.T) {
		err := estimate("add", big.NewInt(contract.MaxAdd+1))
		r, ok := txmgr.RevertFromError(err, &counterABI)
		require.True(t, ok)
		require.Equal(t, txmgr.RevertKindCustom, r.Kind)
		require.Equal(t, "TooLarge(given: 1001, max: 1000)", r.Reason)

		noABI, ok := txmgr.RevertFromError(err, nil)
		require.True(t, ok)
		id := counterABI.Errors["TooLarge"].ID
		require.Equal(t, "custom error "+hexutil.Encode(id[:4]), noABI.Reason)
	})
	t.Run("panic", func(t *testing.T) {
		r, ok := txmgr.RevertFromError(estimate("divide", big.NewInt(1), big.NewInt(0)), &counterABI)
		require.True(t, ok)
		require.Equal(t, txmgr.RevertKindPanic, r.Kind)
		require.Equal(t, "panic 0x12: division or modulo by zero", r.Reason)
	})
	t.Run("error string", func(t *testing.T) {
		r, ok := txmgr.RevertFromError(estimate("fail", "nope"), &counterABI)
		require.True(t, ok)
		require.Equal(t, txmgr.RevertKindError, r.Kind)
		require.Equal(t, "nope", r.Reason)
	})
}
