package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/api"
	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/txmgr"
	"github.com/relayq/relayq/worker"
)

const testAPIKey = "test-key-0123456789abcdef"

// stack is one relayq (API + worker) on its own redis-server and simulated
// chain, with the sample contract deployed.
type stack struct {
	t       *testing.T
	redis   *testenv.RedisServer
	rdb     *redis.Client
	chain   *devchain.Chain    // the simulated chain, or nil on anvil
	anvil   *testenv.AnvilNode // anvil, or nil
	proxy   *testenv.RPCProxy  // between the worker and the node (stackOptions.proxy), or nil
	runCtx  context.Context
	node    *txmgr.RPC
	backend txmgr.Backend // what the worker uses (node, or a fault wrapper)
	worker  *worker.Worker
	api     *httptest.Server
	counter common.Address
	signer  common.Address
	store   *jobs.Store
}

type stackOptions struct {
	wrap        func(txmgr.Backend) txmgr.Backend // fault injection around the node
	noWorkerRun bool                              // build the worker but do not start it
	anvilArgs   []string                          // run on anvil with these args instead of the simulated chain
	worker      func(*worker.Config)              // adjust the worker's configuration
	proxy       bool                              // the worker reaches the node through an RPCProxy (s.proxy); the API directly
	metrics     *metrics.Metrics                  // shared by the API and the worker, as in relayq serve (nil: none)
	api         func(*api.Config)                 // adjust the API's configuration
}

