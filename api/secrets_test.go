package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/txmgr"
)

// probeClock is a clock the test moves by hand.
type probeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *probeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *probeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Hammering /readyz and /metrics (no key needed for either) costs the node
// one eth_chainId and one eth_getBalance per signer per second of the
// probes' clock, however many requests come, concurrent or not.
func TestReadyzAndMetricsProbeTheNodeAtMostOncePerSecond(t *testing.T) {
	t.Parallel()
	clk := &probeClock{now: time.Unix(1_700_000_000, 0)}
	cb := setupChain(t, func(c *Config) { c.ProbeClock = clk.Now })
	ctx := context.Background()
	node, err := txmgr.Dial(ctx, cb.proxy.URL(), 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(node.Close)
	require.NoError(t, cb.cfg.Metrics.WatchCluster(metrics.Cluster{
		Redis: cb.rdb, Prefix: "relayq:", ChainID: 1337, Node: node, Signers: []common.Address{cb.signer}, Now: clk.Now,
	}))
	chainIDs, balances := cb.proxy.Calls("eth_chainId"), cb.proxy.Calls("eth_getBalance")

	// 520 requests, 260 on each route; 4 at once, /metrics's in-flight limit.
	const ticks, workers, perWorker = 5, 4, 13
	for range ticks {
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for range perWorker {
					for _, path := range []string{"/readyz", "/metrics"} {
						res, err := http.Get(cb.http.URL + path)
						if !assertOK(t, res, err, path) {
							return
						}
					}
				}
			})
		}
		wg.Wait()
		clk.Advance(time.Second)
	}
	gotIDs, gotBal := cb.proxy.Calls("eth_chainId")-chainIDs, cb.proxy.Calls("eth_getBalance")-balances
	t.Logf("%d requests over %d ticks: eth_chainId %d, eth_getBalance %d", 2*ticks*workers*perWorker, ticks, gotIDs, gotBal)
	require.Equal(t, ticks, gotIDs, "one readiness probe per tick")
	require.Equal(t, ticks, gotBal, "one balance probe per signer per tick")
}

// assertOK reports whether a request got a 200, failing the test if not
// (from any goroutine).
func assertOK(t *testing.T, res *http.Response, err error, path string) bool {
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return false
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("%s: %d", path, res.StatusCode)
		return false
	}
	return true
}

// RELAYQ_METRICS_AUTH=1 puts /metrics behind the API keys.
func TestMetricsAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		metricsAuth bool
		key         string
		want        int
	}{
		{"open, no key", false, "", http.StatusOK},
		{"behind keys, no key", true, "", http.StatusUnauthorized},
		{"behind keys, wrong key", true, "wrong-key-0123456789abcdef", http.StatusUnauthorized},
		{"behind keys, key", true, testKey, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *Config) { c.MetricsAuth = tc.metricsAuth })
			r := b.do(http.MethodGet, "/metrics", "", "Authorization", map[bool]string{true: "Bearer " + tc.key, false: ""}[tc.key != ""])
			require.Equal(t, tc.want, r.Status, string(r.Body))
			if tc.want == http.StatusOK {
				require.Contains(t, string(r.Body), "relayq_")
			}
			require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/readyz", "", "Authorization", "").Status, "readiness stays open")
		})
	}
}

// With the node down behind a URL that carries a secret in its user info,
// path and query, no answer of the API and no log line repeats it.
func TestNodeURLSecretReachesNoAnswer(t *testing.T) {
	t.Parallel()
	const secret = "api-N0DE-S3CRET-93e1"
	cb := setupChain(t)
	ctx := context.Background()
	url := strings.Replace(cb.proxy.URL(), "http://", "http://u-"+secret+":p-"+secret+"@", 1) + "/v2/" + secret + "?apikey=" + secret
	node, err := txmgr.Dial(ctx, url, 2*time.Second)
	require.NoError(t, err)
	t.Cleanup(node.Close)
	cfg := withNode(cb.cfg, node)
	cfg.ErrorABI = nil
	srv, err := New(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	h := httptest.NewServer(srv.Handler())
	t.Cleanup(h.Close)
	cb.bundle.http = h
	cb.proxy.Down()

	c := cb.counter.Hex()
	for _, tc := range []struct{ method, path, body, auth string }{
		{http.MethodGet, "/readyz", "", ""},
		{http.MethodGet, "/metrics", "", ""},
		{http.MethodGet, "/v1/signers", "", "key"},
		{http.MethodPost, "/v1/calls", `{"to":"` + c + `","function":"count()"}`, "key"},
		{http.MethodPost, "/v1/jobs", `{"to":"` + c + `","function":"increment()","simulate":true}`, "key"},
		{http.MethodPost, "/v1/jobs/batch", `{"jobs":[{"to":"` + c + `","function":"increment()","simulate":true}]}`, "key"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			headers := []string{}
			if tc.auth == "" {
				headers = []string{"Authorization", ""}
			}
			r := cb.do(tc.method, tc.path, tc.body, headers...)
			require.NotContains(t, string(r.Body), secret, "%d %s", r.Status, r.Body)
			require.NotContains(t, fmt.Sprint(r.Header), secret)
			t.Logf("%d %s", r.Status, r.Body)
		})
	}
	require.NotContains(t, cb.logs.String(), secret)
}
