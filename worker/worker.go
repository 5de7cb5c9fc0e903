// Package worker runs relayq's Asynq server and background loops: the send
// handler that signs once and broadcasts, one tracker per (chain, signer)
// that follows blocks and moves jobs to mined and confirmed, and the sweeper
// that re-enqueues jobs whose task was lost.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
)

// Config holds what a Worker needs.
type Config struct {
	Redis        redis.UniversalClient
	Prefix       string
	Backend      txmgr.Backend
	Signers      []signer.Signer
	Concurrency  int
	PollInterval time.Duration // how often trackers look for a new block
	SweepAfter   time.Duration // a queued job this old is re-enqueued if its task is gone
	// JobRetention is how long a job in a final status is kept (from its
	// creation) before the sweeper deletes it; 0 keeps jobs forever.
	JobRetention time.Duration
	MaxFeePerGas *big.Int // fee cap ceiling, wei per gas
	// StuckBlocks is how many blocks a transaction may wait unmined before it
	// is replaced with higher fees (default 3).
	StuckBlocks uint64
	// BumpPercent is how much a replacement raises both fees (at least 10).
	BumpPercent int
	// CrashAt, for crash tests only, names a point in the send path where
	// the process kills itself with SIGKILL the first time it gets there:
	// "after_reserve", "after_persist", "after_broadcast" (send path) or
	// "after_replace_persist" (a fee bump, cancel or gap fill written but
	// not yet broadcast).
	CrashAt string
	// ShutdownTimeout is how long, once Run's context ends, in-flight
	// handlers and the trackers' current ticks may run before Asynq puts
	// the unfinished tasks back on the queue (default 10s).
	ShutdownTimeout time.Duration
	// ErrorABI decodes custom errors in revert reasons (nil: they show as
	// "custom error 0x…" with their selector).
	ErrorABI *abi.ABI
	Log      *slog.Logger
	Webhook  WebhookConfig    // webhook delivery (see worker/webhook.go)
	Metrics  *metrics.Metrics // nil: none; give Backend through txmgr.Observed to count RPC calls
	// StoreOptions configure the job store: with jobs.WithReplicas no
	// signed transaction is broadcast before Redis replicas hold it.
	StoreOptions []jobs.Option
	// MaxInFlight is how many transactions one signer may have in flight
	// (reserved, not yet final) before its jobs wait; a job without from
	// goes to the least-loaded signer under it (default
	// DefaultMaxInFlight; see pool.go).
	MaxInFlight int
	// MaxRetries is how many failed runs a send task may retry before its
	// queued job fails retries_exhausted (0: tasks.SendMaxRetry, which also
	// bounds it). Only failures count: waiting for the node, for funds or
	// for a paused signer does not (IsFailure).
	MaxRetries int
	// Queues are the Asynq queues of this worker's chain (zero:
	// tasks.DefaultQueues); with several chains each has its own.
	Queues tasks.Queues
	// Archive, if set, receives final jobs once they have been final for
	// HotRetention (default DefaultHotRetention): the archiver looks every
	// ArchiveEvery (default DefaultArchiveEvery) and deletes from Redis
	// what the archive committed. It replaces JobRetention's pruning.
	Archive      Archiver
	HotRetention time.Duration
	ArchiveEvery time.Duration
}

// Account is one signer with its nonce allocator.
type Account struct {
	Signer signer.Signer
	Nonces *nonce.Allocator
	paused atomic.Bool // mirrors the allocator's paused flag, to skip a write per send
	// fundsPaused says the tracker paused the signer for its balance: only
	// then may the tracker's "it can pay" clear the mark (a signer that
	// cannot sign, say, stays paused until it does).
	fundsPaused atomic.Bool
	comb        combiner     // groups concurrent sends (see batch.go)
	funds       balanceCache // the balance at the latest head (see funds.go)
}

// pause records that the signer cannot pay (insufficient funds), renewing
// the mark each time, or clears it after a success. Only a process that set
// the mark clears it, so a success costs no Redis write in the common case;
// a mark nobody clears expires (nonce.PausedTTL).
func (a *Account) pause(ctx context.Context, reason string) {
	if reason == "" && !a.paused.Load() {
		return
	}
	if err := a.Nonces.SetPaused(ctx, reason); err == nil {
		a.paused.Store(reason != "")
	}
}

