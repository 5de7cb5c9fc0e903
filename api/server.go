// Package api is relayq's HTTP API: Echo routes that accept jobs, report
// their status, and serve the Asynq monitor, health and readiness.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/apikey"
	"github.com/relayq/relayq/internal/probe"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/tasks"
)

// Node is what the API needs from the chain: its id (also the readiness
// probe), the accounts' nonces and balances for /v1/signers, and the head,
// eth_call and eth_estimateGas for reads and dry runs (callNode).
type Node interface {
	ChainID(ctx context.Context) (*big.Int, error)
	NonceAt(ctx context.Context, account common.Address, block *big.Int) (uint64, error)
	PendingNonceAt(ctx context.Context, account common.Address) (uint64, error)
	BalanceAt(ctx context.Context, account common.Address, block *big.Int) (*big.Int, error)
	callNode
}

// Config holds what the API needs.
type Config struct {
	Redis        redis.UniversalClient
	RedisConnOpt asynq.RedisConnOpt // for the monitor, which opens its own connections
	APIKeys      []string           // RELAYQ_API_KEYS entries (apikey.Parse); empty: no auth
	MonitorWrite bool
	BodyLimit    string
	Log          *slog.Logger
	Metrics      *metrics.Metrics // served at /metrics (no auth unless MetricsAuth); nil: /metrics answers 404
	// MetricsAuth puts /metrics behind the API keys, like /v1.
	MetricsAuth bool
	// ProbeClock is the clock of the readiness probe's cache (time.Now
	// when nil): /readyz asks each node at most once per probe.DefaultEvery.
	ProbeClock func() time.Time

	// Hardening: requests per second and burst per API key (RateLimit 0:
	// no limit), and each request's deadline (0: DefaultRequestTimeout).
	RateLimit      float64
	RateBurst      int
	RequestTimeout time.Duration

	// Webhooks: jobs may carry webhook_url only when WebhookSecret is set
	// (the API signs nothing; the secret says the deployment delivers), and
	// WebhookAllow exempts prefixes from the SSRF policy (see api/webhook.go).
	WebhookSecret string
	WebhookAllow  []netip.Prefix
	// WebhookSecrets are API keys' own secrets, by key name
	// (RELAYQ_WEBHOOK_SECRETS): a key with one may give webhook_url even
	// without WebhookSecret.
	WebhookSecrets map[string]string

	// StoreOptions configure the job store: jobs.WithReplicas makes a job
	// wait for Redis replicas before it is answered 202.
	StoreOptions []jobs.Option

	// Reads and dry runs: ErrorABI decodes custom errors in revert reasons
	// (as the worker's does). BatchBodyLimit is the body limit of POST
	// /v1/jobs/batch ("" : 8M); the other routes have BodyLimit.
	ErrorABI       *abi.ABI
	BatchBodyLimit string

	// Archive, if set, holds the final jobs that left Redis: reads of a
	// job, listings and exports look there too (archive.go).
	Archive JobArchive

	// Chains are the chains the API serves (at least one), each with its
	// own jobs, queues, contracts, node and signers; requests name theirs
	// with "chain" (chains.go). A deployment configured by the environment
	// has one, named DefaultChainName.
	Chains []Chain
}

// Server is the HTTP API.
type Server struct {
	cfg      Config
	chain    Chain // the chain this Server serves (one of cfg.Chains)
	echo     *echo.Echo
	store    *jobs.Store
	enqueuer *asynq.Client
	registry *nonce.Registry
	monitor  *asynqmon.HTTPHandler
	chainID  uint64
	log      *slog.Logger
	reads    *readCache // POST /v1/calls: the head and the results at it (calls.go)
	ui       *uiState   // the UI at /ui/ (ui.go)
	// readiness keeps /readyz's probe of this chain's node: anyone may
	// hit /readyz, the node hears of it at most once a second.
	readiness *probe.Cache[*big.Int]

	contractReg *jobs.Contracts // registered contracts (contracts.go)
	contracts   *contractCache

	// The chain this Server serves (each chain has one; chains.go): its
	// name and queues, and every chain of the API.
	name   string
	queues tasks.Queues
	sendq  *sendQueue // batches the send tasks of accepted jobs (sendq.go)
	chains *chainSet

	keys []apikey.Key // parsed cfg.APIKeys (the first chain's Server)

	mu          sync.Mutex
	signers     map[common.Address]bool
	signersRead time.Time
}

