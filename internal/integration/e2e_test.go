package integration

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// cluster is relayq as separate processes (one API, several workers) on
// anvil (optionally behind a fault-injecting proxy) and a redis-server, the
// way an operator runs it.
type cluster struct {
	t       *testing.T
	anvil   *testenv.AnvilNode
	proxy   *testenv.RPCProxy
	redis   *testenv.RedisServer
	node    *txmgr.RPC // straight to anvil, for checks
	apiURL  string
	workers []*testenv.Process
	env     []string
	bin     string
}

type clusterOptions struct {
	workers   int
	anvilArgs []string
	proxy     bool     // put an RPCProxy between relayq and anvil
	env       []string // extra environment for every relayq process
	redisURL  string   // a Redis deployment the test started (Sentinel, Cluster); "": a redis-server of its own
}

func newCluster(t *testing.T, opts clusterOptions) (*cluster, string) {
	t.Helper()
	ctx := context.Background()
	c := &cluster{t: t, bin: testenv.RelayqBinary(t), anvil: testenv.Anvil(t, opts.anvilArgs...)}
	redisURL := opts.redisURL
	if redisURL == "" {
		c.redis = testenv.Redis(t)
		redisURL = c.redis.URL()
	}
	var err error
	c.node, err = txmgr.Dial(ctx, c.anvil.URL(), 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(c.node.Close)
	keys := c.anvil.Keys()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Seal a block while waiting, in case anvil does not mine by itself.
	counter, err := devchain.DeployCounter(dctx, c.node, keys[1], func() { _, _ = c.anvil.Call(dctx, "evm_mine") })
	require.NoError(t, err)
	rpcURL := c.anvil.URL()
	if opts.proxy {
		c.proxy = testenv.NewRPCProxy(t, c.anvil.URL())
		rpcURL = c.proxy.URL()
	}
	c.env = append([]string{
		"REDIS_URL=" + redisURL,
		"RELAYQ_RPC_URL=" + rpcURL,
		"RELAYQ_PRIVATE_KEYS=" + fmt.Sprintf("%x", crypto.FromECDSA(keys[0])),
		"RELAYQ_POLL_INTERVAL=200ms",
		"RELAYQ_WORKER_CONCURRENCY=16",
		"RELAYQ_RPC_TIMEOUT=3s",
		"RELAYQ_LOG_LEVEL=info",
	}, opts.env...)
	for range opts.workers {
		c.addWorker()
	}
	c.startAPI()
	return c, counter.Hex()
}

// startAPI starts the `relayq api` process the cluster's requests go to.
func (c *cluster) startAPI() { c.apiURL = c.launchAPI("api") }

// launchAPI starts a `relayq api` process named name on a free port, with
// c.env, waits until it is ready and returns its base URL.
func (c *cluster) launchAPI(name string) string {
	c.t.Helper()
	port := testenv.FreePort(c.t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	apiEnv := append([]string{"RELAYQ_LISTEN=127.0.0.1:" + fmt.Sprint(port), "RELAYQ_API_KEYS=" + testAPIKey}, c.env...)
	testenv.Start(c.t, name, c.bin, apiEnv, func() error {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", res.StatusCode)
		}
		return nil
	}, "api")
	return base
}

// addWorker starts one more `relayq worker` process with extra env.
func (c *cluster) addWorker(env ...string) *testenv.Process {
	p := testenv.Start(c.t, fmt.Sprintf("worker-%d", len(c.workers)), c.bin, append(append([]string{}, c.env...), env...), nil, "worker")
	c.workers = append(c.workers, p)
	return p
}

func (c *cluster) request(method, path, body string) (int, []byte, error) {
	return c.requestWith(method, path, body)
}

// requestWith sends a request with extra headers (name, value pairs).
func (c *cluster) requestWith(method, path, body string, headers ...string) (int, []byte, error) {
	r, err := testenv.Request(nil, c.apiURL, testAPIKey, method, path, body, headers...)
	return r.Status, r.Body, err
}

// post submits n jobs from 16 concurrent clients and returns their ids.
func (c *cluster) post(n int, body string) []string {
	c.t.Helper()
	ids := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				code, b, err := c.request(http.MethodPost, "/v1/jobs", body)
				if err == nil && code != http.StatusAccepted {
					err = fmt.Errorf("POST: %d %s", code, b)
				}
				if err != nil {
					errs <- err
					return
				}
				var j jobs.Job
				if err := jsonUnmarshal(b, &j); err != nil {
					errs <- err
					return
				}
				ids[i] = j.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(c.t, err)
	}
	return ids
}

