package contract_test

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
)

func TestABIHasEverything(t *testing.T) {
	t.Parallel()
	for _, m := range []string{"increment", "add", "fail", "divide", "store", "count", "callsBy", "entries", "membersOf", "MAX_ADD"} {
		require.Contains(t, contract.ABI.Methods, m, "method %s", m)
	}
	require.Contains(t, contract.ABI.Errors, "TooLarge")
	require.Contains(t, contract.ABI.Events, "Incremented")
	require.Contains(t, contract.ABI.Events, "Stored")

	require.Equal(t, "store(bytes32,address[],(uint256,string))", contract.ABI.Methods["store"].Sig)
	require.Equal(t, "TooLarge(uint256,uint256)", contract.ABI.Errors["TooLarge"].Sig)
	require.True(t, contract.ABI.Events["Incremented"].Inputs[0].Indexed, "Incremented.by is indexed")

	require.NotEmpty(t, contract.Bytecode)
	require.NotEmpty(t, contract.ABIJSON)
	require.Contains(t, contract.Source, "contract Counter")
}

// TestArtifactsMatchSource guards against editing Counter.sol without running
// regen.sh: solc appends a hash of the source's metadata to the bytecode, so
// the committed source and bytecode must agree on every function.
func TestArtifactsMatchSource(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("Counter.sol")
	require.NoError(t, err)
	require.Equal(t, string(src), contract.Source)
	for name := range contract.ABI.Methods {
		if !strings.Contains(contract.Source, name) {
			t.Errorf("ABI method %s is not in Counter.sol: run regen.sh", name)
		}
	}
}

// chain is a simulated backend with one funded key.
type chain struct {
	backend *simulated.Backend
	client  simulated.Client
	key     *ecdsa.PrivateKey
	from    common.Address
	chainID *big.Int
	nonce   uint64
}

func newChain(t *testing.T) *chain {
	t.Helper()
	key, err := crypto.GenerateKey()
	require.NoError(t, err)
	from := crypto.PubkeyToAddress(key.PublicKey)
	balance := new(big.Int).Mul(big.NewInt(1000), big.NewInt(1e18))
	backend := simulated.NewBackend(types.GenesisAlloc{from: {Balance: balance}})
	t.Cleanup(func() { _ = backend.Close() })
	c := &chain{backend: backend, client: backend.Client(), key: key, from: from}
	c.chainID, err = c.client.ChainID(ctx(t))
	require.NoError(t, err)
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// send signs and sends a call (to == nil deploys), commits a block and returns
// the receipt.
func (c *chain) send(t *testing.T, to *common.Address, data []byte) *types.Receipt {
	t.Helper()
	gas, err := c.client.EstimateGas(ctx(t), ethereum.CallMsg{From: c.from, To: to, Data: data})
	require.NoError(t, err)
	tip, err := c.client.SuggestGasTipCap(ctx(t))
	require.NoError(t, err)
	head, err := c.client.HeaderByNumber(ctx(t), nil)
	require.NoError(t, err)
	feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip)
	tx, err := types.SignNewTx(c.key, types.LatestSignerForChainID(c.chainID), &types.DynamicFeeTx{
		ChainID:   c.chainID,
		Nonce:     c.nonce,
		GasTipCap: tip,
		GasFeeCap: feeCap,
		Gas:       gas * 12 / 10,
		To:        to,
		Data:      data,
	})
	require.NoError(t, err)
	require.NoError(t, c.client.SendTransaction(ctx(t), tx))
	c.nonce++
	c.backend.Commit()
	receipt, err := c.client.TransactionReceipt(ctx(t), tx.Hash())
	require.NoError(t, err)
	require.Equal(t, types.ReceiptStatusSuccessful, receipt.Status)
	return receipt
}

func (c *chain) deploy(t *testing.T) common.Address {
	t.Helper()
	receipt := c.send(t, nil, contract.Bytecode)
	code, err := c.client.CodeAt(ctx(t), receipt.ContractAddress, nil)
	require.NoError(t, err)
	require.NotEmpty(t, code)
	return receipt.ContractAddress
}

// call runs an eth_call of method and returns its unpacked outputs.
func (c *chain) call(t *testing.T, at common.Address, method string, args ...any) []any {
	t.Helper()
	data, err := contract.ABI.Pack(method, args...)
	require.NoError(t, err)
	out, err := c.client.CallContract(ctx(t), ethereum.CallMsg{From: c.from, To: &at, Data: data}, nil)
	require.NoError(t, err)
	values, err := contract.ABI.Unpack(method, out)
	require.NoError(t, err)
	return values
}

// requireBig compares by value: big.Int's zero has two representations, so
// require.Equal on *big.Int can fail for equal numbers.
func requireBig(t *testing.T, want int64, got any) {
	t.Helper()
	n, ok := got.(*big.Int)
	require.True(t, ok, "got %T, want *big.Int", got)
	require.Zero(t, big.NewInt(want).Cmp(n), "got %s, want %d", n, want)
}

