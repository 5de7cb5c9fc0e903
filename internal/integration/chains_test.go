package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// testChain is one anvil chain of a multi-chain test, with the sample
// contract deployed on it.
type testChain struct {
	name    string
	id      uint64
	anvil   *testenv.AnvilNode
	node    *txmgr.RPC
	counter common.Address
}

func startTestChain(t *testing.T, name string, id uint64) *testChain {
	t.Helper()
	ctx := context.Background()
	ch := &testChain{name: name, id: id, anvil: testenv.Anvil(t, "--block-time", "1", "--chain-id", fmt.Sprint(id))}
	var err error
	ch.node, err = txmgr.Dial(ctx, ch.anvil.URL(), 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(ch.node.Close)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ch.counter, err = devchain.DeployCounter(dctx, ch.node, testenv.AnvilKeys()[1], func() { _, _ = ch.anvil.Call(dctx, "evm_mine") })
	require.NoError(t, err)
	return ch
}

// writeConfig writes a relayq.yaml and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relayq.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// TestTwoChainsAtOnce runs one API process and one worker process serving
// two anvil chains from one relayq.yaml and one Redis: jobs on both (by
// name, by chain id, and a batch), each confirmed once on its own chain at
// contiguous nonces of the same key, with each chain's own confirmations.
func TestTwoChainsAtOnce(t *testing.T) {
	t.Parallel()
	alpha, beta := startTestChain(t, "alpha", 31337), startTestChain(t, "beta", 31338)
	c := startTwoChains(t, alpha.anvil.URL(), beta.anvil.URL())

	// A request must name its chain, and only one this relayq serves.
	call := incrementOn
	for body, code := range map[string]string{
		"{" + call(alpha) + "}":                                          "chain_required",
		"{" + call(alpha) + `,"chain":"gamma"}`:                          "unknown_chain",
		"{" + call(alpha) + `,"chain":"1"}`:                              "unknown_chain",
		"{" + call(alpha) + `,"chain":31337}`:                            "invalid_type",
		`{"chain":"beta","jobs":[{` + call(beta) + `,"chain":"alpha"}]}`: "unknown_chain",
	} {
		path := "/v1/jobs"
		if strings.Contains(body, `"jobs"`) {
			path = "/v1/jobs/batch"
		}
		status, b, err := c.request(http.MethodPost, path, body)
		require.NoError(t, err)
		require.Equal(t, http.StatusBadRequest, status, "%s: %s", body, b)
		require.Contains(t, string(b), `"code":"`+code+`"`, body)
	}

	const nAlpha, nBeta, nBatch = 60, 60, 20
	ids := c.post(nAlpha, "{"+call(alpha)+`,"chain":"alpha"}`)
	ids = append(ids, c.post(nBeta, "{"+call(beta)+`,"chain":"31338"}`)...) // by chain id
	items := make([]string, nBatch)
	for i := range items {
		items[i] = "{" + call(beta) + "}"
	}
	status, b, err := c.request(http.MethodPost, "/v1/jobs/batch", `{"chain":"beta","jobs":[`+strings.Join(items, ",")+`]}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, status, string(b))
	var batch struct{ Jobs []struct{ ID string } }
	require.NoError(t, json.Unmarshal(b, &batch))
	require.Len(t, batch.Jobs, nBatch)
	for _, j := range batch.Jobs {
		ids = append(ids, j.ID)
	}

	all := c.waitAll(ids, 3*time.Minute) // GET /v1/jobs/{id} finds each job on its chain
	byChain := map[uint64][]jobs.Job{}
	for i, j := range all {
		want := beta
		if i < nAlpha {
			want = alpha
		}
		require.Equal(t, want.id, j.ChainID, "job %s", j.ID)
		require.Equal(t, want.counter.Hex(), j.To)
		byChain[j.ChainID] = append(byChain[j.ChainID], j)
	}
	for _, j := range byChain[beta.id] {
		require.Equal(t, uint64(2), j.Confirmations, "beta's jobs take beta's confirmations")
	}
	signer := crypto.PubkeyToAddress(testenv.AnvilKeys()[0].PublicKey)
	for _, ch := range []*testChain{alpha, beta} {
		n := len(byChain[ch.id])
		requireOncePerNonce(t, byChain[ch.id], n) // one key, its own nonces on each chain
		require.Equal(t, uint64(n), counterValue(t, ch.node, ch.counter), "%s counted each of its jobs once", ch.name)
		latest, err := ch.node.NonceAt(context.Background(), signer, nil)
		require.NoError(t, err)
		require.Equal(t, uint64(n), latest, "%s: the signer used exactly one nonce per job", ch.name)
	}

	// Listing is per chain; readiness and signers cover both.
	status, b, err = c.request(http.MethodGet, "/v1/jobs?chain=beta&limit=500", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, string(b))
	var list struct{ Jobs []jobs.Job }
	require.NoError(t, json.Unmarshal(b, &list))
	require.Len(t, list.Jobs, nBeta+nBatch)
	for _, j := range list.Jobs {
		require.Equal(t, beta.id, j.ChainID)
	}
	status, b, err = c.request(http.MethodGet, "/v1/jobs", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, status, string(b))
	require.Contains(t, string(b), "chain_required")
	status, b, err = c.request(http.MethodGet, "/readyz", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"redis":"ok","node_alpha":"ok","node_beta":"ok"}`, string(b))
	// The metrics tell the chains apart: each chain's jobs and its node's calls.
	m := scrape(t, c.apiURL+"/metrics", ids...)
	require.Equal(t, float64(nAlpha), m.Value("relayq_jobs", "chain", "alpha", "status", "confirmed"))
	require.Equal(t, float64(nBeta+nBatch), m.Value("relayq_jobs", "chain", "beta", "status", "confirmed"))
	require.NotZero(t, m.Value("relayq_rpc_requests_total", "chain", "alpha", "method", "eth_chainId"), "the API asked alpha's node")
	require.NotZero(t, m.Value("relayq_rpc_requests_total", "chain", "beta", "method", "eth_chainId"))
	status, b, err = c.request(http.MethodGet, "/v1/signers", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	var signers struct {
		Signers []struct {
			Address  string `json:"address"`
			ChainID  uint64 `json:"chain_id"`
			InFlight int64  `json:"in_flight"`
		}
	}
	require.NoError(t, json.Unmarshal(b, &signers))
	require.Len(t, signers.Signers, 2)
	for i, ch := range []*testChain{alpha, beta} {
		require.Equal(t, signer.Hex(), signers.Signers[i].Address)
		require.Equal(t, ch.id, signers.Signers[i].ChainID)
		require.Zero(t, signers.Signers[i].InFlight)
	}
}

// A chain whose node serves another chain id than the file declares stops
// the process at start, naming the chain, before it takes any job.
func TestConfigChainIDMismatchRefusesToStart(t *testing.T) {
	t.Parallel()
	anvil := testenv.Anvil(t) // chain 31337
	rs := testenv.Redis(t, testenv.WithoutAOF())
	path := writeConfig(t, fmt.Sprintf(`chains:
  - name: mainnet
    chain_id: 1
    rpc_urls: [%s]
    signers: {private_keys_env: KEYS}
`, anvil.URL()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.RelayqBinary(t), "worker")
	cmd.Env = append(os.Environ(), "REDIS_URL="+rs.URL(), "RELAYQ_CONFIG="+path,
		"KEYS="+fmt.Sprintf("%x", crypto.FromECDSA(testenv.AnvilKeys()[0])))
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "chain mainnet: chain_id is 1, but its node serves chain 31337")
	keys, err := redisKeys(rs)
	require.NoError(t, err)
	require.Empty(t, keys, "nothing was written")
}

// redisKeys lists every key of the test's Redis.
func redisKeys(rs *testenv.RedisServer) ([]string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rdb.Close()
	return rdb.Keys(context.Background(), "*").Result()
}

// startTwoChains starts a Redis, one `relayq worker` and one `relayq api`
// process serving the chains alpha (31337) and beta (31338, 2
// confirmations) from one relayq.yaml, with the same key on both.
func startTwoChains(t *testing.T, alphaURL, betaURL string) *cluster {
	t.Helper()
	path := writeConfig(t, fmt.Sprintf(`chains:
  - name: alpha
    chain_id: 31337
    rpc_urls: [%s]
    block_time: 1s
    poll_interval: 200ms
    signers:
      private_keys_env: ALPHA_KEYS
  - name: beta
    chain_id: 31338
    rpc_urls: [%s]
    confirmations: 2
    block_time: 1s
    poll_interval: 200ms
    fees: {max_fee_gwei: 100, bump_percent: 20, stuck_after_blocks: 4}
    signers:
      private_keys_env: BETA_KEYS
`, alphaURL, betaURL))
	key := fmt.Sprintf("%x", crypto.FromECDSA(testenv.AnvilKeys()[0]))
	rs := testenv.Redis(t)
	c := &cluster{t: t, bin: testenv.RelayqBinary(t), redis: rs, env: []string{
		"REDIS_URL=" + rs.URL(), "RELAYQ_CONFIG=" + path, "ALPHA_KEYS=" + key, "BETA_KEYS=" + key,
		"RELAYQ_WORKER_CONCURRENCY=16", "RELAYQ_RPC_TIMEOUT=3s", "RELAYQ_RATE_LIMIT=0", "RELAYQ_LOG_LEVEL=info",
	}}
	c.addWorker()
	c.startAPI()
	return c
}

// incrementOn is the body of a job calling the sample contract of ch.
func incrementOn(ch *testChain) string {
	return fmt.Sprintf(`"to":%q,"function":"increment()"`, ch.counter.Hex())
}

// One chain's node being down, even from the start, leaves the other chain
// served: the API is ready and accepts both chains' jobs, alpha's are
// confirmed, beta's wait queued; once beta's node is back its worker starts
// and they are confirmed too, each once.
func TestChainNodeDownLeavesTheOtherServed(t *testing.T) {
	t.Parallel()
	alpha, beta := startTestChain(t, "alpha", 31337), startTestChain(t, "beta", 31338)
	proxy := testenv.NewRPCProxy(t, beta.anvil.URL())
	proxy.Down()
	c := startTwoChains(t, alpha.anvil.URL(), proxy.URL()) // startAPI waits for /readyz 200

	status, b, err := c.request(http.MethodGet, "/readyz", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	var ready map[string]string
	require.NoError(t, json.Unmarshal(b, &ready))
	require.Equal(t, "ok", ready["node_alpha"])
	require.NotEqual(t, "ok", ready["node_beta"], "beta's node is reported down")

	const n = 30
	onAlpha := c.post(n, "{"+incrementOn(alpha)+`,"chain":"alpha"}`)
	onBeta := c.post(n, "{"+incrementOn(beta)+`,"chain":"beta"}`)
	all := c.waitAll(onAlpha, 2*time.Minute)
	requireOncePerNonce(t, all, n)
	require.Equal(t, uint64(n), counterValue(t, alpha.node, alpha.counter))
	for _, id := range onBeta {
		status, b, err := c.request(http.MethodGet, "/v1/jobs/"+id, "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
		var j jobs.Job
		require.NoError(t, json.Unmarshal(b, &j))
		require.Equal(t, jobs.Queued, j.Status, "beta's job waits for its node")
	}

	proxy.Up()
	all = c.waitAll(onBeta, 2*time.Minute)
	requireOncePerNonce(t, all, n)
	require.Equal(t, uint64(n), counterValue(t, beta.node, beta.counter))
}