// Worker executes jobs.
type Worker struct {
	receipts  blockReceipts // whole blocks' receipts, shared by the trackers
	cfg       Config
	store     *jobs.Store
	chainID   *big.Int
	accounts  map[common.Address]*Account
	order     []common.Address
	fees      *txmgr.FeeOracle
	enqueuer  *asynq.Client
	inspector *asynq.Inspector
	log       *slog.Logger
	registry  *nonce.Registry
	hooks     webhooks // the webhook client, made on first use
	pool      pool     // chooses the signer of a job without from (pool.go)
	now       func() time.Time
}

// New connects the worker to the chain: it reads the chain id and
// reconciles every signer's nonce allocator with the chain.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	if len(cfg.Signers) == 0 {
		return nil, errors.New("worker: no signers")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.HotRetention <= 0 {
		cfg.HotRetention = DefaultHotRetention
	}
	if cfg.ArchiveEvery <= 0 {
		cfg.ArchiveEvery = DefaultArchiveEvery
	}
	if cfg.SweepAfter <= 0 {
		cfg.SweepAfter = 30 * time.Second
	}
	if cfg.StuckBlocks == 0 {
		cfg.StuckBlocks = 3
	}
	if cfg.BumpPercent < txmgr.MinBumpPercent {
		cfg.BumpPercent = txmgr.MinBumpPercent
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.MaxRetries <= 0 || cfg.MaxRetries > tasks.SendMaxRetry {
		cfg.MaxRetries = tasks.SendMaxRetry
	}
	cfg.Queues = cfg.Queues.OrDefault()
	id, err := cfg.Backend.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("worker: chain id: %w", err)
	}
	w := &Worker{
		cfg:       cfg,
		store:     jobs.NewStore(cfg.Redis, cfg.Prefix, cfg.StoreOptions...),
		chainID:   id,
		accounts:  map[common.Address]*Account{},
		fees:      txmgr.NewFeeOracle(cfg.Backend, cfg.MaxFeePerGas, cfg.PollInterval/2),
		enqueuer:  asynq.NewClientFromRedisClient(cfg.Redis),
		inspector: asynq.NewInspectorFromRedisClient(cfg.Redis),
		log:       cfg.Log,
		registry:  nonce.NewRegistry(cfg.Redis, cfg.Prefix),
		now:       time.Now,
	}
	for _, s := range cfg.Signers {
		a := &Account{Signer: s, Nonces: nonce.New(cfg.Redis, cfg.Prefix, id.Uint64(), s.Address())}
		w.accounts[s.Address()] = a
		w.order = append(w.order, s.Address())
		if err := w.reconcile(ctx, a); err != nil {
			return nil, err
		}
	}
	if err := w.registry.Register(ctx, id.Uint64(), w.order); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return w, nil
}

// crashPoint kills the process (SIGKILL, like kill -9) at a named point of
// the send path when a crash test asked for it.
func (w *Worker) crashPoint(name string) {
	if w.cfg.CrashAt == name {
		w.log.Warn("crash test: killing this process", "at", name)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL cannot be caught; never continue past the point
	}
}

// ChainID is the chain the worker serves.
func (w *Worker) ChainID() *big.Int { return w.chainID }

// Store is the worker's job store.
func (w *Worker) Store() *jobs.Store { return w.store }

// Account returns the account of addr, if this worker holds its key.
func (w *Worker) Account(addr common.Address) (*Account, bool) {
	a, ok := w.accounts[addr]
	return a, ok
}

func (w *Worker) reconcile(ctx context.Context, a *Account) error {
	pending, err := w.cfg.Backend.PendingNonceAt(ctx, a.Signer.Address())
	if err != nil {
		return fmt.Errorf("reconcile %s: pending nonce: %w", a.Signer.Address(), err)
	}
	next, err := a.Nonces.Reconcile(ctx, pending)
	if err != nil {
		return fmt.Errorf("reconcile %s: %w", a.Signer.Address(), err)
	}
	w.log.Info("nonce reconciled", "signer", a.Signer.Address().Hex(), "chain_pending", pending, "next", next)
	return nil
}

// Handler returns the Asynq handler of the worker's task types.
func (w *Worker) Handler() asynq.Handler {
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeSend, w.HandleSendTask)
	mux.HandleFunc(tasks.TypeWebhookDeliver, w.HandleWebhookTask)
	return mux
}

