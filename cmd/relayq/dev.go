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
	env["RELAYQ_WEBHOOK_SECRET"] = randomHex(32)
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
	lookup := func(k string) string {
		if k == config.ConfigFileVar {
			return "" // dev serves its own chain, whatever relayq.yaml says
		}
		if v := getenv(k); v != "" {
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

`, chain.URL(), devchain.ChainID, signerAddr.Hex(), counter.Hex(), redactURL(cfg.RedisURL), redisNote,
		base, base, base, base, cliAPI, counter.Hex(), base, auth, counter.Hex(), cliAPI)
	fmt.Fprintf(stdout, `Webhooks: a job may carry "webhook_url" (allowed here: %s);
deliveries are signed with (see docs/webhooks.md to verify them)

  RELAYQ_WEBHOOK_SECRET=%s

`, allowedList(cfg.WebhookAllow), cfg.WebhookSecret)
	return serve(ctx, config.RoleServe, cfg, newLogger(stderr, cfg.LogLevel), stdout)
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
