package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/relayq/relayq/config"
	"github.com/relayq/relayq/internal/testenv"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	ContainerName string `yaml:"container_name"`
}

// interpolate resolves compose's ${VAR:-default} and ${VAR:?message} with
// the given environment, as `docker compose` would.
func interpolate(t *testing.T, v string, env map[string]string) string {
	re := regexp.MustCompile(`\$\{([A-Z_]+)(:-|:\?)([^}]*)\}`)
	return re.ReplaceAllStringFunc(v, func(m string) string {
		p := re.FindStringSubmatch(m)
		if val := env[p[1]]; val != "" {
			return val
		}
		if p[2] == ":?" {
			t.Fatalf("compose requires %s (%s)", p[1], p[3])
		}
		return p[3]
	})
}

// configVariables lists every variable config.FromEnv reads.
func configVariables() []string {
	var names []string
	_, _ = config.FromEnv(func(k string) string { names = append(names, k); return "" })
	return names
}

// The compose file runs the binary's real subcommands with variables the
// binary reads, and each relayq service's configuration passes Check for
// its role: a drift between the file and the code fails here.
func TestComposeFileMatchesTheBinary(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docker-compose.yml")
	require.NoError(t, err)
	var cf composeFile
	require.NoError(t, yaml.Unmarshal(b, &cf))
	for _, name := range []string{"redis", "anvil", "api", "worker"} {
		require.Contains(t, cf.Services, name)
	}
	redis := cf.Services["redis"]
	require.Contains(t, strings.Join(redis.Command, " "), "--appendonly yes", "jobs must survive a Redis restart")
	require.Contains(t, strings.Join(redis.Command, " "), "--appendfsync always", "exactly-once needs every acknowledged write on disk")
	// Whoever is tempted to switch to everysec reads, next to the line,
	// what it costs.
	require.Regexp(t, `(?s)everysec.*acknowledged.*signed.*--appendfsync", "always"`, string(b))
	require.Contains(t, cf.Volumes, "redis-data")

	known := configVariables()
	roles := map[string]config.Role{"api": config.RoleAPI, "worker": config.RoleWorker, "serve": config.RoleServe}
	env := map[string]string{"RELAYQ_API_KEYS": "compose-test-key-0123456789"}
	for _, name := range []string{"api", "worker"} {
		svc := cf.Services[name]
		require.NotNil(t, svc.Build, "%s is built from this repo's Dockerfile", name)
		require.Len(t, svc.Command, 1, name)
		role, ok := roles[svc.Command[0]]
		require.True(t, ok, "%s runs %q, which is not a relayq subcommand", name, svc.Command[0])
		vars := map[string]string{}
		for k, v := range svc.Environment {
			require.True(t, slices.Contains(known, k), "%s sets %s, which relayq does not read", name, k)
			vars[k] = interpolate(t, v, env)
		}
		cfg, err := config.FromEnv(func(k string) string { return vars[k] })
		require.NoError(t, err, name)
		require.NoError(t, cfg.Check(role), name)
		require.Equal(t, []string{"CMD", "/relayq", "healthcheck"}, svc.Healthcheck.Test[:3], name)
		for _, dep := range []string{"redis", "anvil"} {
			require.Equal(t, "service_healthy", svc.DependsOn[dep].Condition, "%s waits for %s", name, dep)
		}
		require.Equal(t, "redis://redis:6379/0", vars["REDIS_URL"], name)
		require.Equal(t, "http://anvil:8545", vars["RELAYQ_RPC_URL"], name)
	}
	// Workers scale with --scale worker=N: no fixed name, no published port.
	require.Empty(t, cf.Services["worker"].ContainerName)
	require.Empty(t, cf.Services["worker"].Ports)
	// The API is published on loopback only.
	for _, p := range cf.Services["api"].Ports {
		require.True(t, strings.HasPrefix(p, "127.0.0.1:"), p)
	}

	df, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	require.Contains(t, string(df), "CGO_ENABLED=0 go build")
	require.Contains(t, string(df), "./cmd/relayq")
	require.Contains(t, string(df), `ENTRYPOINT ["/relayq"]`)
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer down.Close()
	var out bytes.Buffer
	require.NoError(t, run(ctx, []string{"relayq", "healthcheck", ok.URL}, envOf(nil), &out, &out))
	require.Error(t, run(ctx, []string{"relayq", "healthcheck", down.URL}, envOf(nil), &out, &out))

	// Without a URL: Redis and the node must answer.
	rs := testenv.Redis(t, testenv.WithoutAOF())
	node := testenv.Anvil(t)
	env := map[string]string{"REDIS_URL": rs.URL(), "RELAYQ_RPC_URL": node.URL()}
	require.NoError(t, run(ctx, []string{"relayq", "healthcheck"}, envOf(env), &out, &out))
	rs.Kill()
	require.ErrorContains(t, run(ctx, []string{"relayq", "healthcheck"}, envOf(env), &out, &out), "redis")
}

// With several chains (RELAYQ_CONFIG) one chain's node being down does not
// fail the health check, which names it; every node down does.
func TestHealthcheckSeveralChains(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rs := testenv.Redis(t, testenv.WithoutAOF())
	node := testenv.Anvil(t)
	dead := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
	file := func(urlA, urlB string) string {
		p := filepath.Join(t.TempDir(), "relayq.yaml")
		require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf("chains:\n  - {name: a, chain_id: 31337, rpc_urls: [%s]}\n  - {name: b, chain_id: 5, rpc_urls: [%s]}\n", urlA, urlB)), 0o600))
		return p
	}
	var out bytes.Buffer
	env := map[string]string{"REDIS_URL": rs.URL(), "RELAYQ_CONFIG": file(node.URL(), dead)}
	require.NoError(t, run(ctx, []string{"relayq", "healthcheck"}, envOf(env), &out, &out))
	require.Contains(t, out.String(), "chain b: node:")
	require.NotContains(t, out.String(), "chain a:")

	env["RELAYQ_CONFIG"] = file(dead, dead+"/other")
	err := run(ctx, []string{"relayq", "healthcheck"}, envOf(env), &out, &out)
	require.ErrorContains(t, err, "chain a: node:")
	require.ErrorContains(t, err, "chain b: node:")
}
