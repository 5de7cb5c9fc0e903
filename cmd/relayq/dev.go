package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/relayq/relayq/config"
	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/internal/redisconn"
)

// runDev runs the whole of relayq in one process with nothing to set up: an
// in-process chain with a funded signer and the sample contract, embedded
// Redis unless REDIS_URL is set, the API and a worker.
func runDev(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) error {
	chain, err := devchain.Start(devchain.Options{BlockTime: time.Second})
	if err != nil {
		return err
	}
	defer chain.Close()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The contract is deployed from the second dev key so the signer's
	// nonces start at 0.
	counter, err := chain.DeployCounter(dctx, chain.Keys()[1])
	if err != nil {
		return err
	}

	env := map[string]string{
		"RELAYQ_RPC_URL":          chain.URL(),
		"RELAYQ_PRIVATE_KEYS":     devchain.DevKeys[0],
		"RELAYQ_INSECURE_NO_AUTH": "1",
		"RELAYQ_POLL_INTERVAL":    "250ms",
		"RELAYQ_SWEEP_AFTER":      "10s",
	}
	// Webhooks work out of the box: a fresh secret, and local receivers.
	webhookSecret := randomHex(32)
	env["RELAYQ_WEBHOOK_SECRET"] = webhookSecret
	env["RELAYQ_WEBHOOK_ALLOW_CIDRS"] = "127.0.0.0/8,::1"
	redisNote := ""
	if getenv("REDIS_URL") == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		defer mr.Close()
		// miniredis only expires keys when told time has passed.
		go func() {
			t := time.NewTicker(250 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					mr.FastForward(250 * time.Millisecond)
				}
			}
		}()
		env["REDIS_URL"] = "redis://" + mr.Addr() + "/0"
		redisNote = " (embedded, in memory: jobs are lost when relayq dev stops)"
	}
	if ignored := ignoredShellVars(getenv); len(ignored) > 0 {
		fmt.Fprintf(stderr, "relayq dev: ignoring %s from the environment: dev runs its own chain, keys and secrets\n", strings.Join(ignored, ", "))
	}
	lookup := func(k string) string {
		if v := getenv(k); v != "" && devShellVars[k] {
			return v
		}
		return env[k]
	}
	cfg, err := config.FromEnv(lookup)
	// Parse errors and check errors are reported together.
	err = errors.Join(err, cfg.Check(config.RoleServe))
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// Fail early and clearly if the port is taken.
	if l, err := net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("RELAYQ_LISTEN %s: %w (set RELAYQ_LISTEN=127.0.0.1:8081 to use another port)", cfg.Listen, err)
	} else {
		l.Close()
	}

	signerAddr := crypto.PubkeyToAddress(chain.Keys()[0].PublicKey)
	base := "http://" + cfg.Listen
	// The CLI reads RELAYQ_API_KEY itself; it needs --api only off the default.
	cliAPI := ""
	if base != defaultAPIURL {
		cliAPI = " --api " + base
	}
	auth := ""
	if len(cfg.APIKeys) > 0 {
		auth = ` -H "Authorization: Bearer $RELAYQ_API_KEY"`
	}
	fmt.Fprintf(stdout, `relayq dev is starting
  chain:      %s (chain id %d, a block every second)
  signer:     %s (a public dev key: never fund it on a real network)
  contract:   Counter at %s
  redis:      %s%s
  API:        %s
  UI:         %s/ui/  (jobs, attempts, nonce lanes: watch your first job turn confirmed)
  monitor:    %s/monitor/
  readiness:  %s/readyz

Submit a job (calls Counter.increment()) and follow it to "confirmed", from
another terminal in this checkout (or with relayq submit from a built binary):

  go run ./cmd/relayq submit%s --to %s --function 'increment()' --wait

or with curl:

  curl -s -X POST %s/v1/jobs%s -H 'Content-Type: application/json' \
    -d '{"to":"%s","function":"increment()"}'

then poll the URL in its Location header (GET /v1/jobs/<id>) until "status" is
"confirmed", or run: go run ./cmd/relayq status%s <id> --wait

Deploy another Counter through the API (its address is the job's "contract"):

  go run ./cmd/relayq submit%s --deploy --sample counter --wait

`, chain.URL(), devchain.ChainID, signerAddr.Hex(), counter.Hex(), redactURL(cfg.RedisURL), redisNote,
		base, base, base, base, cliAPI, counter.Hex(), base, auth, counter.Hex(), cliAPI, cliAPI)
	fmt.Fprintf(stdout, `Webhooks: a job may carry "webhook_url" (allowed here: %s);
deliveries are signed with (see docs/webhooks.md to verify them)

  RELAYQ_WEBHOOK_SECRET=%s

`, allowedList(cfg.WebhookAllow), shownSecret(cfg.WebhookSecret, webhookSecret))
	return serve(ctx, config.RoleServe, cfg, newLogger(stderr, cfg.LogLevel), stdout)
}

// devShellVars are the variables relayq dev takes from the environment:
// REDIS_URL (documented), where it listens, API keys, logging and tuning.
// Everything else config reads is dev's own: the chain (RELAYQ_RPC_URL,
// RELAYQ_CONFIG), signer keys, secrets, and any variable added later. So a
// shell set up for production neither points dev at a real node and key
// nor gets its secrets printed in the banner.
var devShellVars = map[string]bool{
	"REDIS_URL": true, "RELAYQ_LISTEN": true, "RELAYQ_METRICS_LISTEN": true, "RELAYQ_PPROF_LISTEN": true,
	"RELAYQ_API_KEYS": true, "RELAYQ_METRICS_AUTH": true, "RELAYQ_LOG_LEVEL": true, "RELAYQ_REDIS_PREFIX": true,
	"RELAYQ_MONITOR_WRITE": true, "RELAYQ_CONFIRMATIONS": true, "RELAYQ_WORKER_CONCURRENCY": true,
	"RELAYQ_POLL_INTERVAL": true, "RELAYQ_RPC_TIMEOUT": true, "RELAYQ_SHUTDOWN_TIMEOUT": true,
	"RELAYQ_SWEEP_AFTER": true, "RELAYQ_JOB_RETENTION": true, "RELAYQ_MAX_FEE_GWEI": true,
	"RELAYQ_STUCK_BLOCKS": true, "RELAYQ_BUMP_PERCENT": true, "RELAYQ_SIGNER_MAX_IN_FLIGHT": true,
	"RELAYQ_REDIS_MIN_REPLICAS": true, "RELAYQ_REDIS_WAIT_TIMEOUT": true, "RELAYQ_RATE_LIMIT": true,
	"RELAYQ_RATE_BURST": true, "RELAYQ_REQUEST_TIMEOUT": true,
}

// ignoredShellVars names, sorted, the variables set in the environment
// that config reads and dev does not take from it (names only: their
// values may be secrets).
func ignoredShellVars(getenv func(string) string) []string {
	names := map[string]bool{config.ConfigFileVar: true}
	_, _ = config.FromEnv(func(k string) string { names[k] = true; return "" })
	var out []string
	for k := range names {
		if !devShellVars[k] && getenv(k) != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// shownSecret is the webhook secret as the banner may print it: only the
// one dev generated, never one that came from elsewhere.
func shownSecret(inUse, generated string) string {
	if inUse != generated {
		return "(not shown: not generated by relayq dev)"
	}
	return inUse
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func allowedList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "public addresses only"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return "public addresses and " + strings.Join(s, ", ")
}

// redactURL hides the passwords in a Redis URL.
func redactURL(u string) string { return redisconn.Redact(u) }
