package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/relayq/relayq/config"
	"github.com/relayq/relayq/internal/redisconn"
	"github.com/relayq/relayq/txmgr"
)

// runHealthcheck is for container health checks in images without a shell
// or curl. With a URL it expects 200 from it (the API's /readyz); without
// one it checks what a worker needs: Redis and the node answer.
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if len(args) > 0 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("healthcheck: %w", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("healthcheck: %s answered %d", args[0], res.StatusCode)
		}
		fmt.Fprintln(stdout, "ok")
		return nil
	}
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	chains := cfg.Chains
	for _, ch := range chains {
		if len(ch.RPCURLs) == 0 {
			return fmt.Errorf("healthcheck: chain %s has no RPC URL (RELAYQ_RPC_URL or rpc_urls in RELAYQ_CONFIG)", ch.Name)
		}
	}
	conn, err := redisconn.Parse(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("healthcheck: REDIS_URL: %w", err)
	}
	rdb := conn.Client(1)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("healthcheck: redis: %w", err)
	}
	// With one chain its node must answer (with several RPC URLs, one
	// answering is healthy: the others fail over). With several chains one
	// chain's outage does not make the process unhealthy, since the others
	// are still served: at least one node must answer, and those that do
	// not are named.
	errs := make([]error, len(chains))
	var wg sync.WaitGroup
	for i, ch := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node, err := txmgr.DialNode(ctx, ch.RPCURLs, 2*time.Second, nil)
			if err == nil {
				_, err = node.ChainID(ctx)
				node.Close()
			}
			if err != nil {
				errs[i] = fmt.Errorf("chain %s: node: %w", ch.Name, err)
			}
		}()
	}
	wg.Wait()
	down := 0
	for _, err := range errs {
		if err != nil {
			down++
			fmt.Fprintln(stdout, "healthcheck:", err)
		}
	}
	if down == len(chains) {
		return fmt.Errorf("healthcheck: %w", errors.Join(errs...))
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