func newStack(t *testing.T, opts stackOptions) *stack {
	testenv.SkipShort(t, "runs the whole stack")
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &stack{t: t, redis: testenv.Redis(t, testenv.WithoutAOF())}
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redis.Addr()})
	t.Cleanup(func() { s.rdb.Close() })

	var url string
	var keys []*ecdsa.PrivateKey
	var err error
	if opts.anvilArgs != nil {
		s.anvil = testenv.Anvil(t, opts.anvilArgs...)
		url, keys = s.anvil.URL(), s.anvil.Keys()
	} else {
		chain, err := devchain.Start(devchain.Options{BlockTime: 100 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { chain.Close() })
		s.chain = chain
		url, keys = chain.URL(), chain.Keys()
	}
	s.node, err = txmgr.Dial(ctx, url, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(s.node.Close)
	deployCtx, cancelDeploy := context.WithTimeout(ctx, 30*time.Second)
	defer cancelDeploy()
	s.counter, err = devchain.DeployCounter(deployCtx, s.node, keys[1], s.mine)
	require.NoError(t, err)
	s.backend = s.node
	if opts.proxy {
		s.proxy = testenv.NewRPCProxy(t, url)
		via, err := txmgr.Dial(ctx, s.proxy.URL(), 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(via.Close)
		s.backend = via
	}
	if opts.wrap != nil {
		s.backend = opts.wrap(s.backend)
	}
	log := testLogger(t)
	chainID, err := s.node.ChainID(ctx)
	require.NoError(t, err)
	sg := signer.NewKey(keys[0], chainID)
	s.signer = sg.Address()
	wcfg := worker.Config{
		Redis: s.rdb, Prefix: "relayq:", Backend: s.backend, Signers: []signer.Signer{sg},
		Concurrency: 8, PollInterval: 50 * time.Millisecond, SweepAfter: time.Minute,
		MaxFeePerGas: big.NewInt(500e9), ErrorABI: &contract.ABI, Log: log, Metrics: opts.metrics,
	}
	if opts.worker != nil {
		opts.worker(&wcfg)
	}
	s.worker, err = worker.New(ctx, wcfg)
	require.NoError(t, err)
	t.Cleanup(func() { s.worker.Close() })
	s.runCtx = ctx
	if !opts.noWorkerRun {
		s.runWorker()
	}
	acfg := api.Config{
		Redis: s.rdb, RedisConnOpt: asynq.RedisClientOpt{Addr: s.redis.Addr()}, APIKeys: []string{testAPIKey},
		Chains: []api.Chain{{Name: api.DefaultChainName, Prefix: "relayq:", Node: s.node, Confirmations: 1}},
		Log:    log, Metrics: opts.metrics,
	}
	if opts.api != nil {
		opts.api(&acfg)
	}
	srv, err := api.New(ctx, acfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	s.api = httptest.NewServer(srv.Handler())
	t.Cleanup(s.api.Close)
	s.store = jobs.NewStore(s.rdb, "relayq:")
	return s
}

// runWorker starts the worker (once) until the test ends.
func (s *stack) runWorker() {
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(s.runCtx)
	go func() { defer close(done); _ = s.worker.Run(ctx) }()
	s.t.Cleanup(func() { cancel(); <-done })
}

// mine seals a block now: Commit on the simulated chain, evm_mine on anvil.
func (s *stack) mine() {
	if s.chain != nil {
		s.chain.Commit()
		return
	}
	s.anvil.RPC(s.t, "evm_mine")
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("RELAYQ_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// response is an API answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) job(t *testing.T) jobs.Job {
	t.Helper()
	var j jobs.Job
	require.NoError(t, json.Unmarshal(r.Body, &j), string(r.Body))
	return j
}

// apiErr is the error body every failed request carries.
type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

func (r response) err(t *testing.T) apiErr {
	t.Helper()
	var e apiErr
	require.NoError(t, json.Unmarshal(r.Body, &e), string(r.Body))
	require.NotEmpty(t, e.Error.Code, string(r.Body))
	require.NotEmpty(t, e.Error.Message, string(r.Body))
	return e
}

// do sends a request to the API with the test key unless headers override
// Authorization ("" removes it).
func (s *stack) do(method, path, body string, headers ...string) response {
	s.t.Helper()
	r, err := testenv.Request(nil, s.api.URL, testAPIKey, method, path, body, headers...)
	require.NoError(s.t, err)
	return response(r)
}

// submit POSTs a job and requires 202.
func (s *stack) submit(body string, headers ...string) jobs.Job {
	s.t.Helper()
	r := s.do(http.MethodPost, "/v1/jobs", body, headers...)
	require.Equal(s.t, http.StatusAccepted, r.Status, string(r.Body))
	j := r.job(s.t)
	require.Equal(s.t, "/v1/jobs/"+j.ID, r.Header.Get("Location"))
	require.Equal(s.t, jobs.Queued, j.Status)
	return j
}

// wait polls the job until it reaches a terminal status (or want), bounded
// so a broken pipeline fails instead of hanging.
func (s *stack) wait(id string, want jobs.Status) jobs.Job {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := s.do(http.MethodGet, "/v1/jobs/"+id, "")
		require.Equal(s.t, http.StatusOK, r.Status, string(r.Body))
		j := r.job(s.t)
		if j.Status == want || j.Status.Terminal() {
			require.Equal(s.t, want, j.Status, "job %s: %s", id, string(r.Body))
			return j
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("job %s still %s: %s", id, j.Status, r.Body)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// count reads Counter.count() from the chain.
func (s *stack) count() uint64 {
	s.t.Helper()
	return counterValue(s.t, s.node, s.counter)
}

func counterValue(t *testing.T, b txmgr.Backend, counter common.Address) uint64 {
	t.Helper()
	data, err := contract.ABI.Pack("count")
	require.NoError(t, err)
	out, err := b.CallContract(context.Background(), ethereum.CallMsg{To: &counter, Data: data}, nil)
	require.NoError(t, err)
	v, err := contract.ABI.Unpack("count", out)
	require.NoError(t, err)
	return v[0].(*big.Int).Uint64()
}

func jsonBody(t *testing.T, v any) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, json.NewEncoder(&buf).Encode(v))
	return buf.String()
}

func callMsg(to common.Address, data []byte) ethereum.CallMsg {
	return ethereum.CallMsg{To: &to, Data: data}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func commonAddr(s string) common.Address { return common.HexToAddress(s) }

func hexBig(v int64) *big.Int { return big.NewInt(v) }