// Run processes tasks and runs the trackers and the sweeper until ctx ends,
// then shuts down: in-flight handlers get ShutdownTimeout to finish, and an
// unfinished task goes back to the queue (its job's write-ahead record makes
// the retry safe).
func (w *Worker) Run(ctx context.Context) error {
	srv := asynq.NewServerFromRedisClient(w.cfg.Redis, asynq.Config{
		Concurrency:     w.cfg.Concurrency,
		Queues:          map[string]int{w.cfg.Queues.Send: 1},
		RetryDelayFunc:  RetryDelay,
		IsFailure:       IsFailure,
		ErrorHandler:    asynq.ErrorHandlerFunc(w.handleTaskError),
		Logger:          asynqLogger{w.log},
		ShutdownTimeout: w.cfg.ShutdownTimeout,
		// Asynq sleeps this long whenever it finds the queues empty (1 s by
		// default): the first job after a quiet spell would wait for it.
		// A dequeue is one cheap script, so 20 a second when idle is noise.
		TaskCheckInterval: 50 * time.Millisecond,
	})
	if err := srv.Start(w.Handler()); err != nil {
		return fmt.Errorf("worker: start asynq server: %w", err)
	}
	// Trackers stop taking ticks when ctx ends; the tick in progress runs on
	// under work, which ends at the drain deadline.
	work, endWork := context.WithCancel(context.WithoutCancel(ctx))
	defer endWork()
	var wg sync.WaitGroup
	for _, addr := range w.order {
		wg.Add(1)
		go func(a *Account) {
			defer wg.Done()
			NewTracker(w, a).Run(ctx, work)
		}(w.accounts[addr])
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.runSweeper(ctx)
	}()
	if w.cfg.Archive != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runArchiver(ctx)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.runWebhooks(ctx) // its own Asynq server and the outbox dispatcher
	}()
	<-ctx.Done()
	// Stop taking tasks; in-flight handlers get ShutdownTimeout, then Asynq
	// puts the unfinished ones back on the queue.
	drain := time.AfterFunc(w.cfg.ShutdownTimeout, endWork)
	defer drain.Stop()
	srv.Shutdown()
	wg.Wait()
	return nil
}

// Close releases the worker's connections (not the shared Redis client).
func (w *Worker) Close() error { return w.enqueuer.Close() }

// handleTaskError runs when a handler returned an error; on the last retry it
// fails a job that never got a transaction, so it cannot sit queued forever.
func (w *Worker) handleTaskError(ctx context.Context, t *asynq.Task, err error) {
	retried, _ := asynq.GetRetryCount(ctx)
	max, _ := asynq.GetMaxRetry(ctx)
	id, _ := asynq.GetTaskID(ctx)
	if !IsFailure(err) && !errors.Is(err, asynq.SkipRetry) {
		// Waiting for the node or for funds: retried without spending a
		// retry, possibly for hours, so not a warning each time.
		w.log.Info("task waits", "type", t.Type(), "task_id", id, "err", err)
		return
	}
	w.log.Warn("task failed", "type", t.Type(), "task_id", id, "retried", retried, "max_retry", max, "err", err)
	if t.Type() != tasks.TypeSend || (retried < max && !errors.Is(err, asynq.SkipRetry)) {
		return
	}
	if errors.Is(err, jobs.ErrNotFound) {
		// A read that did not find the job says nothing about the job (see
		// Send): one that exists stays queued for the sweeper.
		return
	}
	p, perr := tasks.ParseSendPayload(t.Payload())
	if perr != nil || p.JobID == "" {
		// A batch task fails only when it could not hand its jobs their
		// own tasks (sendMany): they are queued, and the sweeper finds
		// them.
		return
	}
	// Only a job that never got a transaction may fail here: one that is
	// submitted may still be mined, and the tracker owns it.
	terr := w.failQueued(context.WithoutCancel(ctx), p.JobID, 0, "send task gave up", jobs.Error{Code: jobs.ErrCodeRetriesExhausted, Message: err.Error()})
	var bad *jobs.BadTransitionError
	if terr != nil && !errors.As(terr, &bad) {
		w.log.Error("fail job after last retry", "job_id", p.JobID, "err", terr)
	}
}

// asynqLogger sends Asynq's logs to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq", "fatal", true)
}
