package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
)

// A node URL carrying a provider's key in its user info, path and query,
// behind `relayq api` and `relayq worker` processes on real Redis and
// anvil. The node first rejects a job's estimate with a message repeating
// the key (the job fails, a webhook goes out), then goes down. Every
// answer (without a key and with), the job records in Redis, the webhook
// bodies, /metrics and every log line of both processes are searched for
// the key: none holds it.
func TestNodeURLSecretLeaksNowhere(t *testing.T) {
	t.Parallel()
	const secret = "e2e-N0DE-S3CRET-c9a4"
	c, counter := newCluster(t, clusterOptions{proxy: true})

	var mu sync.Mutex
	var hooks []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks = append(hooks, string(b)+fmt.Sprint(r.Header))
		mu.Unlock()
	}))
	t.Cleanup(receiver.Close)

	url := strings.Replace(c.proxy.URL(), "http://", "http://u-"+secret+":p-"+secret+"@", 1) + "/v2/" + secret + "?apikey=" + secret
	env := append(append([]string{}, c.env...),
		"RELAYQ_RPC_URL="+url,
		"RELAYQ_WEBHOOK_SECRET=e2e-webhook-secret-0123456789abcdef0123",
		"RELAYQ_WEBHOOK_ALLOW_CIDRS=127.0.0.0/8",
	)
	worker := testenv.Start(t, "secret-worker", c.bin, env, nil, "worker")
	port := testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	apiProc := testenv.Start(t, "secret-api", c.bin, append([]string{"RELAYQ_LISTEN=127.0.0.1:" + fmt.Sprint(port), "RELAYQ_API_KEYS=" + testAPIKey}, env...), func() error {
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
	var seen []string // every answer
	do := func(method, path, body, key string) testenv.Response {
		t.Helper()
		r, err := testenv.Request(nil, base, key, method, path, body)
		require.NoError(t, err)
		seen = append(seen, fmt.Sprintf("%s %s: %d %s %v", method, path, r.Status, r.Body, r.Header))
		return r
	}
	waitJob := func(id string, done func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			r := do(http.MethodGet, "/v1/jobs/"+id, "", testAPIKey)
			if done(string(r.Body)) || time.Now().After(deadline) {
				return string(r.Body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// 1. The node answers the estimate with an error that repeats the URL.
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_estimateGas"}, RPCError: &testenv.RPCErrorSpec{
		Code: 3, Message: "execution reverted: gateway " + url + " refused key " + secret,
	}, Times: 1})
	r := do(http.MethodPost, "/v1/jobs", `{"to":"`+counter+`","function":"increment()","webhook_url":"`+receiver.URL+`/hook"}`, testAPIKey)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	failed := secretJobID(t, r.Body)
	body := waitJob(failed, func(b string) bool {
		return strings.Contains(b, `"status":"failed"`) && strings.Contains(b, `"deliveries":1`)
	})
	require.Contains(t, body, `"status":"failed"`, body)
	require.Contains(t, body, "refused key", "the node's message is in the job, redacted: %s", body)
	t.Logf("failed job: %s", body)

	// 2. The node goes down.
	c.proxy.Down()
	r = do(http.MethodPost, "/v1/jobs", `{"to":"`+counter+`","function":"increment()","webhook_url":"`+receiver.URL+`/hook"}`, testAPIKey)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	waiting := secretJobID(t, r.Body)
	for _, rq := range []struct{ method, path, body, key string }{
		{http.MethodGet, "/readyz", "", ""},
		{http.MethodGet, "/metrics", "", ""},
		{http.MethodGet, "/v1/signers", "", testAPIKey},
		{http.MethodPost, "/v1/calls", `{"to":"` + counter + `","function":"count()"}`, testAPIKey},
		{http.MethodPost, "/v1/jobs", `{"to":"` + counter + `","function":"increment()","simulate":true}`, testAPIKey},
		{http.MethodGet, "/v1/jobs/" + failed, "", testAPIKey},
		{http.MethodGet, "/v1/jobs?limit=10", "", testAPIKey},
	} {
		do(rq.method, rq.path, rq.body, rq.key)
	}
	require.Contains(t, strings.Join(seen, "\n"), "/…", "the node is still named, redacted")
	// Let the worker try the waiting job against the dead node a few times.
	time.Sleep(3 * time.Second)
	do(http.MethodGet, "/v1/jobs/"+waiting, "", testAPIKey)

	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	var stored []string
	keys, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		v, err := rdb.Dump(ctx, k).Result()
		require.NoError(t, err)
		stored = append(stored, k+" "+v)
	}

	_ = apiProc.Stop() // flushes its log; how it exits is not this test's matter
	_ = worker.Stop()
	logs := ""
	for _, p := range []*testenv.Process{apiProc, worker} {
		b, err := os.ReadFile(p.LogPath())
		require.NoError(t, err)
		logs += string(b)
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, hooks, "the failed job's webhook was delivered")
	for what, text := range map[string]string{
		"answers": strings.Join(seen, "\n"), "redis": strings.Join(stored, "\n"),
		"webhooks": strings.Join(hooks, "\n"), "logs": logs,
	} {
		require.NotContains(t, text, secret, what)
	}
	require.Contains(t, logs, "127.0.0.1", "the processes did log about the node")
}

// secretJobID reads a 202's job id.
func secretJobID(t *testing.T, body []byte) string {
	t.Helper()
	var j struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal(body, &j), string(body))
	require.NotEmpty(t, j.ID, string(body))
	return j.ID
}
