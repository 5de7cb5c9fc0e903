package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestUsageAndUnknownSubcommand(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"relayq", "help"}, envOf(nil), &out, &errOut))
	require.Contains(t, out.String(), "relayq dev")
	require.Error(t, run(context.Background(), []string{"relayq"}, envOf(nil), &out, &errOut))
	err := run(context.Background(), []string{"relayq", "deploy"}, envOf(nil), &out, &errOut)
	require.ErrorContains(t, err, `unknown subcommand "deploy"`)
}

// A misconfigured process stops at start with every bad variable named.
func TestBadConfigurationFailsAtStart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cmd  string
		env  map[string]string
		want []string
	}{
		{"api", map[string]string{}, []string{"RELAYQ_RPC_URL", "RELAYQ_API_KEYS"}},
		{"worker", map[string]string{"RELAYQ_RPC_URL": "http://127.0.0.1:1"}, []string{"RELAYQ_PRIVATE_KEYS"}},
		{"serve", map[string]string{"RELAYQ_RPC_URL": "ftp://x", "RELAYQ_CONFIRMATIONS": "-1"}, []string{"RELAYQ_RPC_URL", "RELAYQ_CONFIRMATIONS", "RELAYQ_PRIVATE_KEYS"}},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"relayq", c.cmd}, envOf(c.env), &out, &errOut)
		require.Error(t, err, c.cmd)
		for _, w := range c.want {
			require.ErrorContains(t, err, w, c.cmd)
		}
	}
	// A bad key is reported without echoing it.
	rs := testenv.Redis(t, testenv.WithoutAOF())
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"relayq", "worker"}, envOf(map[string]string{
		"REDIS_URL": rs.URL(), "RELAYQ_RPC_URL": "http://127.0.0.1:1", "RELAYQ_PRIVATE_KEYS": "0xsecretsecret",
	}), &out, &errOut)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secretsecret")
}

// relayq dev, as the README has a new user run it: it starts, prints a
// working curl, and the job it describes gets confirmed.
func TestDevRunsTheREADMEWalkthrough(t *testing.T) {
	t.Parallel()
	port := testenv.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"relayq", "dev"}, envOf(map[string]string{"RELAYQ_LISTEN": fmt.Sprintf("127.0.0.1:%d", port)}), &out, &errOut)
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("relayq dev exited: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errOut.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "relayq dev not ready: %s", errOut.String())
		time.Sleep(50 * time.Millisecond)
	}
	// The banner's curl body is what we send.
	m := regexp.MustCompile(`-d '(\{[^']*\})'`).FindStringSubmatch(out.String())
	require.Len(t, m, 2, out.String())
	require.Contains(t, out.String(), base+"/monitor/")
	res, err := http.Post(base+"/v1/jobs", "application/json", strings.NewReader(m[1]))
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusAccepted, res.StatusCode, string(body))
	loc := res.Header.Get("Location")
	for {
		res, err := http.Get(base + loc)
		require.NoError(t, err)
		var j struct {
			Status string `json:"status"`
		}
		require.NoError(t, json.NewDecoder(res.Body).Decode(&j))
		res.Body.Close()
		if j.Status == "confirmed" {
			break
		}
		require.NotEqual(t, "failed", j.Status)
		require.True(t, time.Now().Before(deadline), "job still %s", j.Status)
		time.Sleep(100 * time.Millisecond)
	}
	// The monitor works on the embedded Redis.
	res, err = http.Get(base + "/monitor/api/queues")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("relayq dev did not stop after its context ended")
	}
}
