package api

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/txmgr"
)

// chainBundle is an API whose node is the simulated chain reached over
// JSON-RPC through an RPCProxy (to count calls and inject faults), with
// the sample Counter deployed at testCounter.
type chainBundle struct {
	*bundle
	proxy   *testenv.RPCProxy
	counter common.Address
}

// setupChain starts it, with the sample contract's ABI for custom errors
// unless opts say otherwise.
func setupChain(t *testing.T, opts ...func(*Config)) *chainBundle {
	t.Helper()
	b := setup(t, append([]func(*Config){func(c *Config) { c.ErrorABI = &contract.ABI }}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The first deployment of the first dev key: anvil's well-known
	// 0x5FbDB…, the address the OpenAPI examples use.
	counter, err := b.chain.DeployCounter(ctx, b.chain.Keys()[0])
	require.NoError(t, err)
	require.Equal(t, common.HexToAddress(testCounter), counter)
	cb := &chainBundle{bundle: b, proxy: testenv.NewRPCProxy(t, b.chain.URL()), counter: counter}
	node, err := txmgr.Dial(ctx, cb.proxy.URL(), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(node.Close)
	b.srv, err = New(ctx, withNode(b.cfg, node))
	require.NoError(t, err)
	t.Cleanup(func() { b.srv.Close() })
	b.http = httptest.NewServer(b.srv.Handler())
	t.Cleanup(b.http.Close)
	return cb
}

// transact sends a transaction from the second dev key (to nil: a
// deployment), seals a block and returns its receipt.
func (cb *chainBundle) transact(to *common.Address, data []byte) *types.Receipt {
	t := cb.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := cb.chain.Client()
	key := cb.chain.Keys()[1]
	nonce, err := cl.PendingNonceAt(ctx, crypto.PubkeyToAddress(key.PublicKey))
	require.NoError(t, err)
	head, err := cl.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	tx := signTx(t, key, &types.DynamicFeeTx{
		ChainID: big.NewInt(1337), Nonce: nonce, GasTipCap: big.NewInt(1e9),
		GasFeeCap: new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), big.NewInt(1e9)),
		Gas:       3_000_000, To: to, Data: data,
	})
	require.NoError(t, cl.SendTransaction(ctx, tx))
	cb.chain.Commit()
	r, err := cl.TransactionReceipt(ctx, tx.Hash())
	require.NoError(t, err)
	require.Equal(t, types.ReceiptStatusSuccessful, r.Status)
	return r
}

func signTx(t *testing.T, key *ecdsa.PrivateKey, tx *types.DynamicFeeTx) *types.Transaction {
	t.Helper()
	signed, err := types.SignNewTx(key, types.LatestSignerForChainID(tx.ChainID), tx)
	require.NoError(t, err)
	return signed
}

// echoContract returns its calldata without the selector: a call of
// f(T…)(T…) hands back what it was given, ABI-encoded by the EVM's own
// copy, so a read can be checked against its arguments. Runtime:
// CALLDATASIZE PUSH1 4 SWAP1 SUB DUP1 PUSH1 4 PUSH1 0 CALLDATACOPY PUSH1 0
// RETURN, after an initcode that copies it out.
var echoContract = hexutil.MustDecode("0x600e600c600039600e6000f3" + "3660049003806004600037" + "6000f3")

// call posts a read and decodes a 200 answer.
func (cb *chainBundle) call(body string) (response, callAnswer) {
	cb.t.Helper()
	r := cb.do(http.MethodPost, "/v1/calls", body)
	var ans callAnswer
	if r.Status == http.StatusOK {
		require.NoError(cb.t, json.Unmarshal(r.Body, &ans), string(r.Body))
	}
	return r, ans
}

func (cb *chainBundle) head() uint64 {
	cb.t.Helper()
	h, err := cb.chain.Client().HeaderByNumber(context.Background(), nil)
	require.NoError(cb.t, err)
	return h.Number.Uint64()
}

// Reads decode every ABI type family: the echo contract hands the
// arguments of a call back as its result, and the answer's result is the
// arguments as they were sent — integers of every size and sign,
// addresses, bools, strings, bytes, bytesN, dynamic and fixed arrays,
// arrays of tuples and nested tuples. Counter's views decode too.
func TestCallsDecodeEveryTypeFamily(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	cb.srv.reads.setHeadTTL(0) // "latest" is the block the test just sealed
	echo := cb.transact(nil, echoContract).ContractAddress

	types := "uint8,int256,uint64,address,bool,string,bytes,bytes32,bytes4,uint256[],int16[3],(address,uint64)[2],(bool,(string,bytes))"
	a1, a2 := "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
	args := `["255", "-57896044618658097711785492504343953926634992332820282019728792003956564819968", "18446744073709551615",
		"` + a1 + `", true, "héllo, world", "0x0102ff", "0x` + strings.Repeat("ab", 32) + `", "0xdeadbeef",
		["1", "115792089237316195423570985008687907853269984665640564039457584007913129639935"], ["-1", "0", "32767"],
		[["` + a1 + `", "7"], ["` + a2 + `", "8"]], [false, ["nested", "0x"]]]`
	r, ans := cb.call(`{"to":"` + echo.Hex() + `","function":"f(` + types + `)(` + types + `)","args":` + args + `}`)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	got, err := json.Marshal(ans.Result)
	require.NoError(t, err)
	require.JSONEq(t, args, string(got))
	require.Equal(t, cb.head(), *ans.Block)

	// Counter: a uint256, an address[] and a (uint256,string) getter, after
	// a store that fills them.
	key := "0x" + strings.Repeat("11", 32)
	data, err := contract.ABI.Pack("store", common.HexToHash(key), []common.Address{common.HexToAddress(a1), common.HexToAddress(a2)},
		contract.Entry{Amount: big.NewInt(7), Note: "a note"})
	require.NoError(t, err)
	before := cb.head()
	cb.transact(&cb.counter, data)
	inc, _ := contract.ABI.Pack("increment")
	cb.transact(&cb.counter, inc)
	c := cb.counter.Hex()
	for _, tc := range []struct{ body, want string }{
		{`{"to":"` + c + `","function":"count()(uint256)"}`, `["1"]`},
		{`{"to":"` + c + `","function":"MAX_ADD()(uint256)"}`, `["1000"]`},
		{`{"to":"` + c + `","function":"divide(uint256,uint256)(uint256)","args":["10",3]}`, `["3"]`},
		{`{"to":"` + c + `","function":"membersOf(bytes32)(address[])","args":["` + key + `"]}`, `[["` + a1 + `","` + a2 + `"]]`},
		{`{"to":"` + c + `","function":"entries(bytes32)(uint256,string)","args":["` + key + `"]}`, `["7","a note"]`},
		{`{"to":"` + c + `","function":"entries(bytes32)(uint256,string)","args":["0x` + strings.Repeat("00", 32) + `"]}`, `["0",""]`},
		{`{"to":"` + c + `","function":"count()(uint256)","block":` + jsonNumber(before) + `}`, `["0"]`},
		{`{"to":"` + c + `","function":"count()(uint256)","block":"` + hexutil.EncodeUint64(before) + `"}`, `["0"]`},
		{`{"to":"` + c + `","function":"count()(uint256)","block":"latest"}`, `["1"]`},
		{`{"to":"` + c + `","function":"count()(uint256)","block":"pending"}`, `["1"]`},
	} {
		r, ans := cb.call(tc.body)
		require.Equal(t, http.StatusOK, r.Status, "%s: %s", tc.body, r.Body)
		got, err := json.Marshal(ans.Result)
		require.NoError(t, err)
		require.JSONEq(t, tc.want, string(got), tc.body)
	}

	// Without output types, or with raw data, the answer is the raw data.
	for _, body := range []string{
		`{"to":"` + c + `","function":"count()"}`,
		`{"to":"` + c + `","data":"0x06661abd"}`,
	} {
		r, ans := cb.call(body)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		require.Nil(t, ans.Result)
		require.NotContains(t, string(r.Body), `"result"`)
		require.Equal(t, "0x"+strings.Repeat("00", 31)+"01", ans.Raw)
	}
	_, ans = cb.call(`{"to":"` + c + `","function":"count()(uint256)","block":"pending"}`)
	require.Nil(t, ans.Block, "pending has no number")
}

func jsonNumber(n uint64) string { return new(big.Int).SetUint64(n).String() }

// A read that reverts is 422 reverted with the decoded reason and the raw
// revert data: Error(string), a panic, a custom error by name (the API has
// the contract's ABI) or by selector (it has not). A result that does not
// decode as the output types is 422 call_failed.
func TestCallsRevertReasons(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	c := cb.counter.Hex()
	for _, tc := range []struct{ body, code, reason, data string }{
		{`{"to":"` + c + `","function":"fail(string)","args":["not today"]}`, CodeReverted, "not today", "0x08c379a0"},
		{`{"to":"` + c + `","function":"divide(uint256,uint256)(uint256)","args":[1,0]}`, CodeReverted, "panic 0x12: division or modulo by zero", "0x4e487b71"},
		{`{"to":"` + c + `","function":"add(uint256)","args":[2000]}`, CodeReverted, "TooLarge(given: 2000, max: 1000)", "0x"},
	} {
		r, _ := cb.call(tc.body)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
		e := revertErr(t, r)
		require.Equal(t, tc.code, e.Code)
		require.Contains(t, e.RevertReason, tc.reason)
		require.Equal(t, "execution reverted: "+e.RevertReason, e.Message)
		require.True(t, strings.HasPrefix(e.RevertData, tc.data), e.RevertData)
	}
	// No contract at the address: nothing to decode.
	r, _ := cb.call(`{"to":"0x0000000000000000000000000000000000000bad","function":"count()(uint256)"}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	require.Equal(t, "undecodable_result", r.err(t).Code)
	require.Contains(t, r.err(t).Message, "no data")

	// Without the ABI a custom error is named by its selector.
	plain := setupChain(t, func(c *Config) { c.ErrorABI = nil })
	r, _ = plain.call(`{"to":"` + c + `","function":"add(uint256)","args":[2000]}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	id := contract.ABI.Errors["TooLarge"].ID
	sel := hexutil.Encode(id[:4])
	require.Equal(t, "custom error "+sel, revertErr(t, r).RevertReason)
}

// revertFields is the error body of a 422.
type revertFields struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	Field        string `json:"field"`
	RevertReason string `json:"revert_reason"`
	RevertData   string `json:"revert_data"`
}

func revertErr(t *testing.T, r response) revertFields {
	t.Helper()
	var e struct {
		Error revertFields `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &e), string(r.Body))
	return e.Error
}

// Bad reads are 400s that name the field, and reach no node.
func TestCallsBadRequests(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	c := cb.counter.Hex()
	calls := cb.proxy.Calls("eth_call")
	for _, tc := range []struct{ body, code, field string }{
		{`{"function":"count()(uint256)"}`, "missing_field", "to"},
		{`{"to":"0x12","function":"count()(uint256)"}`, "invalid_address", "to"},
		{`{"to":"` + c + `","function":"count()(uint256)","gas_limit":1}`, "unknown_field", "gas_limit"},
		{`{"to":"` + c + `","function":"count()(uint7)"}`, "invalid_function", "function"},
		{`{"to":"` + c + `","function":"add(uint256)","args":[]}`, "wrong_arg_count", "args"},
		{`{"to":"` + c + `","function":"add(uint256)","args":["x"]}`, "invalid_argument", "args[0]"},
		{`{"to":"` + c + `","function":"count()","data":"0x"}`, "conflicting_fields", "data"},
		{`{"to":"` + c + `","function":"count()","block":"earliest"}`, "invalid_block", "block"},
		{`{"to":"` + c + `","function":"count()","block":-1}`, "invalid_block", "block"},
		{`{"to":"` + c + `","function":"count()","block":"0xzz"}`, "invalid_block", "block"},
		{`{"to":"` + c + `","function":"count()","block":1.5}`, "invalid_block", "block"},
		{`{"to":"` + c + `","function":"count()","block":true}`, "invalid_block", "block"},
		{`{"to":"` + c + `","function":"count()","block":99999999}`, "out_of_range", "block"},
		{`{"to":"` + c + `","value":"-1"}`, "out_of_range", "value"},
	} {
		r := cb.do(http.MethodPost, "/v1/calls", tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", tc.body, r.Body)
		e := r.err(t)
		require.Equal(t, tc.code, e.Code, "%s: %s", tc.body, e.Message)
		require.Equal(t, tc.field, e.Field, tc.body)
	}
	require.Equal(t, calls, cb.proxy.Calls("eth_call"), "no bad read reached the node")
	r := cb.do(http.MethodPost, "/v1/calls", `{"to":"`+c+`"}`, "Content-Type", "text/plain")
	require.Equal(t, "unsupported_media_type", r.err(t).Code)
	r = cb.do(http.MethodPost, "/v1/calls", `{"to":"`+c+`"}`, "Authorization", "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
}

// setHeadTTL changes how long the head is reused, under the cache's lock.
func (r *readCache) setHeadTTL(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.headTTL = d
}

// Reads at the head are cached per head: the same read again costs no
// eth_call, a new head (seen when the head is read again) drops the cache,
// and the head is read at most once per request.
func TestCallsCachePerHead(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	c := cb.counter.Hex()
	count := `{"to":"` + c + `","function":"count()(uint256)"}`
	calls := func() int { return cb.proxy.Calls("eth_call") }
	heads := func() int { return cb.proxy.Calls("eth_getBlockByNumber") }
	cb.srv.reads.setHeadTTL(time.Hour) // the test moves the head itself

	c0, h0 := calls(), heads()
	r1, a1 := cb.call(count)
	r2, a2 := cb.call(count)
	require.Equal(t, http.StatusOK, r1.Status)
	require.Equal(t, r1.Body, r2.Body)
	require.Equal(t, a1, a2)
	require.Equal(t, c0+1, calls(), "the second read came from the cache")
	require.Equal(t, h0+1, heads())

	// Another sender or block is another read; a revert is cached too.
	cb.call(`{"to":"` + c + `","function":"count()(uint256)","from":"` + cb.signer.Hex() + `"}`)
	require.Equal(t, c0+2, calls())
	fail := `{"to":"` + c + `","function":"fail(string)","args":["x"]}`
	for range 2 {
		r, _ := cb.call(fail)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	}
	require.Equal(t, c0+3, calls())

	// The chain moves on; until the API reads the head again, "latest"
	// is the block it knows, and cached.
	inc, _ := contract.ABI.Pack("increment")
	cb.transact(&cb.counter, inc)
	_, a3 := cb.call(count)
	require.Equal(t, a1, a3)
	require.Equal(t, c0+3, calls())
	// Asking for the new block reads the head once, which drops the cache.
	r4, a4 := cb.call(`{"to":"` + c + `","function":"count()(uint256)","block":` + jsonNumber(*a1.Block+1) + `}`)
	require.Equal(t, http.StatusOK, r4.Status, string(r4.Body))
	require.Equal(t, []any{"1"}, a4.Result)
	require.Equal(t, c0+4, calls())
	require.Equal(t, h0+2, heads())
	_, a5 := cb.call(count)
	require.Equal(t, a4, a5, "latest is now the new block, cached")
	require.Equal(t, c0+4, calls())
	// An older block is read from the node every time.
	old := `{"to":"` + c + `","function":"count()(uint256)","block":` + jsonNumber(*a1.Block) + `}`
	for range 2 {
		_, a := cb.call(old)
		require.Equal(t, []any{"0"}, a.Result)
	}
	require.Equal(t, c0+6, calls())

	// With no reuse, every read of latest reads the head exactly once.
	cb.srv.reads.setHeadTTL(0)
	h := heads()
	for range 3 {
		cb.call(count)
	}
	require.Equal(t, h+3, heads())
}

// Concurrent reads share one read of the head, and one eth_call each
// distinct call.
func TestCallsShareOneHeadRead(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	cb.srv.reads.setHeadTTL(time.Hour)
	heads, calls := cb.proxy.Calls("eth_getBlockByNumber"), cb.proxy.Calls("eth_call")
	const n = 16
	done := make(chan error, n)
	for i := range n {
		from := common.BigToAddress(big.NewInt(int64(i + 1))).Hex()
		req, err := http.NewRequest(http.MethodPost, cb.http.URL+"/v1/calls",
			strings.NewReader(`{"to":"`+cb.counter.Hex()+`","function":"count()(uint256)","from":"`+from+`"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testKey)
		go func() {
			res, err := http.DefaultClient.Do(req)
			if err == nil {
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", res.StatusCode)
				}
			}
			done <- err
		}()
	}
	for range n {
		require.NoError(t, <-done)
	}
	require.Equal(t, heads+1, cb.proxy.Calls("eth_getBlockByNumber"))
	require.Equal(t, calls+n, cb.proxy.Calls("eth_call"))
}

