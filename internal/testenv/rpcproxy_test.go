package testenv

import (
	"context"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"
)

func proxyTestCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// proxyFixture is anvil behind an RPCProxy, with clients through the proxy
// and straight to anvil.
type proxyFixture struct {
	node   *AnvilNode
	proxy  *RPCProxy
	rpc    *rpc.Client       // through the proxy, on its own transport
	eth    *ethclient.Client // the same, as an ethclient
	direct *ethclient.Client // straight to anvil
}

func newProxyFixture(t *testing.T) *proxyFixture {
	t.Helper()
	node := Anvil(t)
	proxy := NewRPCProxy(t, node.URL())
	transport := &http.Transport{}
	c, err := rpc.DialOptions(proxyTestCtx(t), proxy.URL(), rpc.WithHTTPClient(&http.Client{Transport: transport}))
	require.NoError(t, err)
	direct, err := ethclient.Dial(node.URL())
	require.NoError(t, err)
	t.Cleanup(func() {
		c.Close()
		direct.Close()
		transport.CloseIdleConnections()
	})
	return &proxyFixture{node: node, proxy: proxy, rpc: c, eth: ethclient.NewClient(c), direct: direct}
}

// transfer signs a 1 wei transfer from anvil's first account to its second
// with the next nonce.
func (f *proxyFixture) transfer(t *testing.T) *types.Transaction {
	t.Helper()
	keys := AnvilKeys()
	from := crypto.PubkeyToAddress(keys[0].PublicKey)
	to := crypto.PubkeyToAddress(keys[1].PublicKey)
	nonce, err := f.direct.PendingNonceAt(proxyTestCtx(t), from)
	require.NoError(t, err)
	gasPrice, err := f.direct.SuggestGasPrice(proxyTestCtx(t))
	require.NoError(t, err)
	tx, err := types.SignNewTx(keys[0], types.LatestSignerForChainID(big.NewInt(AnvilChainID)), &types.LegacyTx{
		Nonce:    nonce,
		To:       &to,
		Value:    big.NewInt(1),
		Gas:      21000,
		GasPrice: gasPrice,
	})
	require.NoError(t, err)
	return tx
}

func TestRPCProxyForwards(t *testing.T) {
	t.Parallel()
	f := newProxyFixture(t)
	require.True(t, strings.HasPrefix(f.proxy.URL(), "http://127.0.0.1:"))
	require.NotEqual(t, f.node.URL(), f.proxy.URL())

	id, err := f.eth.ChainID(proxyTestCtx(t))
	require.NoError(t, err)
	require.EqualValues(t, AnvilChainID, id.Int64())
	f.node.RPC(t, "evm_mine")
	n, err := f.eth.BlockNumber(proxyTestCtx(t))
	require.NoError(t, err)
	require.EqualValues(t, 1, n)

	// Errors from the node pass through untouched.
	err = f.rpc.CallContext(proxyTestCtx(t), nil, "no_such_method")
	var rpcErr rpc.Error
	require.ErrorAs(t, err, &rpcErr)

	require.Equal(t, 1, f.proxy.Calls("eth_chainId"))
	require.Equal(t, 1, f.proxy.Calls("eth_blockNumber"))
	require.Equal(t, 1, f.proxy.Calls("no_such_method"))
	require.Zero(t, f.proxy.Calls("evm_mine"), "went straight to anvil")
	require.Zero(t, f.proxy.Faulted())
}

func TestRPCProxyStatusFault(t *testing.T) {
	t.Parallel()
	f := newProxyFixture(t)
	f.proxy.Inject(Fault{Methods: []string{"eth_chainId"}, Status: http.StatusTooManyRequests, Times: 2})

	for i := range 2 {
		_, err := f.eth.ChainID(proxyTestCtx(t))
		var httpErr rpc.HTTPError
		require.ErrorAs(t, err, &httpErr, "call %d", i)
		require.Equal(t, http.StatusTooManyRequests, httpErr.StatusCode)

		_, err = f.eth.BlockNumber(proxyTestCtx(t))
		require.NoError(t, err, "other methods are not affected")
	}
	id, err := f.eth.ChainID(proxyTestCtx(t))
	require.NoError(t, err, "Times: 2 is used up")
	require.EqualValues(t, AnvilChainID, id.Int64())
	require.Equal(t, 3, f.proxy.Calls("eth_chainId"))
	require.Equal(t, 2, f.proxy.Faulted())

	f.proxy.Inject(Fault{Status: http.StatusServiceUnavailable}) // every method, until cleared
	for range 3 {
		_, err := f.eth.BlockNumber(proxyTestCtx(t))
		var httpErr rpc.HTTPError
		require.ErrorAs(t, err, &httpErr)
		require.Equal(t, http.StatusServiceUnavailable, httpErr.StatusCode)
	}
	f.proxy.Clear()
	_, err = f.eth.BlockNumber(proxyTestCtx(t))
	require.NoError(t, err)
	require.Equal(t, 5, f.proxy.Faulted())
}

