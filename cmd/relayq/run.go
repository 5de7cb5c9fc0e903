package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/relayq/relayq/api"
	"github.com/relayq/relayq/apikey"
	"github.com/relayq/relayq/archive"
	"github.com/relayq/relayq/config"
	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/internal/redisconn"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/webhook"
	"github.com/relayq/relayq/worker"
)

const usage = `relayq — contract calls in, confirmed transactions out

Usage:
  relayq dev       run everything in one process on an in-process chain and
                   embedded Redis (unless REDIS_URL is set); no setup needed
  relayq serve     run the API and a worker in one process
  relayq api       run the HTTP API
  relayq worker    run a worker (signs, submits, tracks)
  relayq submit --to ADDRESS --function SIG [--args JSON] [--wait] [flags]
                   submit a job to a running API and print its id
  relayq status ID [--wait] [--timeout 5m] [--json]
                   show a job; --wait follows it to the end (exit 0
                   confirmed, 3 failed, 4 cancelled, 5 timeout); both take
                   --api URL (RELAYQ_API_URL) and --key (RELAYQ_API_KEY);
                   -h for all flags
  relayq healthcheck [URL]
                   exit 0 if URL answers 200, or (no URL) if Redis and
                   the node answer: for container health checks
  relayq bench [flags]
                   measure the node's limit, relayq end to end and a naive
                   loop in one run (needs anvil and redis-server; -h for flags)
  relayq help      show this

Configuration is by environment; see README.md (Configuration). A server
stops gracefully on SIGTERM or SIGINT within RELAYQ_SHUTDOWN_TIMEOUT; a
second signal makes it exit at once.
`

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return errors.New("no subcommand")
	}
	switch args[1] {
	case "dev":
		return runDev(ctx, getenv, stdout, stderr)
	case "serve":
		return runServer(ctx, config.RoleServe, getenv, stdout, stderr)
	case "api":
		return runServer(ctx, config.RoleAPI, getenv, stdout, stderr)
	case "worker":
		return runServer(ctx, config.RoleWorker, getenv, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(ctx, args[2:], getenv, stdout)
	case "submit":
		return runSubmit(ctx, args[2:], getenv, stdout, stderr)
	case "status":
		return runStatus(ctx, args[2:], getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, args[2:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown subcommand %q", args[1])
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// runServer runs the API, a worker, or both, from the environment.
func runServer(ctx context.Context, role config.Role, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.FromEnv(getenv)
	// Parse errors and check errors are reported together.
	err = errors.Join(err, cfg.Check(role))
	if err != nil {
		return fmt.Errorf("configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return serve(ctx, role, cfg, newLogger(stderr, cfg.LogLevel), stdout)
}

// serve runs the parts of relayq that role names until ctx ends.
func serve(ctx context.Context, role config.Role, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	conn, err := redisconn.Parse(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	// go-redis keeps 10 connections per CPU; every worker handler (and
	// Asynq's own loops) may hold one at once, unless the URL says pool_size.
	// Each chain adds its handlers, its webhook handlers, its trackers and
	// Asynq's loops.
	rdb := conn.Client((cfg.Concurrency + 48) * len(cfg.Chains))
	// On a cluster all of the deployment's keys share one hash tag.
	cfg.Prefix = conn.KeyPrefix(cfg.Prefix)
	// Checked by config.Check; the error names entries by position only.
	hookSecrets, err := apikey.ParseSecrets(cfg.WebhookSecrets, webhook.MinSecretLength)
	if err != nil {
		return fmt.Errorf("RELAYQ_WEBHOOK_SECRETS: %w", err)
	}
	var storeOpts []jobs.Option
	if cfg.RedisMinReplicas > 0 {
		storeOpts = append(storeOpts, jobs.WithReplicas(cfg.RedisMinReplicas, cfg.RedisWaitTimeout))
	}
	// An abandoned shutdown (see below) leaves the client open: Asynq's
	// goroutines still running would panic on a closed one.
	abandoned := false
	defer func() {
		if !abandoned {
			rdb.Close()
		}
	}()
	// The monitor opens connections of its own, from the same URL.
	connOpt := conn.AsynqOpt()
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := rdb.Ping(startCtx).Err(); err != nil {
		return fmt.Errorf("redis at REDIS_URL does not answer: %w", err)
	}
	log.Info("redis", "mode", conn.Mode(), "addrs", conn.Addrs(), "prefix", cfg.Prefix, "min_replicas", cfg.RedisMinReplicas)
	var arch *archive.Archive
	if cfg.ArchiveURL != "" {
		// Reached on first use: a PostgreSQL that is down holds nothing up
		// (final jobs wait in Redis until it is back).
		if arch, err = archive.Open(cfg.ArchiveURL); err != nil {
			return err
		}
		defer arch.Close()
		if err := arch.Ping(startCtx); err != nil {
			log.Warn("archive: PostgreSQL does not answer yet; final jobs stay in Redis until it does", "err", err)
		} else {
			log.Info("archive", "hot_retention", cfg.HotRetention.String())
		}
	}
	m := metrics.New()
	chains, err := startChains(startCtx, cfg, rdb, m, log)
	defer func() {
		for _, ch := range chains {
			ch.node.Close()
		}
	}()
	if err != nil {
		return err
	}
	// Everything that can fail at start is built before anything runs, so
	// an error here returns with nothing left running.
	var srv *api.Server
	var l net.Listener
	if role&config.RoleAPI != 0 {
		apiChains := make([]api.Chain, len(chains))
		for i, ch := range chains {
			apiChains[i] = api.Chain{Name: ch.cfg.Name, Prefix: ch.prefix, Queues: ch.queues, Node: ch.backend,
				Signers: signer.Addresses(ch.signers), Confirmations: ch.cfg.Confirmations}
			if ch.cfg.Namespaced {
				apiChains[i].ChainID = ch.cfg.ChainID // declared: served even while its node is down
			}
		}
		apiCfg := api.Config{
			Redis: rdb, RedisConnOpt: connOpt, Chains: apiChains, APIKeys: cfg.APIKeys, Metrics: m,
			MonitorWrite: cfg.MonitorWrite, MetricsAuth: cfg.MetricsAuth, Log: log,
			WebhookSecret: cfg.WebhookSecret, WebhookAllow: cfg.WebhookAllow, WebhookSecrets: hookSecrets,
			RateLimit: float64(cfg.RateLimit), RateBurst: int(cfg.RateBurst), RequestTimeout: cfg.RequestTimeout,
			StoreOptions: storeOpts,
			ErrorABI:     &contract.ABI, // as the worker's: the sample contract's custom errors by name
		}
		if arch != nil {
			apiCfg.Archive = arch
		}
		srv, err = api.New(startCtx, apiCfg)
		if err != nil {
			return err
		}
		defer srv.Close()
		if l, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("RELAYQ_LISTEN: %w", err)
		}
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(chains)+3)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	if role&config.RoleWorker != 0 {
		// One worker per chain, each on its own keys and queues; a chain
		// whose node is down waits for it without holding up the others.
		for _, ch := range chains {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := runChainWorker(runCtx, ch, worker.Config{
					Redis: rdb, Prefix: ch.prefix, Queues: ch.queues, Backend: ch.backend, Signers: ch.signers, Metrics: m,
					Concurrency: cfg.Concurrency, PollInterval: ch.cfg.PollInterval, SweepAfter: cfg.SweepAfter, JobRetention: cfg.JobRetention, MaxRetries: cfg.MaxRetries,
					MaxFeePerGas: new(big.Int).SetUint64(ch.cfg.MaxFeePerGasWei), Log: log.With("chain", ch.cfg.Name),
					CrashAt: cfg.TestCrashAt, StuckBlocks: ch.cfg.StuckBlocks, BumpPercent: int(ch.cfg.BumpPercent),
					Webhook: worker.WebhookConfig{Secret: cfg.WebhookSecret, Secrets: hookSecrets, Allow: cfg.WebhookAllow},
					// Custom errors of the sample contract decode by name; others
					// by the ABIs registered with POST /v1/contracts.
					ErrorABI: &contract.ABI,
					// In-flight handlers get the drain time; the rest of the
					// shutdown bound is for handing unfinished tasks back.
					ShutdownTimeout: cfg.DrainTimeout(),
					StoreOptions:    storeOpts,
					MaxInFlight:     ch.cfg.SignerMaxInFlight,
					Archive:         workerArchive(arch),
					HotRetention:    cfg.HotRetention,
					// A short window (tests) is looked at more often.
					ArchiveEvery: min(worker.DefaultArchiveEvery, max(cfg.HotRetention/2, time.Second)),
				}, log); err != nil {
					errc <- err
				}
			}()
		}
	}
	if srv != nil {
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http: %w", err)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-runCtx.Done()
			began := time.Now()
			// Shutdown stops accepting at once and waits for the requests in
			// flight; past the drain time their connections are closed.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(runCtx), cfg.DrainTimeout())
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil {
				log.Warn("api: requests still running at the drain deadline; closing their connections", "err", err)
				_ = hs.Close()
			}
			log.Info("api stopped", "took", time.Since(began).String())
		}()
		log.Info("api listening", "addr", l.Addr().String(), "chains", len(chains), "auth", len(cfg.APIKeys) > 0)
		fmt.Fprintf(stdout, "relayq API listening on http://%s\n", l.Addr())
	}
	serveMetrics(runCtx, &wg, errc, cfg.MetricsListen, m, log, stdout)
	servePprof(runCtx, cfg.PprofListen, log)
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	began := time.Now()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String(), "drain", cfg.DrainTimeout().String())
	stop()
	// Whatever still hangs at nine tenths of the bound is abandoned, so the
	// process exits within RELAYQ_SHUTDOWN_TIMEOUT.
	if err := waitWithin(&wg, cfg.ShutdownTimeout-cfg.ShutdownTimeout/10); err != nil {
		log.Error("shutdown timed out", "timeout", cfg.ShutdownTimeout.String(), "err", err)
		abandoned = true
		return errors.Join(first, err)
	}
	log.Info("stopped", "took", time.Since(began).String())
	return first
}

// workerArchive is arch as the worker's Archiver: no archive stays a nil
// interface.
func workerArchive(arch *archive.Archive) worker.Archiver {
	if arch == nil {
		return nil
	}
	return arch
}