// The cache is bounded: past maxCachedCalls results nothing more is kept,
// and results too large to keep are not.
func TestReadCacheBounds(t *testing.T) {
	t.Parallel()
	r := newReadCache()
	r.head = &types.Header{Number: big.NewInt(7)}
	for i := range maxCachedCalls + 5 {
		r.store(callKey{block: 7, data: jsonNumber(uint64(i))}, callOutcome{raw: []byte{1}})
	}
	require.Len(t, r.results, maxCachedCalls)
	r.results = map[callKey]callOutcome{}
	r.resBytes = 0
	r.store(callKey{block: 7, data: "big"}, callOutcome{raw: make([]byte, maxCachedCallResult)})
	r.store(callKey{block: 6, data: "old"}, callOutcome{raw: []byte{1}})
	require.Empty(t, r.results, "too large, or not at the head")
}

// Faults of the node: unreachable or answering 5xx is 503 (try again), an
// error that is not about the call is 502 node_error; none is cached, and
// the read works again once the node does.
func TestCallsNodeFaults(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	cb.srv.reads.setHeadTTL(0)
	for i, tc := range []struct {
		name   string
		fault  testenv.Fault
		status int
		code   string
	}{
		{"eth_call 503", testenv.Fault{Methods: []string{"eth_call"}, Status: 503}, 503, CodeUnavailable},
		{"eth_call rate limited", testenv.Fault{Methods: []string{"eth_call"}, Status: 429}, 503, CodeUnavailable},
		{"missing state", testenv.Fault{Methods: []string{"eth_call"}, RPCError: &testenv.RPCErrorSpec{Message: "missing trie node 4d2a (path ) state is not available"}}, 502, CodeNodeError},
		{"head 502", testenv.Fault{Methods: []string{"eth_getBlockByNumber"}, Status: 502}, 503, CodeUnavailable},
		{"head lost", testenv.Fault{Methods: []string{"eth_getBlockByNumber"}, DropAfterForward: true}, 503, CodeUnavailable},
	} {
		// Each case reads as another sender: a result cached by an
		// earlier case would hide the fault.
		count := `{"to":"` + cb.counter.Hex() + `","function":"count()(uint256)","from":"` + common.BigToAddress(big.NewInt(int64(i+1))).Hex() + `"}`
		cb.proxy.Inject(tc.fault)
		r := cb.do(http.MethodPost, "/v1/calls", count)
		require.Equal(t, tc.status, r.Status, "%s: %s", tc.name, r.Body)
		require.Equal(t, tc.code, r.err(t).Code, tc.name)
		cb.proxy.Clear()
		r, ans := cb.call(count)
		require.Equal(t, http.StatusOK, r.Status, "%s: after the fault: %s", tc.name, r.Body)
		require.Equal(t, []any{"0"}, ans.Result)
	}

	count := `{"to":"` + cb.counter.Hex() + `","function":"count()(uint256)"}`
	cb.proxy.Down()
	r := cb.do(http.MethodPost, "/v1/calls", count)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.Equal(t, CodeUnavailable, r.err(t).Code)
	require.Contains(t, r.err(t).Message, "node is unavailable")
	cb.proxy.Up()
	r, _ = cb.call(count)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
}

