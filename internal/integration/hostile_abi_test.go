package integration

import (
	"context"
	"crypto/ecdsa"
	"encoding/binary"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// A client's ABI declares a custom error whose decode would allocate
// terabytes, E(uint256[100000000000][10]), and a contract reverts with E's
// selector and 320 zero bytes. Before, registering the ABI succeeded, and
// a read or a job of the contract made the API or the worker process die
// with "fatal error: runtime: out of memory". Now, on a real API and
// worker process on anvil and redis-server:
//   - registering that ABI is a 400 invalid_abi naming error "E";
//   - the same ABI stored before the limits (written straight to Redis),
//     and an ABI within the limits whose error Big(uint256[65536][]) asks
//     for 512 MB from 32 KB of revert data, leave both processes up: the
//     read answers with the revert, the job fails with its raw revert data,
//     and a job after them is confirmed.
func TestHostileABICannotCrashTheProcesses(t *testing.T) {
	t.Parallel()
	c, counter := newCluster(t, clusterOptions{workers: 1, anvilArgs: []string{"--block-time", "1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const hostileSig, bigSig = "E(uint256[100000000000][10])", "Big(uint256[65536][])"
	hostileRevert := append(selector(hostileSig), make([]byte, 320)...)
	const bigLen = 1024
	bigRevert := append(selector(bigSig), common.LeftPadBytes([]byte{0x20}, 32)...)
	bigRevert = append(bigRevert, common.LeftPadBytes(big16(bigLen), 32)...)
	bigRevert = append(bigRevert, make([]byte, 32*bigLen)...)

	hostileAt := deployReverter(ctx, t, c, c.anvil.Keys()[2], hostileRevert)
	bigAt := deployReverter(ctx, t, c, c.anvil.Keys()[3], bigRevert)
	fn := `{"type":"function","name":"f","inputs":[],"outputs":[]}`
	hostileABI := `[` + fn + `,{"type":"error","name":"E","inputs":[{"name":"","type":"uint256[100000000000][10]"}]}]`
	bigABI := `[` + fn + `,{"type":"error","name":"Big","inputs":[{"name":"","type":"uint256[65536][]"}]}]`

	// 1. The hostile ABI is refused, and nothing is registered.
	code, body, err := c.request(http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":"hostile","address":%q,"abi":%s}`, hostileAt.Hex(), hostileABI))
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, code, string(body))
	var e apiErr
	require.NoError(t, jsonUnmarshal(body, &e))
	require.Equal(t, "invalid_abi", e.Error.Code)
	require.Equal(t, "abi", e.Error.Field)
	require.Contains(t, e.Error.Message, `error "E"`)
	require.Contains(t, e.Error.Message, "uint256[100000000000][10]")
	code, _, err = c.request(http.MethodGet, "/v1/contracts/hostile", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code)
	// Inline in a job, too.
	code, body, err = c.request(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"abi":%s,"method":"f"}`, hostileAt.Hex(), hostileABI))
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, code, string(body))

	// 2. The same ABI as a record from before the limits, and an ABI
	// within them whose decode is still too large.
	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
	t.Cleanup(func() { rdb.Close() })
	reg := jobs.NewContracts(rdb, "relayq:")
	_, _, err = reg.Put(ctx, jobs.Contract{Name: "old", Address: hostileAt.Hex(), ABI: []byte(hostileABI), ABIHash: "0x01"}, false)
	require.NoError(t, err)
	code, body, err = c.request(http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":"big","address":%q,"abi":%s}`, bigAt.Hex(), bigABI))
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code, string(body))

	for _, tc := range []struct {
		name, contract string
		revert         []byte
		reason         string
	}{
		{"stored hostile ABI", "old", hostileRevert, "(E, undecodable arguments)"},
		{"decode past the data's bound", "big", bigRevert, "(Big, arguments too large to decode safely: " + hexutil.Encode(bigRevert) + ")"},
	} {
		// A read: the API answers with the revert and stays up.
		code, body, err := c.request(http.MethodPost, "/v1/calls", `{"contract":"`+tc.contract+`","method":"f"}`)
		require.NoError(t, err, tc.name)
		require.Equal(t, http.StatusUnprocessableEntity, code, "%s: %s", tc.name, body)
		var r struct {
			Error struct {
				Code         string `json:"code"`
				RevertReason string `json:"revert_reason"`
			} `json:"error"`
		}
		require.NoError(t, jsonUnmarshal(body, &r))
		require.Equal(t, "reverted", r.Error.Code, tc.name)
		require.Equal(t, "custom error "+hexutil.Encode(tc.revert[:4])+" "+tc.reason, r.Error.RevertReason, tc.name)

		// A job: the worker fails it with the raw revert data and stays up.
		code, body, err = c.request(http.MethodPost, "/v1/jobs", `{"contract":"`+tc.contract+`","method":"f"}`)
		require.NoError(t, err, tc.name)
		require.Equal(t, http.StatusAccepted, code, "%s: %s", tc.name, body)
		var j jobs.Job
		require.NoError(t, jsonUnmarshal(body, &j))
		got := c.waitAll([]string{j.ID}, time.Minute)[0]
		require.Equal(t, jobs.Failed, got.Status, tc.name)
		require.NotNil(t, got.Error, tc.name)
		require.Equal(t, hexutil.Encode(tc.revert), got.Error.RevertData, tc.name)
		require.True(t, strings.HasSuffix(got.Error.RevertReason, tc.reason), "%s: %s", tc.name, got.Error.RevertReason)
	}

	// Both processes are still the ones that started, and still work.
	require.True(t, c.workers[0].Running(), "the worker is up")
	ids := c.post(1, `{"to":"`+counter+`","function":"increment()"}`)
	require.Equal(t, jobs.Confirmed, c.waitAll(ids, time.Minute)[0].Status)
	require.True(t, c.workers[0].Running(), "the worker is up")
}

func selector(sig string) []byte { return crypto.Keccak256([]byte(sig))[:4] }

func big16(n uint16) []byte { return binary.BigEndian.AppendUint16(nil, n) }

// deployReverter deploys a contract that answers every call with a revert
// of exactly data: handwritten runtime code that writes data into memory
// (a selector at 0, then up to two words, then zeros) and reverts with it.
func deployReverter(ctx context.Context, t *testing.T, c *cluster, key *ecdsa.PrivateKey, data []byte) common.Address {
	t.Helper()
	require.GreaterOrEqual(t, len(data), 4)
	code := []byte{0x63} // PUSH4 selector; PUSH1 224; SHL; PUSH1 0; MSTORE
	code = append(code, data[:4]...)
	code = append(code, 0x60, 0xe0, 0x1b, 0x60, 0x00, 0x52)
	for i, off := 0, 4; off+32 <= len(data) && i < 2; i, off = i+1, off+32 {
		// PUSH32 word; PUSH1 off; MSTORE
		code = append(code, 0x7f)
		code = append(code, data[off:off+32]...)
		code = append(code, 0x60, byte(off), 0x52)
	}
	for _, b := range data[min(len(data), 4+64):] {
		require.Zero(t, b, "only the first two words after the selector may be non-zero")
	}
	size := len(data)
	code = append(code, 0x62, byte(size>>16), byte(size>>8), byte(size), 0x60, 0x00, 0xfd) // PUSH3 size; PUSH1 0; REVERT
	// Init code: CODECOPY the runtime (which follows these 12 bytes) to 0 and RETURN it.
	n := len(code)
	initCode := append([]byte{0x61, byte(n >> 8), byte(n), 0x80, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, 0x00, 0xf3}, code...)

	from := crypto.PubkeyToAddress(key.PublicKey)
	chainID, err := c.node.ChainID(ctx)
	require.NoError(t, err)
	nonce, err := c.node.PendingNonceAt(ctx, from)
	require.NoError(t, err)
	head, err := c.node.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
		ChainID: chainID, Nonce: nonce, GasTipCap: common.Big1, GasFeeCap: new(big.Int).Mul(head.BaseFee, big.NewInt(3)), Gas: 1_000_000, Data: initCode,
	})
	require.NoError(t, err)
	require.NoError(t, c.node.SendTransaction(ctx, tx))
	for {
		r, err := c.node.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			require.Equal(t, types.ReceiptStatusSuccessful, r.Status)
			// The deployed code reverts with exactly data.
			_, err := c.node.CallContract(ctx, ethereum.CallMsg{To: &r.ContractAddress}, nil)
			got, ok := txmgr.RevertData(err)
			require.True(t, ok, "%v", err)
			require.Equal(t, data, got)
			return r.ContractAddress
		}
		select {
		case <-ctx.Done():
			t.Fatalf("deploy: %v", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