// New builds the API. It reads the chain id from the node once.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.BodyLimit == "" {
		cfg.BodyLimit = "1M"
	}
	if cfg.BatchBodyLimit == "" {
		cfg.BatchBodyLimit = defaultBatchBodyLimit
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if len(cfg.Chains) == 0 {
		return nil, errors.New("api: no chains to serve")
	}
	if cfg.Archive != nil {
		// A replayed Idempotency-Key may name a job already archived.
		cfg.StoreOptions = append(slices.Clone(cfg.StoreOptions), jobs.WithArchived(cfg.Archive.Get))
	}
	keys, err := apikey.Parse(cfg.APIKeys)
	if err != nil {
		return nil, fmt.Errorf("api: API keys: %w", err)
	}
	enqueuer := asynq.NewClientFromRedisClient(cfg.Redis)
	all := &chainSet{}
	seen := map[string]bool{}
	for _, ch := range cfg.Chains {
		id := new(big.Int).SetUint64(ch.ChainID)
		if ch.ChainID == 0 {
			var err error
			if id, err = ch.Node.ChainID(ctx); err != nil {
				enqueuer.Close()
				return nil, fmt.Errorf("api: chain %s: chain id from node: %w", ch.Name, err)
			}
		}
		ids := strconv.FormatUint(id.Uint64(), 10)
		if seen[ch.Name] || seen[ids] || ch.Name == "" {
			enqueuer.Close()
			return nil, fmt.Errorf("api: chain %q (%s) is empty or named twice", ch.Name, ids)
		}
		seen[ch.Name], seen[ids] = true, true
		ch.Confirmations = max(ch.Confirmations, 1)
		s := &Server{
			cfg:       cfg,
			chain:     ch,
			store:     jobs.NewStore(cfg.Redis, ch.Prefix, cfg.StoreOptions...),
			enqueuer:  enqueuer,
			registry:  nonce.NewRegistry(cfg.Redis, ch.Prefix),
			chainID:   id.Uint64(),
			log:       cfg.Log,
			reads:     newReadCache(),
			readiness: probe.New[*big.Int](probe.DefaultEvery, readyTimeout, cfg.ProbeClock),
			name:      ch.Name,
			queues:    ch.Queues.OrDefault(),
			chains:    all,
		}
		s.sendq = newSendQueue(enqueuer, s.queues.Send, cfg.Log)
		s.contractReg = jobs.NewContracts(cfg.Redis, ch.Prefix)
		s.contracts = newContractCache(s.contractReg)
		all.list = append(all.list, s)
	}
	// The first chain's Server is the API's: it holds the routes and the
	// monitor, and routes each request to its chain's Server.
	s := all.list[0]
	s.echo = echo.New()
	s.monitor = asynqmon.New(asynqmon.Options{RootPath: "/monitor", RedisConnOpt: cfg.RedisConnOpt, ReadOnly: !cfg.MonitorWrite})
	s.keys = keys
	s.routes()
	if err := s.uiRoutes(); err != nil {
		enqueuer.Close()
		return nil, err
	}
	return s, nil
}

// Handler is the API as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Close releases the API's connections (not the shared Redis client).
func (s *Server) Close() error {
	if s.ui != nil {
		s.ui.close()
	}
	for _, c := range s.chains.list {
		c.sendq.close()
	}
	return errors.Join(s.enqueuer.Close(), s.monitor.Close())
}