// safe and finalized are the blocks the node names so.
func TestCallsSafeAndFinalized(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	for tag, n := range map[string]int64{"safe": int64(rpc.SafeBlockNumber), "finalized": int64(rpc.FinalizedBlockNumber)} {
		h, err := cb.chain.Client().HeaderByNumber(context.Background(), big.NewInt(n))
		require.NoError(t, err)
		r, ans := cb.call(`{"to":"` + cb.counter.Hex() + `","data":"0x06661abd","block":"` + tag + `"}`)
		require.Equal(t, http.StatusOK, r.Status, "%s: %s", tag, r.Body)
		require.Equal(t, h.Number.Uint64(), *ans.Block, tag)
	}
}

// The request examples of POST /v1/calls and POST /v1/jobs/batch, sent to
// a real server with the sample contract, get the statuses they document,
// and real answers of the new routes — reads of each shape, batches,
// dry runs, and their errors — fit the documented schemas.
func TestOpenAPIReadsBatchesAndDryRuns(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	cb.srv.reads.setHeadTTL(0)
	s := loadSpec(t)
	key := "0x" + strings.Repeat("11", 32)
	data, err := contract.ABI.Pack("store", common.HexToHash(key), []common.Address{cb.signer}, contract.Entry{Amount: big.NewInt(7), Note: "a note"})
	require.NoError(t, err)
	cb.transact(&cb.counter, data)

	for _, path := range []string{"/v1/calls", "/v1/jobs/batch"} {
		o := s.op(t, http.MethodPost, path)
		base := o.ptr + "/requestBody/content/application~1json"
		examples := mapOf(mustAt(t, s, base+"/examples"))
		require.NotEmpty(t, examples)
		for name := range examples {
			ex, _ := s.resolve(t, base+"/examples/"+escape(name))
			body, err := json.Marshal(ex["value"])
			require.NoError(t, err)
			want, code := http.StatusOK, ""
			if path == "/v1/jobs/batch" {
				want = http.StatusAccepted
			}
			if st, ok := ex["x-expected-status"].(json.Number); ok {
				n, _ := st.Int64()
				want, code = int(n), ex["x-expected-code"].(string)
			}
			r := cb.do(http.MethodPost, path, string(body))
			require.Equal(t, want, r.Status, "%s example %s: %s", path, name, r.Body)
			if code != "" {
				require.Equal(t, code, r.err(t).Code, "%s example %s", path, name)
			}
			ptr, ok := s.response(t, o, r.Status, "application/json")
			require.True(t, ok, "%s example %s: status %d is not documented", path, name, r.Status)
			s.validate(t, ptr, r.Body)
		}
	}

	check := func(path, body string, want int, headers ...string) response {
		t.Helper()
		r := cb.do(http.MethodPost, path, body, headers...)
		require.Equal(t, want, r.Status, "%s %s: %s", path, body, clip(string(r.Body)))
		ptr, ok := s.response(t, s.op(t, http.MethodPost, path), r.Status, "application/json")
		require.True(t, ok, "%s answered %d, which is not documented", path, r.Status)
		s.validate(t, ptr, r.Body)
		return r
	}
	c := cb.counter.Hex()
	check("/v1/calls", `{"to":"`+c+`","function":"entries(bytes32)(uint256,string)","args":["`+key+`"]}`, 200)
	check("/v1/calls", `{"to":"`+c+`","function":"membersOf(bytes32)(address[])","args":["`+key+`"],"from":"`+cb.signer.Hex()+`","value":0}`, 200)
	check("/v1/calls", `{"to":"`+c+`","function":"count()","block":"pending"}`, 200)
	check("/v1/calls", `{"to":"`+c+`","function":"count()(uint256)","block":"finalized"}`, 422) // no contract yet at block 0
	check("/v1/calls", `{"to":"`+c+`","function":"fail(string)","args":["not today"]}`, 422)
	check("/v1/calls", `{"to":"`+c+`","function":"divide(uint256,uint256)(uint256)","args":[1,0]}`, 422)
	check("/v1/calls", `{"to":"`+c+`","function":"count()","block":99999999}`, 400)
	check("/v1/calls", `{"to":"`+c+`"}`, 401, "Authorization", "")
	check("/v1/jobs/batch", `{"jobs":[{"to":"`+c+`","function":"add(uint256)","args":[5000],"simulate":true}]}`, 422)
	check("/v1/jobs/batch", `{"jobs":[{"to":"`+c+`"},{"to":"0x1234"}]}`, 400)
	check("/v1/jobs/batch", `{"jobs":[{"to":"`+c+`"}]}`, 202, "Idempotency-Key", "k")
	check("/v1/jobs/batch", `{"jobs":[{"to":"`+c+`"}]}`, 200, "Idempotency-Key", "k")
	check("/v1/jobs/batch", `{"jobs":[{"to":"`+c+`","value":1}]}`, 409, "Idempotency-Key", "k")
	check("/v1/jobs/batch", addJobs(maxBatchJobs, 9000), 413)
	check("/v1/jobs", `{"to":"`+c+`","function":"add(uint256)","args":[2000],"simulate":true}`, 422)
	check("/v1/jobs", `{"to":"`+c+`","function":"add(uint256)","args":[5],"gas_limit":22000,"simulate":true}`, 422)
	check("/v1/jobs", `{"to":"`+c+`","function":"add(uint256)","args":[5],"simulate":true}`, 202)

	cb.proxy.Inject(testenv.Fault{Methods: []string{"eth_call"}, RPCError: &testenv.RPCErrorSpec{Message: "missing trie node 4d2a (path ) state is not available"}})
	check("/v1/calls", `{"to":"`+c+`","function":"count()(uint256)","block":1}`, 502)
	cb.proxy.Down()
	check("/v1/calls", `{"to":"`+c+`","function":"count()(uint256)"}`, 503)
	check("/v1/jobs", `{"to":"`+c+`","simulate":true}`, 503)
	check("/v1/jobs/batch", `{"jobs":[{"to":"`+c+`","simulate":true}]}`, 503)
}