// waitAll polls until every job is terminal (bounded) and returns them.
func (c *cluster) waitAll(ids []string, within time.Duration) []jobs.Job {
	c.t.Helper()
	deadline := time.Now().Add(within)
	out := make([]jobs.Job, len(ids))
	done := make([]bool, len(ids))
	for {
		left := 0
		for i, id := range ids {
			if done[i] {
				continue
			}
			code, b, err := c.request(http.MethodGet, "/v1/jobs/"+id, "")
			if err != nil || code != http.StatusOK {
				left++
				continue
			}
			require.NoError(c.t, jsonUnmarshal(b, &out[i]))
			if out[i].Status.Terminal() {
				done[i] = true
			} else {
				left++
			}
		}
		if left == 0 {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d jobs not terminal after %v", left, len(ids), within)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestEndToEndTwoWorkersOneKey is the acceptance run of the core pipeline:
// 200 jobs through a relayq API process and two worker processes sharing
// one key, on anvil with 1 s blocks.
func TestEndToEndTwoWorkersOneKey(t *testing.T) {
	t.Parallel()
	c, counter := newCluster(t, clusterOptions{workers: 2, anvilArgs: []string{"--block-time", "1"}})
	const n = 200
	start := time.Now()
	ids := c.post(n, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter))
	accepted := time.Since(start)
	all := c.waitAll(ids, 3*time.Minute)
	elapsed := time.Since(start)

	requireOncePerNonce(t, all, n)
	for _, j := range all {
		require.Len(t, j.Attempts, 1)
	}
	c.requireExecutedOnce(n, counter)
	t.Logf("e2e: %d jobs, 2 workers, 1 key: accepted in %v, all confirmed in %v", n, accepted.Round(time.Millisecond), elapsed.Round(time.Millisecond))
}

// requireOncePerNonce requires every job confirmed and the signer's nonces
// 0..n-1 each bound to exactly one of them: no nonce twice, no gap.
func requireOncePerNonce(t *testing.T, all []jobs.Job, n int) {
	t.Helper()
	seen := map[uint64]string{}
	for _, j := range all {
		require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
		require.NotNil(t, j.Nonce)
		require.Empty(t, seen[*j.Nonce], "nonce %d bound to two jobs", *j.Nonce)
		seen[*j.Nonce] = j.ID
	}
	for i := range uint64(n) {
		require.NotEmpty(t, seen[i], "nonce %d unused: the sequence has a gap", i)
	}
}

// requireExecutedOnce requires the chain to agree: the sample contract
// counted n calls, and the signer used n nonces with nothing left pending.
func (c *cluster) requireExecutedOnce(n int, counter string) {
	c.t.Helper()
	require.Equal(c.t, uint64(n), counterValue(c.t, c.node, commonAddr(counter)), "the contract counted every job exactly once")
	latest, pending := c.nonces()
	require.Equal(c.t, uint64(n), latest)
	require.Equal(c.t, latest, pending, "nothing left in the pool")
}

// nonces returns the signer's latest and pending nonce, straight from anvil.
func (c *cluster) nonces() (latest, pending uint64) {
	c.t.Helper()
	ctx := context.Background()
	signer := crypto.PubkeyToAddress(c.anvil.Keys()[0].PublicKey)
	latest, err := c.node.NonceAt(ctx, signer, nil)
	require.NoError(c.t, err)
	pending, err = c.node.PendingNonceAt(ctx, signer)
	require.NoError(c.t, err)
	return latest, pending
}