func pack(t *testing.T, method string, args ...any) []byte {
	t.Helper()
	data, err := contract.ABI.Pack(method, args...)
	require.NoError(t, err)
	return data
}

func TestDeployIncrementAndRead(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	at := c.deploy(t)

	requireBig(t, 0, c.call(t, at, "count")[0])

	receipt := c.send(t, &at, pack(t, "increment"))

	requireBig(t, 1, c.call(t, at, "count")[0])
	requireBig(t, 1, c.call(t, at, "callsBy", c.from)[0])

	require.Len(t, receipt.Logs, 1)
	event := contract.ABI.Events["Incremented"]
	log := receipt.Logs[0]
	require.Equal(t, event.ID, log.Topics[0])
	require.Equal(t, common.BytesToHash(c.from.Bytes()), log.Topics[1])
	values, err := event.Inputs.NonIndexed().Unpack(log.Data)
	require.NoError(t, err)
	requireBig(t, 1, values[0])

	c.send(t, &at, pack(t, "add", big.NewInt(contract.MaxAdd)))
	requireBig(t, 1+contract.MaxAdd, c.call(t, at, "count")[0])
}

func TestStoreRoundTripsComplexArguments(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	at := c.deploy(t)

	key := common.HexToHash("0x6b6579")
	who := []common.Address{c.from, common.HexToAddress("0x00000000000000000000000000000000000000aa")}
	entry := contract.Entry{Amount: big.NewInt(42), Note: "héllo, wörld — a string longer than thirty-two bytes"}
	receipt := c.send(t, &at, pack(t, "store", key, who, entry))

	got := c.call(t, at, "entries", key)
	require.Equal(t, entry.Amount, got[0])
	require.Equal(t, entry.Note, got[1])
	require.Equal(t, who, c.call(t, at, "membersOf", key)[0])

	require.Len(t, receipt.Logs, 1)
	event := contract.ABI.Events["Stored"]
	log := receipt.Logs[0]
	require.Equal(t, event.ID, log.Topics[0])
	require.Equal(t, key, log.Topics[1])
	var decoded struct {
		Who   []common.Address
		Entry contract.Entry
	}
	require.NoError(t, contract.ABI.UnpackIntoInterface(&decoded, "Stored", log.Data))
	require.Equal(t, who, decoded.Who)
	require.Equal(t, entry, decoded.Entry)
}

// revertData digs the revert payload out of a node error, as relayq's error
// classification does.
func revertData(t *testing.T, err error) []byte {
	t.Helper()
	require.Error(t, err)
	require.Contains(t, strings.ToLower(err.Error()), "execution reverted")
	var de rpc.DataError
	require.True(t, errors.As(err, &de), "error %T %v carries no data", err, err)
	s, ok := de.ErrorData().(string)
	require.True(t, ok, "error data is %T", de.ErrorData())
	data, err := hexutil.Decode(s)
	require.NoError(t, err)
	return data
}

func TestRevertsDecode(t *testing.T) {
	t.Parallel()
	c := newChain(t)
	at := c.deploy(t)

	t.Run("Error(string) from fail", func(t *testing.T) {
		_, err := c.client.EstimateGas(ctx(t), ethereum.CallMsg{From: c.from, To: &at, Data: pack(t, "fail", "boom")})
		msg, uerr := abi.UnpackRevert(revertData(t, err))
		require.NoError(t, uerr)
		require.Equal(t, "boom", msg)
	})

	t.Run("Panic(0x12) from divide by zero", func(t *testing.T) {
		_, err := c.client.CallContract(ctx(t), ethereum.CallMsg{From: c.from, To: &at, Data: pack(t, "divide", big.NewInt(1), big.NewInt(0))}, nil)
		msg, uerr := abi.UnpackRevert(revertData(t, err))
		require.NoError(t, uerr)
		require.Equal(t, "division or modulo by zero", msg)
	})

	t.Run("custom error TooLarge from add", func(t *testing.T) {
		_, err := c.client.EstimateGas(ctx(t), ethereum.CallMsg{From: c.from, To: &at, Data: pack(t, "add", big.NewInt(contract.MaxAdd+1))})
		data := revertData(t, err)
		tooLarge := contract.ABI.Errors["TooLarge"]
		require.Equal(t, tooLarge.ID[:4], data[:4])
		values, uerr := tooLarge.Unpack(data)
		require.NoError(t, uerr)
		require.Equal(t, []any{big.NewInt(contract.MaxAdd + 1), big.NewInt(contract.MaxAdd)}, values)
	})

	t.Run("divide works", func(t *testing.T) {
		requireBig(t, 3, c.call(t, at, "divide", big.NewInt(7), big.NewInt(2))[0])
	})
}

func TestTallyArtifacts(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("Tally.sol")
	require.NoError(t, err)
	require.Equal(t, string(src), contract.TallySource)
	require.Len(t, contract.TallyABI.Constructor.Inputs, 2, "constructor(uint256,string)")
	require.Contains(t, contract.TallyABI.Errors, "TooLarge")
	require.Contains(t, contract.TallyABI.Methods, "increment")
	require.NotEmpty(t, contract.TallyBytecode)
}
