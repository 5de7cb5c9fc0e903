package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

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
	d := startDev(t)
	base := d.base
	// The banner's curl body is what we send.
	m := regexp.MustCompile(`-d '(\{[^']*\})'`).FindStringSubmatch(d.banner)
	require.Len(t, m, 2, d.banner)
	require.Contains(t, d.banner, base+"/monitor/")
	res, err := http.Post(base+"/v1/jobs", "application/json", strings.NewReader(m[1]))
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusAccepted, res.StatusCode, string(body))
	loc := res.Header.Get("Location")
	require.True(t, strings.HasPrefix(loc, "/v1/jobs/"), loc)
	id := strings.TrimPrefix(loc, "/v1/jobs/")
	d.waitConfirmed(t, id)
	// The UI the banner points at lists the job, confirmed (dev has no
	// keys: the page is open, as the API is).
	require.Contains(t, d.banner, base+"/ui/")
	res, err = http.Get(base + "/ui/?status=confirmed")
	require.NoError(t, err)
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, string(body))
	require.Contains(t, string(body), `<tr data-id="`+id+`">`)
	// The monitor works on the embedded Redis.
	res, err = http.Get(base + "/monitor/api/queues")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	require.NoError(t, d.stop(t))
}
