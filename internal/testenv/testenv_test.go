package testenv_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func redisClient(t *testing.T, srv *testenv.RedisServer) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(srv.URL())
	require.NoError(t, err)
	require.Equal(t, srv.Addr(), opts.Addr)
	opts.MaxRetries = -1 // a killed server must surface as an error, not be retried around
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func TestRedisKeyedWritesSurviveKill(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	client := redisClient(t, srv)

	require.NoError(t, client.Set(ctx(t), "job:1", "queued", 0).Err())
	require.NoError(t, client.Incr(ctx(t), "counter").Err())
	got, err := client.Get(ctx(t), "job:1").Result()
	require.NoError(t, err)
	require.Equal(t, "queued", got)

	port := srv.Port()
	srv.Kill()
	require.False(t, srv.Running())
	require.Error(t, client.Ping(ctx(t)).Err(), "a killed server does not answer")

	srv.Restart()
	require.True(t, srv.Running())
	require.Equal(t, port, srv.Port(), "Restart keeps the port")
	got, err = client.Get(ctx(t), "job:1").Result()
	require.NoError(t, err, "AOF with fsync always keeps acknowledged writes across SIGKILL")
	require.Equal(t, "queued", got)
	n, err := client.Get(ctx(t), "counter").Int()
	require.NoError(t, err)
	require.Equal(t, 1, n)

	aof, err := client.ConfigGet(ctx(t), "appendfsync").Result()
	require.NoError(t, err)
	require.Equal(t, "always", aof["appendfsync"])
}

func TestRedisStopAndRestartRunningServer(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t)
	client := redisClient(t, srv)
	require.NoError(t, client.Set(ctx(t), "k", "v", 0).Err())

	srv.Restart() // running: stops gracefully first
	require.Equal(t, "v", client.Get(ctx(t), "k").Val())

	srv.Stop()
	require.False(t, srv.Running())
	srv.Stop() // stopping a stopped server is harmless
	srv.Kill()
}

func TestRedisWithoutAOF(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t, testenv.WithoutAOF())
	client := redisClient(t, srv)
	require.NoError(t, client.Set(ctx(t), "k", "v", 0).Err())
	cfg, err := client.ConfigGet(ctx(t), "appendonly").Result()
	require.NoError(t, err)
	require.Equal(t, "no", cfg["appendonly"])

	srv.Kill()
	srv.Restart()
	require.ErrorIs(t, client.Get(ctx(t), "k").Err(), redis.Nil, "without AOF nothing survives")
}

func TestRedisServersAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := testenv.Redis(t, testenv.WithoutAOF()), testenv.Redis(t, testenv.WithoutAOF(), testenv.WithRedisArgs("--databases", "4"))
	require.NotEqual(t, a.Addr(), b.Addr())
	require.NotEqual(t, a.DataDir(), b.DataDir())
	require.NoError(t, redisClient(t, a).Set(ctx(t), "only-in-a", 1, 0).Err())
	require.ErrorIs(t, redisClient(t, b).Get(ctx(t), "only-in-a").Err(), redis.Nil)
	dbs, err := redisClient(t, b).ConfigGet(ctx(t), "databases").Result()
	require.NoError(t, err)
	require.Equal(t, "4", dbs["databases"])
}