func TestRPCProxyDelayFault(t *testing.T) {
	t.Parallel()
	f := newProxyFixture(t)
	f.proxy.Inject(Fault{Methods: []string{"eth_blockNumber"}, Delay: 5 * time.Second, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.eth.BlockNumber(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 3*time.Second)
	_, err = f.eth.BlockNumber(proxyTestCtx(t))
	require.NoError(t, err, "Times: 1 is used up")

	// A delayed request is still forwarded after the client gave up, as a
	// slow node would still take it: the transaction lands.
	tx := f.transfer(t)
	f.proxy.Inject(Fault{Methods: []string{"eth_sendRawTransaction"}, Delay: 300 * time.Millisecond, Times: 1})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	require.ErrorIs(t, f.eth.SendTransaction(ctx2, tx), context.DeadlineExceeded)
	require.Eventually(t, func() bool {
		_, _, err := f.direct.TransactionByHash(proxyTestCtx(t), tx.Hash())
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 2, f.proxy.Faulted())
}

func TestRPCProxyDropAfterForward(t *testing.T) {
	t.Parallel()
	f := newProxyFixture(t)
	f.proxy.Inject(Fault{Methods: []string{"eth_sendRawTransaction"}, DropAfterForward: true, Times: 1})

	tx := f.transfer(t)
	err := f.eth.SendTransaction(proxyTestCtx(t), tx)
	require.Error(t, err, "the answer was lost")
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, 1, f.proxy.Calls("eth_sendRawTransaction"), "the client did not retry")

	got, _, err := f.direct.TransactionByHash(proxyTestCtx(t), tx.Hash())
	require.NoError(t, err, "but the node took it")
	require.Equal(t, tx.Hash(), got.Hash())
	require.Equal(t, 1, f.proxy.Faulted())
}

func TestRPCProxyRPCErrorFault(t *testing.T) {
	t.Parallel()
	f := newProxyFixture(t)
	f.proxy.Inject(Fault{
		Methods:  []string{"eth_sendRawTransaction"},
		RPCError: &RPCErrorSpec{Message: "nonce too low: next nonce 5, tx nonce 1"},
		Times:    1,
	})
	f.proxy.Inject(Fault{
		Methods:  []string{"eth_sendRawTransaction"},
		RPCError: &RPCErrorSpec{Code: -32003, Message: "insufficient funds for gas * price + value", Data: "0x1234"},
		Times:    1,
	})

	tx := f.transfer(t)
	err := f.eth.SendTransaction(proxyTestCtx(t), tx)
	var rpcErr rpc.Error
	require.ErrorAs(t, err, &rpcErr)
	require.Equal(t, -32000, rpcErr.ErrorCode(), "the default code")
	require.Equal(t, "nonce too low: next nonce 5, tx nonce 1", err.Error())

	err = f.eth.SendTransaction(proxyTestCtx(t), tx)
	require.ErrorAs(t, err, &rpcErr)
	require.Equal(t, -32003, rpcErr.ErrorCode())
	require.Equal(t, "insufficient funds for gas * price + value", err.Error())
	var dataErr rpc.DataError
	require.ErrorAs(t, err, &dataErr)
	require.Equal(t, "0x1234", dataErr.ErrorData())

	_, _, err = f.direct.TransactionByHash(proxyTestCtx(t), tx.Hash())
	require.ErrorIs(t, err, ethereum.NotFound, "a faulted call is not forwarded")

	require.NoError(t, f.eth.SendTransaction(proxyTestCtx(t), tx), "both rules are used up")
	_, _, err = f.direct.TransactionByHash(proxyTestCtx(t), tx.Hash())
	require.NoError(t, err)
	require.Equal(t, 3, f.proxy.Calls("eth_sendRawTransaction"))
	require.Equal(t, 2, f.proxy.Faulted())
}

func TestRPCProxyBatch(t *testing.T) {
	t.Parallel()
	f := newProxyFixture(t)
	f.node.RPC(t, "evm_mine")

	newBatch := func() ([]rpc.BatchElem, *hexutil.Uint64, *hexutil.Uint64, *hexutil.Uint64) {
		var id1, n, id2 hexutil.Uint64
		return []rpc.BatchElem{
			{Method: "eth_chainId", Result: &id1},
			{Method: "eth_blockNumber", Result: &n},
			{Method: "eth_chainId", Result: &id2},
		}, &id1, &n, &id2
	}

	batch, id1, n, id2 := newBatch()
	require.NoError(t, f.rpc.BatchCallContext(proxyTestCtx(t), batch))
	for _, e := range batch {
		require.NoError(t, e.Error)
	}
	require.EqualValues(t, AnvilChainID, *id1)
	require.EqualValues(t, 1, *n)
	require.EqualValues(t, AnvilChainID, *id2)
	require.Equal(t, 2, f.proxy.Calls("eth_chainId"), "batch elements are counted one by one")
	require.Equal(t, 1, f.proxy.Calls("eth_blockNumber"))

	// An RPCError hits only the matching elements; the rest is forwarded.
	f.proxy.Inject(Fault{Methods: []string{"eth_blockNumber"}, RPCError: &RPCErrorSpec{Code: -32005, Message: "limit exceeded"}, Times: 1})
	batch, id1, _, id2 = newBatch()
	require.NoError(t, f.rpc.BatchCallContext(proxyTestCtx(t), batch))
	require.NoError(t, batch[0].Error)
	require.NoError(t, batch[2].Error)
	require.EqualValues(t, AnvilChainID, *id1)
	require.EqualValues(t, AnvilChainID, *id2)
	var rpcErr rpc.Error
	require.ErrorAs(t, batch[1].Error, &rpcErr)
	require.Equal(t, -32005, rpcErr.ErrorCode())
	require.Equal(t, "limit exceeded", rpcErr.Error())
	require.Equal(t, 1, f.proxy.Faulted(), "a batch is faulted once")

	// Whole-request faults apply to the whole batch.
	f.proxy.Inject(Fault{Methods: []string{"eth_blockNumber"}, Status: http.StatusServiceUnavailable, Times: 1})
	batch, _, _, _ = newBatch()
	err := f.rpc.BatchCallContext(proxyTestCtx(t), batch)
	var httpErr rpc.HTTPError
	require.ErrorAs(t, err, &httpErr)
	require.Equal(t, http.StatusServiceUnavailable, httpErr.StatusCode)

	require.Equal(t, 6, f.proxy.Calls("eth_chainId"))
	require.Equal(t, 3, f.proxy.Calls("eth_blockNumber"))
	require.Equal(t, 2, f.proxy.Faulted())
}

func TestRPCProxyDownUp(t *testing.T) {
	t.Parallel()
	f := newProxyFixture(t)
	url := f.proxy.URL()
	addr := strings.TrimPrefix(url, "http://")

	for round := range 3 { // again and again, with closed connections in TIME_WAIT
		_, err := f.eth.ChainID(proxyTestCtx(t))
		require.NoError(t, err, "round %d", round) // leaves an idle keep-alive connection

		f.proxy.Down()
		f.proxy.Down() // harmless
		_, err = f.eth.ChainID(proxyTestCtx(t))
		require.Error(t, err, "the keep-alive connection is closed too")
		_, err = f.eth.ChainID(proxyTestCtx(t))
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		_, err = net.DialTimeout("tcp", addr, 5*time.Second)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)

		f.proxy.Up()
		f.proxy.Up() // harmless
		require.Equal(t, url, f.proxy.URL())
		id, err := f.eth.ChainID(proxyTestCtx(t))
		require.NoError(t, err, "same client, same URL")
		require.EqualValues(t, AnvilChainID, id.Int64())
	}

	// Down cuts short a request in progress.
	f.proxy.Inject(Fault{Delay: time.Minute})
	errc := make(chan error, 1)
	go func() {
		_, err := f.eth.BlockNumber(proxyTestCtx(t))
		errc <- err
	}()
	require.Eventually(t, func() bool { return f.proxy.Calls("eth_blockNumber") == 1 }, 10*time.Second, 5*time.Millisecond)
	f.proxy.Down()
	select {
	case err := <-errc:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the delayed request outlived Down")
	}
	f.proxy.Clear()
	f.proxy.Up()
	_, err := f.eth.BlockNumber(proxyTestCtx(t))
	require.NoError(t, err)
}

// proxyFakeNode answers every JSON-RPC call with its method name as the result.
func proxyFakeNode(t *testing.T) *httptest.Server {
	t.Helper()
	type call struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
	}
	answer := func(c call) map[string]any {
		return map[string]any{"jsonrpc": "2.0", "id": c.ID, "result": c.Method}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		var batch []call
		if json.Unmarshal(body, &batch) == nil {
			out := []map[string]any{}
			for i := len(batch) - 1; i >= 0; i-- { // answers in reverse order
				if batch[i].ID != nil {
					out = append(out, answer(batch[i]))
				}
			}
			_ = json.NewEncoder(w).Encode(out)
			return
		}
		var c call
		if err := json.Unmarshal(body, &c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(answer(c))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func proxyPost(t *testing.T, client *http.Client, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(proxyTestCtx(t), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestRPCProxyRulesInOrder(t *testing.T) {
	t.Parallel()
	p := NewRPCProxy(t, proxyFakeNode(t).URL)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	const req = `{"jsonrpc":"2.0","id":1,"method":"a"}`

	// A rule without an action lets the next two through; then the 503s.
	p.Inject(Fault{Methods: []string{"a"}, Times: 2})
	p.Inject(Fault{Methods: []string{"a"}, Status: http.StatusServiceUnavailable})
	for range 2 {
		status, body := proxyPost(t, client, p.URL(), req)
		require.Equal(t, http.StatusOK, status)
		require.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":"a"}`, body)
	}
	for range 2 {
		status, _ := proxyPost(t, client, p.URL(), req)
		require.Equal(t, http.StatusServiceUnavailable, status)
	}
	status, _ := proxyPost(t, client, p.URL(), `{"jsonrpc":"2.0","id":1,"method":"b"}`)
	require.Equal(t, http.StatusOK, status, "other methods pass")
	p.Clear()
	status, _ = proxyPost(t, client, p.URL(), req)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 5, p.Calls("a"))
	require.Equal(t, 2, p.Faulted(), "the pass rule is no fault")

	// Not JSON-RPC: forwarded as it is.
	status, _ = proxyPost(t, client, p.URL(), "not json")
	require.Equal(t, http.StatusBadRequest, status, "the node's answer")
}

// The batch answer keeps request order (the node answers in reverse) and
// string ids, and notifications get no answer.
func TestRPCProxyBatchErrorMerge(t *testing.T) {
	t.Parallel()
	p := NewRPCProxy(t, proxyFakeNode(t).URL)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	p.Inject(Fault{Methods: []string{"bad"}, RPCError: &RPCErrorSpec{Code: 3, Message: "execution reverted", Data: json.RawMessage(`"0x08c379a0"`)}})

	status, body := proxyPost(t, client, p.URL(), `[
		{"jsonrpc":"2.0","id":"x","method":"good"},
		{"jsonrpc":"2.0","id":2,"method":"bad"},
		{"jsonrpc":"2.0","method":"bad"},
		{"jsonrpc":"2.0","id":3,"method":"good2"},
		{"jsonrpc":"2.0","method":"note"}
	]`)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `[
		{"jsonrpc":"2.0","id":"x","result":"good"},
		{"jsonrpc":"2.0","id":2,"error":{"code":3,"message":"execution reverted","data":"0x08c379a0"}},
		{"jsonrpc":"2.0","id":3,"result":"good2"}
	]`, body)

	// All elements faulted: nothing is forwarded.
	status, body = proxyPost(t, client, p.URL(), `[{"jsonrpc":"2.0","id":7,"method":"bad"}]`)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `[{"jsonrpc":"2.0","id":7,"error":{"code":3,"message":"execution reverted","data":"0x08c379a0"}}]`, body)

	require.Equal(t, 3, p.Calls("bad"))
	require.Equal(t, 1, p.Calls("note"))
	require.Equal(t, 2, p.Faulted())
}

func TestRPCProxyConcurrentTimes(t *testing.T) {
	t.Parallel()
	p := NewRPCProxy(t, proxyFakeNode(t).URL)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	p.Inject(Fault{Methods: []string{"a"}, Status: http.StatusTooManyRequests, Times: 10})

	const n = 50
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for range n {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodPost, p.URL(), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"a"}`))
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Go(func() { // the rest of the API at the same time
		for range n {
			p.Calls("a")
			p.Faulted()
			p.Inject(Fault{Methods: []string{"never"}, Status: 500}) // after the rule for "a"
		}
	})
	wg.Wait()
	require.Equal(t, map[int]int{http.StatusTooManyRequests: 10, http.StatusOK: n - 10}, statuses)
	require.Equal(t, n, p.Calls("a"))
	require.Equal(t, 10, p.Faulted())
}

func TestRPCProxyUpstreamDown(t *testing.T) {
	t.Parallel()
	node := proxyFakeNode(t)
	p := NewRPCProxy(t, node.URL)
	node.Close()
	status, body := proxyPost(t, http.DefaultClient, p.URL(), `{"jsonrpc":"2.0","id":1,"method":"a"}`)
	require.Equal(t, http.StatusBadGateway, status)
	require.Contains(t, body, "upstream")
}