func (s *Server) routes() {
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(cleanRequestID, middleware.RequestID(), s.requestLog())
	e.Use(s.cfg.Metrics.Middleware())
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			s.log.Error("panic in handler", "request_id", requestID(c), "err", err, "stack", string(stack))
			return err
		},
	}))
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
		Limit:   s.cfg.BodyLimit,
		Skipper: func(c echo.Context) bool { return c.Path() == "/v1/jobs/batch" }, // its own limit, below
	}))
	e.Use(s.deadline())

	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/readyz", s.ready)
	e.GET("/openapi.json", serveOpenAPI)

	auth, limit := s.auth(), s.rateLimit() // one limiter: /v1 and the monitor share each key's bucket
	if s.cfg.MetricsAuth {
		e.GET("/metrics", echo.WrapHandler(s.cfg.Metrics.Handler()), auth, limit)
	} else {
		e.GET("/metrics", echo.WrapHandler(s.cfg.Metrics.Handler()))
	}
	v1 := e.Group("/v1", auth, limit)
	// Each route runs on the Server of the request's chain (chains.go).
	v1.POST("/jobs", s.onChain(counted(byBody), (*Server).createJob))
	v1.GET("/jobs", s.onChain(byQuery, (*Server).listJobs))
	v1.GET("/jobs/export", s.onChain(byQuery, (*Server).exportJobs))
	v1.GET("/jobs/:id", s.onChain(byJob, (*Server).getJob))
	v1.POST("/jobs/:id/cancel", s.onChain(byJob, (*Server).cancelJob))
	v1.GET("/signers", s.listAllSigners)
	v1.POST("/signers/:address/reconcile", s.onChain(byQuery, (*Server).reconcileSigner), adminOnly)
	v1.POST("/jobs/batch", s.onChain(counted(byBody), (*Server).createBatch), middleware.BodyLimit(s.cfg.BatchBodyLimit))
	v1.POST("/calls", s.onChain(byBody, (*Server).call))
	v1.POST("/contracts", s.onChain(byBody, (*Server).createContract))
	v1.GET("/contracts/:name", s.onChain(byQuery, (*Server).getContract))

	mon := echo.WrapHandler(s.monitor)
	// The monitor shows and (with MonitorWrite) changes every key's tasks:
	// admins only.
	e.Any("/monitor", mon, auth, limit, adminOnly)
	e.Any("/monitor/*", mon, auth, limit, adminOnly)
}

// auth checks Authorization: Bearer <key> in constant time against every
// configured key, and puts the key's principal (name and role) in the
// request's context; with no keys configured it lets everything through,
// as the anonymous admin.
func (s *Server) auth() echo.MiddlewareFunc {
	if len(s.keys) == 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	keys := make([][32]byte, len(s.keys))
	for i, k := range s.keys {
		keys[i] = sha256.Sum256([]byte(k.Key))
	}
	return middleware.KeyAuthWithConfig(middleware.KeyAuthConfig{
		KeyLookup:  "header:" + echo.HeaderAuthorization,
		AuthScheme: "Bearer",
		Validator: func(key string, c echo.Context) (bool, error) {
			// Comparing digests keeps the comparison constant-time even
			// when the lengths differ.
			got := sha256.Sum256([]byte(key))
			ok, match := 0, 0
			for i := range keys {
				eq := subtle.ConstantTimeCompare(got[:], keys[i][:])
				ok |= eq
				match = subtle.ConstantTimeSelect(eq, i, match)
			}
			if ok == 1 {
				k := s.keys[match]
				id, p := principalFor(k)
				c.Set(apiKeyIDKey, id)
				c.Set(apiKeyNameKey, k.Name)
				c.SetRequest(c.Request().WithContext(withPrincipal(c.Request().Context(), p)))
			}
			return ok == 1, nil
		},
		ErrorHandler: func(err error, c echo.Context) error {
			return apiError(CodeUnauthorized, "missing or invalid API key: send Authorization: Bearer <key>")
		},
	})
}

// principalFor is the key id (for logs and the UI's sessions) and the
// principal of a configured API key.
func principalFor(k apikey.Key) (string, principal) {
	sum := sha256.Sum256([]byte(k.Key))
	id := hex.EncodeToString(sum[:8])
	p := principal{name: k.Name, admin: k.Admin, idemScope: id}
	if !k.Bare {
		p.idemScope = "key:" + k.Name
	}
	return id, p
}