// TestRedisRawRESP talks to the server without a client library, as a check
// that nothing in between hides a problem.
func TestRedisRawRESP(t *testing.T) {
	t.Parallel()
	srv := testenv.Redis(t, testenv.WithoutAOF())
	conn, err := net.DialTimeout("tcp", srv.Addr(), 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = fmt.Fprint(conn, "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
	require.NoError(t, err)
	want := "+OK\r\n$1\r\nb\r\n"
	buf := make([]byte, len(want))
	_, err = io.ReadFull(conn, buf)
	require.NoError(t, err)
	require.Equal(t, want, string(buf))
}

func TestFreePortNeverRepeats(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for range 50 {
		p := testenv.FreePort(t)
		require.False(t, seen[p], "port %d handed out twice", p)
		require.Greater(t, p, 0)
		seen[p] = true
	}
}

func TestAnvil(t *testing.T) {
	t.Parallel()
	node := testenv.Anvil(t, "--block-time", "1")

	var chainID hexutil.Uint64
	require.NoError(t, json.Unmarshal(node.RPC(t, "eth_chainId"), &chainID))
	require.EqualValues(t, testenv.AnvilChainID, chainID)

	// The hard-coded keys are exactly anvil's accounts, in order.
	var accounts []common.Address
	require.NoError(t, json.Unmarshal(node.RPC(t, "eth_accounts"), &accounts))
	keys := node.Keys()
	require.Len(t, keys, 10)
	require.Len(t, accounts, len(keys))
	for i, key := range keys {
		require.Equal(t, accounts[i], crypto.PubkeyToAddress(key.PublicKey), "key %d", i)
	}

	first := crypto.PubkeyToAddress(keys[0].PublicKey)
	require.Equal(t, common.HexToAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), first)
	var balance hexutil.Big
	require.NoError(t, json.Unmarshal(node.RPC(t, "eth_getBalance", first, "latest"), &balance))
	require.Positive(t, (*big.Int)(&balance).Sign(), "the first dev account is funded")

	// anvil_* / evm_* helpers, and a null result.
	var before, after hexutil.Uint64
	require.NoError(t, json.Unmarshal(node.RPC(t, "eth_blockNumber"), &before))
	node.RPC(t, "evm_mine")
	require.NoError(t, json.Unmarshal(node.RPC(t, "eth_blockNumber"), &after))
	require.Greater(t, after, before)
	node.RPC(t, "anvil_setNonce", first, "0x10")
	var nonce hexutil.Uint64
	require.NoError(t, json.Unmarshal(node.RPC(t, "eth_getTransactionCount", first, "latest"), &nonce))
	require.EqualValues(t, 16, nonce)
	require.JSONEq(t, "null", string(node.RPC(t, "eth_getTransactionReceipt", common.Hash{})))

	// Errors come back as *RPCError through Call.
	_, err := node.Call(ctx(t), "no_such_method")
	var rpcErr *testenv.RPCError
	require.ErrorAs(t, err, &rpcErr)
	require.NotZero(t, rpcErr.Code)

	node.Kill()
	_, err = node.Call(ctx(t), "eth_chainId")
	require.Error(t, err, "a killed node does not answer")
}

func TestAnvilNoMining(t *testing.T) {
	t.Parallel()
	node := testenv.Anvil(t, "--no-mining")
	require.True(t, strings.HasPrefix(node.URL(), "http://127.0.0.1:"))
	var n hexutil.Uint64
	require.NoError(t, json.Unmarshal(node.RPC(t, "eth_blockNumber"), &n))
	require.Zero(t, n)
}

// Missing programs must fail the test with the install hint, never skip it.
func TestMissingProgramsFail(t *testing.T) {
	testenv.SkipShort(t, "the helpers it checks skip under -short")
	// Not parallel: t.Setenv.
	t.Run("anvil from a bad ANVIL_BIN", func(t *testing.T) {
		t.Setenv("ANVIL_BIN", "/nonexistent/anvil")
		msg := requireFatal(t, func(tb testing.TB) { testenv.Anvil(tb) })
		require.Contains(t, msg, "ANVIL_BIN=/nonexistent/anvil")
		require.Contains(t, msg, "scripts/install-test-deps.sh")
	})
	t.Run("redis-server not on PATH", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		msg := requireFatal(t, func(tb testing.TB) { testenv.Redis(tb) })
		require.Contains(t, msg, "redis-server is not on PATH")
		require.Contains(t, msg, "scripts/install-test-deps.sh")
	})
}

// requireFatal runs f with a testing.TB whose Fatalf is recorded instead of
// failing t, and returns the message; f must call Fatalf.
func requireFatal(t *testing.T, f func(testing.TB)) string {
	t.Helper()
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(rec)
	}()
	<-done
	require.True(t, rec.fatal, "expected Fatalf")
	return rec.msg
}

// fatalRecorder catches Fatalf so a test can check that a helper fails.
type fatalRecorder struct {
	testing.TB
	fatal bool
	msg   string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatal = true
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