// readyTimeout bounds /readyz, and each probe of a node it makes.
const readyTimeout = 2 * time.Second

func (s *Server) ready(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
	defer cancel()
	out := map[string]string{"redis": "ok"}
	ok := true
	if err := s.cfg.Redis.Ping(ctx).Err(); err != nil {
		out["redis"], ok = err.Error(), false
	}
	// The nodes are asked at once, so that a slow one does not spend the
	// deadline of the others.
	errs := make([]error, len(s.chains.list))
	var wg sync.WaitGroup
	for i, ch := range s.chains.list {
		wg.Go(func() {
			id, err := ch.readiness.Get(ctx, ch.chain.Node.ChainID)
			if err == nil && id.Uint64() != ch.chainID {
				// A mistyped URL answering for another chain is not this
				// chain's node: reads and dry runs there would be wrong.
				err = fmt.Errorf("the node serves chain %d, not %d", id, ch.chainID)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	// With several chains the API is ready while Redis and any node answer:
	// it accepts jobs for every chain (a chain whose node is down keeps
	// them queued), and one provider's outage must not take the others'
	// traffic away. Each node's state is reported either way.
	up := 0
	for i, ch := range s.chains.list {
		key := "node"
		if len(s.chains.list) > 1 {
			key = "node_" + ch.name
		}
		out[key] = "ok"
		if errs[i] != nil {
			out[key] = errs[i].Error()
		} else {
			up++
		}
	}
	if up == 0 {
		ok = false
	}
	if !ok {
		return c.JSON(http.StatusServiceUnavailable, out)
	}
	return c.JSON(http.StatusOK, out)
}

const maxIdempotencyKey = 255

// idempotencyKey is the request's Idempotency-Key header ("" if none).
func idempotencyKey(c echo.Context) (string, *Error) {
	idem := c.Request().Header.Get("Idempotency-Key")
	if len(idem) > maxIdempotencyKey {
		return "", invalid("invalid_header", "Idempotency-Key", "Idempotency-Key is longer than %d characters", maxIdempotencyKey)
	}
	return idem, nil
}

func (s *Server) createJob(c echo.Context) (err error) {
	defer func() { s.countJobRequest(c, err) }()
	ctx := c.Request().Context()
	body, e := readBody(c)
	if e != nil {
		return e
	}
	idem, e := idempotencyKey(c)
	if e != nil {
		return e
	}
	var req jobRequest
	if e := decodeJSON(body, &req); e != nil {
		return e
	}
	if e := s.checkChain(req.Chain); e != nil {
		return e
	}
	call, e := s.validateRequest(ctx, &req)
	if e != nil {
		return e
	}
	if e := s.checkWebhookURL(ctx, call.WebhookURL); e != nil {
		return e
	}
	if call.From != nil {
		known, err := s.knownSigner(ctx, *call.From)
		if err != nil {
			return err
		}
		if !known {
			return invalid("unknown_signer", "from", "from %s is not a signer of this relayq", call.From.Hex())
		}
	}
	j := s.newJob(call, caller(c).name)
	idemKey := ""
	if idem != "" {
		// Scoped by API key so two clients' keys never collide.
		sum := sha256.Sum256([]byte(fmt.Sprint(caller(c).idemScope, "\x00", idem)))
		idemKey = hex.EncodeToString(sum[:])
	}
	if call.Simulate {
		if e := s.simulateNew(ctx, call, idemKey); e != nil {
			return e
		}
	}
	job, created, err := s.store.Create(ctx, j, idemKey)
	if errors.Is(err, jobs.ErrIdempotencyMismatch) {
		return &Error{Kind: CodeIdempotencyReuse, Code: CodeIdempotencyReuse, Field: "Idempotency-Key",
			Message: fmt.Sprintf("Idempotency-Key was used for job %s with a different request", job.ID)}
	}
	if errors.Is(err, jobs.ErrNotReplicated) {
		// The job stands on the primary and will run if it survives;
		// its task goes on the queue like any other's.
		if job.Status == jobs.Queued {
			s.enqueue(ctx, job.ID, created)
		}
		return apiError(CodeNotReplicated, "job %s is stored on the Redis primary but not yet on enough replicas (%v); "+
			"send the same request with the same Idempotency-Key again to get it once it is", job.ID, err)
	}
	if err != nil {
		return apiError(CodeUnavailable, "could not store the job: %v", err)
	}
	if job.Status == jobs.Queued {
		s.enqueue(ctx, job.ID, created)
	}
	c.Set(jobIDKey, job.ID)
	c.Response().Header().Set(echo.HeaderLocation, "/v1/jobs/"+job.ID)
	if !created {
		return c.JSON(http.StatusOK, job)
	}
	return c.JSON(http.StatusAccepted, job)
}

// enqueue hands a queued job to the workers. A job this request created
// joins the next batch task (sendq.go). A replayed one (the same
// Idempotency-Key again, perhaps because the first answer was lost) gets a
// task of its own, whose TaskID is the job's id, as before batching: if
// the first enqueue was lost this one runs it, and if not Asynq refuses it
// as a duplicate. The job is already durable, so a failed enqueue is
// logged, not returned: the sweeper enqueues any queued job whose task is
// missing.
func (s *Server) enqueue(ctx context.Context, id string, created bool) {
	if created {
		s.sendq.add(id)
		return
	}
	t, opts, err := tasks.NewSendTask(s.queues.Send, id)
	if err == nil {
		_, err = s.enqueuer.EnqueueContext(ctx, t, opts...)
	}
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		s.log.Warn("enqueue failed; the sweeper will retry", "job_id", id, "err", err)
	}
}

func (s *Server) knownSigner(ctx context.Context, a common.Address) (bool, error) {
	set, err := s.signerSet(ctx, &a)
	return set[a], err
}

// signerSet returns this chain's signers: those whose keys the API was
// given and those the workers registered in Redis. Workers only add
// signers, so the registry is re-read (at most once a second) only for a
// listing (want == nil) or when asked about an address it lacks. The map is
// replaced, never changed, so callers may read it without the lock.
func (s *Server) signerSet(ctx context.Context, want *common.Address) (map[common.Address]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fresh := time.Since(s.signersRead) < time.Second
	if s.signers != nil && (fresh || want != nil && s.signers[*want]) {
		return s.signers, nil
	}
	m, err := s.registry.Signers(ctx)
	if err != nil {
		return nil, apiError(CodeUnavailable, "could not read signers: %v", err)
	}
	set := map[common.Address]bool{}
	for _, a := range s.chain.Signers {
		set[a] = true
	}
	for a, chain := range m {
		if chain == s.chainID {
			set[a] = true
		}
	}
	s.signers, s.signersRead = set, time.Now()
	return set, nil
}

func (s *Server) getJob(c echo.Context) error {
	id := c.Param("id")
	c.Set(jobIDKey, id)
	if _, ok := jobs.CreatedAt(id); !ok {
		return apiError(CodeNotFound, "no job %q", clip(id))
	}
	j, err := s.getAnywhere(c.Request().Context(), id)
	if errors.Is(err, jobs.ErrNotFound) || err == nil && !caller(c).owns(j) {
		// Another key's job is answered as an unknown id: its existence
		// is not the caller's to learn.
		return apiError(CodeNotFound, "no job %q", id)
	}
	if err != nil {
		return apiError(CodeUnavailable, "could not load the job: %v", err)
	}
	return c.JSON(http.StatusOK, j)
}

const (
	defaultListLimit = 50
	maxListLimit     = 500
)

// countJobRequest counts what became of a POST /v1/jobs: a job created or
// replayed (by the status answered), or the API error code that refused it.
func (s *Server) countJobRequest(c echo.Context, err error) {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		s.cfg.Metrics.JobRejected(ae.Code)
	case err != nil:
		s.cfg.Metrics.JobRejected(CodeInternal)
	default:
		s.cfg.Metrics.JobAccepted(c.Response().Status == http.StatusOK)
	}
}
