// Package config turns the process environment into a typed Config and
// checks it up front, so a misconfigured process fails at start with a
// message naming the variable instead of failing on its first job.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/relayq/relayq/apikey"
	"github.com/relayq/relayq/internal/nodeurl"
	"github.com/relayq/relayq/internal/redisconn"
	"github.com/relayq/relayq/webhook"
)

// Defaults for every variable that has one.
const (
	DefaultRedisURL      = "redis://127.0.0.1:6379/0"
	DefaultListen        = "127.0.0.1:8080"
	DefaultConfirmations = 1
	DefaultPrefix        = "relayq:"
	DefaultConcurrency   = 128
	DefaultPollInterval  = time.Second
	DefaultRPCTimeout    = 10 * time.Second
	DefaultBodyLimit     = "1M"
	DefaultSweepAfter    = 30 * time.Second
	DefaultJobRetention  = 7 * 24 * time.Hour
	// DefaultHotRetention is how long a final job stays in Redis before
	// the archiver moves it to PostgreSQL (with RELAYQ_ARCHIVE_URL only).
	DefaultHotRetention = time.Hour
	// DefaultMaxRetries is how many failed runs a send task may retry
	// (tasks.SendMaxRetry); node outages and waits for funds do not count.
	DefaultMaxRetries  = 200
	DefaultMaxFeeGwei  = 500
	DefaultStuckBlocks = 3
	DefaultBumpPercent = 10
	// DefaultShutdownTimeout bounds a graceful stop, from the signal to exit.
	DefaultShutdownTimeout = 15 * time.Second
	// API hardening: requests per second and burst per API key (per API
	// process), and each request's deadline.
	DefaultRateLimit      = 200
	DefaultRateBurst      = 400
	DefaultRequestTimeout = 10 * time.Second
	// DefaultRedisWaitTimeout bounds a WAIT for replicas (when
	// RELAYQ_REDIS_MIN_REPLICAS asks for one).
	DefaultRedisWaitTimeout = 500 * time.Millisecond
	// DefaultSignerMaxInFlight is the per-signer in-flight limit.
	DefaultSignerMaxInFlight = 4096
)

// Config is everything a relayq process reads from its environment.
type Config struct {
	RedisURL       string        // REDIS_URL
	Listen         string        // RELAYQ_LISTEN
	PprofListen    string        // RELAYQ_PPROF_LISTEN: host:port serving net/http/pprof, for profiling ("": off)
	MetricsListen  string        // RELAYQ_METRICS_LISTEN: host:port serving /metrics on its own ("": not served apart from the API)
	APIKeys        []string      // RELAYQ_API_KEYS, comma-separated: name:key, name:key:admin, or a bare key (an admin named default); see apikey.Parse
	InsecureNoAuth bool          // RELAYQ_INSECURE_NO_AUTH=1
	Prefix         string        // RELAYQ_REDIS_PREFIX
	Concurrency    int           // RELAYQ_WORKER_CONCURRENCY
	RPCTimeout     time.Duration // RELAYQ_RPC_TIMEOUT: deadline of one RPC call
	SweepAfter     time.Duration // RELAYQ_SWEEP_AFTER: a queued job older than this without a task is re-enqueued
	JobRetention   time.Duration // RELAYQ_JOB_RETENTION: a final job older than this is deleted (0: kept forever)
	MaxRetries     int           // RELAYQ_MAX_RETRIES: failed runs of a send task before its job fails retries_exhausted
	MonitorWrite   bool          // RELAYQ_MONITOR_WRITE=1 lets the monitor change tasks
	MetricsAuth    bool          // RELAYQ_METRICS_AUTH=1 puts the API's /metrics behind the API keys
	LogLevel       string        // RELAYQ_LOG_LEVEL: debug, info, warn, error
	TestCrashAt    string        // RELAYQ_TEST_CRASH_AT: crash tests only (see worker.Config.CrashAt)
	// ShutdownTimeout (RELAYQ_SHUTDOWN_TIMEOUT) bounds a graceful stop: the
	// process exits within it of SIGTERM or SIGINT (DrainTimeout of it goes
	// to in-flight requests and task handlers, the rest to handing back).
	ShutdownTimeout time.Duration
	// WebhookSecret (RELAYQ_WEBHOOK_SECRET) signs webhook deliveries; jobs
	// may carry webhook_url only when it is set (≥ 32 characters).
	WebhookSecret string
	// WebhookSecrets (RELAYQ_WEBHOOK_SECRETS, comma-separated name:secret)
	// give API keys secrets of their own: the events of a key's jobs are
	// signed with its secret, else with WebhookSecret (apikey.ParseSecrets).
	WebhookSecrets []string
	// WebhookAllow (RELAYQ_WEBHOOK_ALLOW_CIDRS, comma-separated) exempts
	// these prefixes from the webhook SSRF policy.
	WebhookAllow []netip.Prefix
	// RateLimit (RELAYQ_RATE_LIMIT, requests/s, 0: off) and RateBurst
	// (RELAYQ_RATE_BURST) limit each API key, in each API process.
	RateLimit uint64
	RateBurst uint64
	// RequestTimeout (RELAYQ_REQUEST_TIMEOUT) is each API request's deadline.
	RequestTimeout time.Duration
	// RedisMinReplicas (RELAYQ_REDIS_MIN_REPLICAS, 0: off) is how many
	// replicas must acknowledge an accepted job, and a signed transaction,
	// before relayq answers 202 or broadcasts it; RedisWaitTimeout
	// (RELAYQ_REDIS_WAIT_TIMEOUT) bounds that wait. See docs/redis.md.
	RedisMinReplicas int
	RedisWaitTimeout time.Duration

	// ArchiveURL (RELAYQ_ARCHIVE_URL, or archive_url in relayq.yaml; the
	// variable wins) is the PostgreSQL archive of final jobs
	// (postgres://…, docs/archive.md); "": no archive, Redis keeps jobs
	// for JobRetention. With it, final jobs leave Redis for the archive
	// after HotRetention (RELAYQ_HOT_RETENTION) and JobRetention is unused.
	ArchiveURL   string
	HotRetention time.Duration

	// ConfigFile (RELAYQ_CONFIG) is the path of a relayq.yaml that lists
	// the chains to serve (docs/config.md); "" when the chain-level
	// variables (RELAYQ_RPC_URL, RELAYQ_PRIVATE_KEYS, ...) describe the one
	// chain. With a file, those variables must not be set.
	ConfigFile string
	// Chains are the chains to serve, the one description every reader
	// uses: the file's, in its order (Namespaced), or else exactly one,
	// named DefaultChainName, built from the chain-level variables.
	Chains []Chain
}

// DrainTimeout is the part of ShutdownTimeout that in-flight HTTP requests
// and task handlers get to finish; the rest is left for putting unfinished
// tasks back on the queue and closing connections.
func (c Config) DrainTimeout() time.Duration { return c.ShutdownTimeout * 2 / 3 }

// FromEnv reads the configuration through getenv (os.Getenv in main, a map
// in tests), and the relayq.yaml that RELAYQ_CONFIG names, if any. It
// applies defaults but does not validate: call Check. Its error joins every
// variable or file entry it could not parse.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		RedisURL:       or(getenv("REDIS_URL"), DefaultRedisURL),
		Listen:         or(getenv("RELAYQ_LISTEN"), DefaultListen),
		MetricsListen:  strings.TrimSpace(getenv("RELAYQ_METRICS_LISTEN")),
		PprofListen:    strings.TrimSpace(getenv("RELAYQ_PPROF_LISTEN")),
		APIKeys:        list(getenv("RELAYQ_API_KEYS")),
		InsecureNoAuth: getenv("RELAYQ_INSECURE_NO_AUTH") == "1",
		Prefix:         or(getenv("RELAYQ_REDIS_PREFIX"), DefaultPrefix),
		MonitorWrite:   getenv("RELAYQ_MONITOR_WRITE") == "1",
		MetricsAuth:    getenv("RELAYQ_METRICS_AUTH") == "1",
		LogLevel:       or(getenv("RELAYQ_LOG_LEVEL"), "info"),
		TestCrashAt:    getenv("RELAYQ_TEST_CRASH_AT"),
	}
	var errs []error
	c.Concurrency = int(uintVar(getenv, "RELAYQ_WORKER_CONCURRENCY", DefaultConcurrency, &errs))
	c.RPCTimeout = durVar(getenv, "RELAYQ_RPC_TIMEOUT", DefaultRPCTimeout, &errs)
	c.SweepAfter = durVar(getenv, "RELAYQ_SWEEP_AFTER", DefaultSweepAfter, &errs)
	c.JobRetention = durVar(getenv, "RELAYQ_JOB_RETENTION", DefaultJobRetention, &errs)
	c.MaxRetries = int(min(uintVar(getenv, "RELAYQ_MAX_RETRIES", DefaultMaxRetries, &errs), 1<<20))
	c.WebhookSecret = strings.TrimSpace(getenv("RELAYQ_WEBHOOK_SECRET"))
	c.WebhookSecrets = list(getenv("RELAYQ_WEBHOOK_SECRETS"))
	if allow, err := webhook.ParseCIDRs(getenv("RELAYQ_WEBHOOK_ALLOW_CIDRS")); err != nil {
		errs = append(errs, fmt.Errorf("RELAYQ_WEBHOOK_ALLOW_CIDRS: %w", err))
	} else {
		c.WebhookAllow = allow
	}
	c.ShutdownTimeout = durVar(getenv, "RELAYQ_SHUTDOWN_TIMEOUT", DefaultShutdownTimeout, &errs)
	c.RateLimit = uintVar(getenv, "RELAYQ_RATE_LIMIT", DefaultRateLimit, &errs)
	c.RateBurst = uintVar(getenv, "RELAYQ_RATE_BURST", DefaultRateBurst, &errs)
	c.RequestTimeout = durVar(getenv, "RELAYQ_REQUEST_TIMEOUT", DefaultRequestTimeout, &errs)
	c.RedisMinReplicas = int(min(uintVar(getenv, "RELAYQ_REDIS_MIN_REPLICAS", 0, &errs), 1000))
	c.RedisWaitTimeout = durVar(getenv, "RELAYQ_REDIS_WAIT_TIMEOUT", DefaultRedisWaitTimeout, &errs)

	// The chain-level variables: the one chain, unless a file lists them.
	// They are read either way, so that ignoredShellVars (cmd/relayq) sees
	// every name FromEnv reads.
	var chainErrs []error
	env := envChain(getenv, &chainErrs)

	c.ArchiveURL = strings.TrimSpace(getenv("RELAYQ_ARCHIVE_URL"))
	c.HotRetention = durVar(getenv, "RELAYQ_HOT_RETENTION", DefaultHotRetention, &errs)

	c.ConfigFile = strings.TrimSpace(getenv(ConfigFileVar))
	if c.ConfigFile != "" && c.ArchiveURL == "" {
		c.ArchiveURL = fileArchiveURL(c.ConfigFile)
	}
	if c.ConfigFile == "" {
		errs = append(errs, chainErrs...)
		c.Chains = []Chain{env}
		return c, errors.Join(errs...)
	}
	// With a file, a chain-level variable set is an error of its own
	// (whatever its value).
	chains, used, ferrs := readChainsFile(c.ConfigFile, getenv)
	c.Chains = chains
	errs = append(errs, ferrs...)
	errs = append(errs, envConflicts(getenv, c.ConfigFile, used)...)
	return c, errors.Join(errs...)
}

// envChain is the one chain the chain-level variables (RELAYQ_RPC_URL,
// RELAYQ_PRIVATE_KEYS, ...) describe: named DefaultChainName, chain id read
// from the node (0), not Namespaced, so it keeps relayq's historical Redis
// keys and queues. errs collects the variables it could not parse.
func envChain(getenv func(string) string, errs *[]error) Chain {
	return Chain{
		Name:                 DefaultChainName,
		RPCURLs:              list(getenv(setRPCURLs.env)),
		PrivateKeys:          list(getenv(setPrivateKeys.env)),
		Confirmations:        uintVar(getenv, setConfirmations.env, DefaultConfirmations, errs),
		MaxFeePerGasWei:      gweiToWei(uintVar(getenv, setMaxFee.env, DefaultMaxFeeGwei, errs)),
		StuckBlocks:          uintVar(getenv, setStuckBlocks.env, DefaultStuckBlocks, errs),
		BumpPercent:          uintVar(getenv, setBumpPercent.env, DefaultBumpPercent, errs),
		PollInterval:         durVar(getenv, setPollInterval.env, DefaultPollInterval, errs),
		KeystoreFiles:        list(getenv(setKeystoreFiles.env)),
		KeystorePasswordFile: strings.TrimSpace(getenv(setKeystorePWFile.env)),
		KeystorePassword:     getenv(setKeystorePassword.env),
		KMSKeyIDs:            list(getenv(setKMSKeyIDs.env)),
		SignerMaxInFlight:    int(min(uintVar(getenv, setSignerMaxInFlight.env, DefaultSignerMaxInFlight, errs), 1_000_000)),
	}
}

// defaultEnvChain is the environment's chain with every setting at its default
// and no node or signers: what FromEnv builds from an environment that
// sets none of the chain-level variables.
func defaultEnvChain() Chain {
	return envChain(func(string) string { return "" }, new([]error))
}

// gweiToWei converts a fee ceiling in gwei; one out of 1..1000000 becomes
// 0, which Check reports.
func gweiToWei(gwei uint64) uint64 {
	if gwei > 1_000_000 {
		return 0
	}
	return gwei * 1_000_000_000
}

// Role says which parts of relayq a process runs; each needs different settings.
type Role int

// Roles, as the subcommands name them.
const (
	RoleAPI Role = 1 << iota
	RoleWorker
	RoleServe = RoleAPI | RoleWorker
)

// Check reports every problem with c for the given role at once, each
// naming its variable, or for a relayq.yaml chain its place in the file
// ("RELAYQ_CONFIG chains[1] (sepolia).fees.bump_percent"). It checks every
// chain in Chains; a Config with no Chains and no ConfigFile (one built by
// hand) is checked as if the environment set no chain-level variable.
func (c Config) Check(role Role) error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	rconn, rerr := redisconn.Parse(c.RedisURL)
	if rerr != nil {
		bad("REDIS_URL", "%s: %v", redisconn.Redact(c.RedisURL), rerr)
	}
	chains := c.Chains
	if len(chains) == 0 && c.ConfigFile == "" {
		chains = []Chain{defaultEnvChain()}
	}
	checkChains(chains, c.ConfigFile, role, bad)
	if role&RoleAPI != 0 {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			bad("RELAYQ_LISTEN", "%q is not host:port", c.Listen)
		}
		if len(c.APIKeys) == 0 && !c.InsecureNoAuth {
			bad("RELAYQ_API_KEYS", "is required (or set RELAYQ_INSECURE_NO_AUTH=1 to run without auth)")
		}
		keys, err := apikey.Parse(c.APIKeys)
		if err != nil {
			bad("RELAYQ_API_KEYS", "%v", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		if secrets, serr := apikey.ParseSecrets(c.WebhookSecrets, webhook.MinSecretLength); err == nil && serr == nil {
			named := map[string]bool{}
			for _, k := range keys {
				named[k.Name] = true
			}
			for i, e := range c.WebhookSecrets {
				if name, _, _ := strings.Cut(e, ":"); !named[name] && secrets[name] != "" {
					bad("RELAYQ_WEBHOOK_SECRETS", "entry %d: names no key of RELAYQ_API_KEYS", i+1)
				}
			}
		}
	}
	if _, err := apikey.ParseSecrets(c.WebhookSecrets, webhook.MinSecretLength); err != nil {
		bad("RELAYQ_WEBHOOK_SECRETS", "%v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if c.PprofListen != "" {
		if _, _, err := net.SplitHostPort(c.PprofListen); err != nil {
			bad("RELAYQ_PPROF_LISTEN", "%q is not host:port (such as 127.0.0.1:6060)", c.PprofListen)
		}
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("RELAYQ_METRICS_LISTEN", "%q is not host:port (such as 127.0.0.1:9464 or :9464)", c.MetricsListen)
		} else if role&RoleAPI != 0 && c.MetricsListen == c.Listen {
			bad("RELAYQ_METRICS_LISTEN", "%q is RELAYQ_LISTEN too: the API already serves /metrics there", c.MetricsListen)
		}
	}
	if c.Prefix == "" || strings.ContainsAny(c.Prefix, "{} ") {
		bad("RELAYQ_REDIS_PREFIX", "%q must be non-empty without braces or spaces", c.Prefix)
	}
	if c.RedisMinReplicas > 16 {
		bad("RELAYQ_REDIS_MIN_REPLICAS", "%d is not within 0..16", c.RedisMinReplicas)
	}
	if c.RedisWaitTimeout < 10*time.Millisecond || c.RedisWaitTimeout > 2*time.Second {
		bad("RELAYQ_REDIS_WAIT_TIMEOUT", "%s is not within 10ms..2s", c.RedisWaitTimeout)
	} else if rerr == nil && c.RedisMinReplicas > 0 && c.RedisWaitTimeout >= rconn.ReadTimeout()*2/3 {
		// The WAIT's answer must come back well within the socket read timeout.
		bad("RELAYQ_REDIS_WAIT_TIMEOUT", "%s must stay below two thirds of the Redis read timeout (%s; read_timeout in REDIS_URL)", c.RedisWaitTimeout, rconn.ReadTimeout())
	}
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		bad("RELAYQ_WORKER_CONCURRENCY", "%d is not within 1..4096", c.Concurrency)
	}
	if c.SweepAfter < time.Second {
		bad("RELAYQ_SWEEP_AFTER", "%s is below 1s", c.SweepAfter)
	}
	if c.MaxRetries < 1 || c.MaxRetries > DefaultMaxRetries {
		bad("RELAYQ_MAX_RETRIES", "%d is not within 1..%d", c.MaxRetries, DefaultMaxRetries)
	}
	if c.JobRetention != 0 && c.JobRetention < 24*time.Hour {
		// An Idempotency-Key is remembered 24 h: its job must outlive it.
		bad("RELAYQ_JOB_RETENTION", "%s is below 24h, how long an Idempotency-Key is remembered (0 keeps jobs forever)", c.JobRetention)
	}
	if c.ArchiveURL != "" {
		if u, err := url.Parse(c.ArchiveURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("RELAYQ_ARCHIVE_URL", "is not a postgres:// URL")
		}
		if c.HotRetention < time.Second {
			// A job is moved only once its block is confirmations deep
			// (asserted by the archiver); the window adds a margin and
			// keeps recent jobs in Redis. Tests use seconds.
			bad("RELAYQ_HOT_RETENTION", "%s is below 1s", c.HotRetention)
		}
	}
	if c.WebhookSecret != "" && len(c.WebhookSecret) < webhook.MinSecretLength {
		bad("RELAYQ_WEBHOOK_SECRET", "is %d characters; at least %d (e.g. openssl rand -hex 32)", len(c.WebhookSecret), webhook.MinSecretLength)
	}
	if c.RPCTimeout < 100*time.Millisecond {
		bad("RELAYQ_RPC_TIMEOUT", "%s is below 100ms", c.RPCTimeout)
	}
	if c.ShutdownTimeout < time.Second || c.ShutdownTimeout > 10*time.Minute {
		bad("RELAYQ_SHUTDOWN_TIMEOUT", "%s is not within 1s..10m", c.ShutdownTimeout)
	}
	if role&RoleAPI != 0 {
		if c.RateLimit > 1_000_000 {
			bad("RELAYQ_RATE_LIMIT", "%d is more than 1000000 requests/s (0 turns the limit off)", c.RateLimit)
		}
		if c.RateLimit > 0 && (c.RateBurst < 1 || c.RateBurst > 1_000_000) {
			bad("RELAYQ_RATE_BURST", "%d is not within 1..1000000", c.RateBurst)
		}
		// The API's http.Server cuts every response at 30 s (WriteTimeout).
		if c.RequestTimeout < 100*time.Millisecond || c.RequestTimeout > 30*time.Second {
			bad("RELAYQ_REQUEST_TIMEOUT", "%s is not within 100ms..30s", c.RequestTimeout)
		} else if c.RedisMinReplicas > 0 && c.RedisWaitTimeout >= c.RequestTimeout {
			bad("RELAYQ_REDIS_WAIT_TIMEOUT", "%s must be shorter than RELAYQ_REQUEST_TIMEOUT (%s)", c.RedisWaitTimeout, c.RequestTimeout)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("RELAYQ_LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	return errors.Join(errs...)
}

func or(v, def string) string {
	if v = strings.TrimSpace(v); v == "" {
		return def
	}
	return v
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func uintVar(getenv func(string) string, name string, def uint64, errs *[]error) uint64 {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s: %q is not a non-negative integer", name, v))
		return def
	}
	return n
}

func durVar(getenv func(string) string, name string, def time.Duration, errs *[]error) time.Duration {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s: %q is not a duration such as 500ms or 2s", name, v))
		return def
	}
	return d
}

// A chainSetting is one chain-level setting: its environment variable (the
// one-chain shortcut) and its key in a relayq.yaml chain.
type chainSetting struct{ env, key string }

var (
	setRPCURLs           = chainSetting{"RELAYQ_RPC_URL", "rpc_urls"}
	setConfirmations     = chainSetting{"RELAYQ_CONFIRMATIONS", "confirmations"}
	setPollInterval      = chainSetting{"RELAYQ_POLL_INTERVAL", "poll_interval"}
	setMaxFee            = chainSetting{"RELAYQ_MAX_FEE_GWEI", "fees.max_fee_gwei"}
	setBumpPercent       = chainSetting{"RELAYQ_BUMP_PERCENT", "fees.bump_percent"}
	setStuckBlocks       = chainSetting{"RELAYQ_STUCK_BLOCKS", "fees.stuck_after_blocks"}
	setPrivateKeys       = chainSetting{"RELAYQ_PRIVATE_KEYS", "signers.private_keys_env"}
	setKeystoreFiles     = chainSetting{"RELAYQ_KEYSTORE_FILES", "signers.keystore_files"}
	setKeystorePWFile    = chainSetting{"RELAYQ_KEYSTORE_PASSWORD_FILE", "signers.keystore_password_file"}
	setKeystorePassword  = chainSetting{"RELAYQ_KEYSTORE_PASSWORD", "signers.keystore_password_env"}
	setSignerMaxInFlight = chainSetting{"RELAYQ_SIGNER_MAX_IN_FLIGHT", "signers.max_in_flight"}
	setKMSKeyIDs         = chainSetting{"RELAYQ_KMS_KEY_IDS", "signers.kms_key_ids"}
)

// chainSettings are all of them: the chain-level variables.
var chainSettings = []chainSetting{
	setRPCURLs, setPrivateKeys, setConfirmations, setMaxFee, setBumpPercent, setStuckBlocks,
	setPollInterval, setKeystoreFiles, setKeystorePWFile, setKeystorePassword, setSignerMaxInFlight,
	setKMSKeyIDs,
}

// chainNamer names a chain's settings in Check's messages: the environment
// variable for the environment's chain, the place in the file for a
// relayq.yaml chain.
type chainNamer struct {
	file bool
	at   string // a file chain's place, "RELAYQ_CONFIG chains[1] (sepolia)."
}

func envNamer() chainNamer { return chainNamer{} }

func fileNamer(i int, name string) chainNamer {
	return chainNamer{file: true, at: ConfigFileVar + " " + chainLabel(i, name) + "."}
}

// name is where a message about s starts: "RELAYQ_RPC_URL", or
// "RELAYQ_CONFIG chains[0] (sepolia).rpc_urls".
func (n chainNamer) name(s chainSetting) string {
	if !n.file {
		return s.env
	}
	return n.at + s.key
}

// ref names s inside a message about another setting of the same chain.
func (n chainNamer) ref(s chainSetting) string {
	if !n.file {
		return s.env
	}
	return s.key
}

// checkChain checks one chain's settings, whichever way they were given:
// the environment's chain and every file chain go through it.
func checkChain(ch Chain, role Role, n chainNamer, bad func(name, format string, args ...any)) {
	if len(ch.RPCURLs) == 0 {
		bad(n.name(setRPCURLs), "is required (the node's JSON-RPC URL)")
	}
	seenRPC := map[string]bool{}
	for _, raw := range ch.RPCURLs {
		// Messages show a URL redacted: providers put API keys in it.
		if !isRPCURL(raw) {
			bad(n.name(setRPCURLs), "%q is not an http(s):// or ws(s):// URL", nodeurl.Redact(raw))
		} else if seenRPC[rpcKey(raw)] {
			bad(n.name(setRPCURLs), "%q is listed twice", nodeurl.Redact(raw))
		}
		seenRPC[rpcKey(raw)] = true
	}
	// A variable named but empty was reported when the file was read.
	if role&RoleWorker != 0 && len(ch.PrivateKeys) == 0 && len(ch.KeystoreFiles) == 0 && ch.PrivateKeysEnv == "" && len(ch.KMSKeyIDs) == 0 {
		hint := "comma-separated hex keys"
		if n.file {
			hint = "the name of an environment variable holding comma-separated hex keys"
		}
		bad(n.name(setPrivateKeys), "is required for the worker (%s), unless %s is set", hint, n.ref(setKeystoreFiles)+" or "+n.ref(setKMSKeyIDs))
	}
	checkKeystore(ch, n, bad)
	checkKMSKeys(ch, n, bad)
	if ch.Confirmations > 1000 {
		bad(n.name(setConfirmations), "%d is more than 1000", ch.Confirmations)
	}
	if ch.PollInterval < 10*time.Millisecond {
		bad(n.name(setPollInterval), "%s is below 10ms", ch.PollInterval)
	}
	if ch.MaxFeePerGasWei == 0 {
		bad(n.name(setMaxFee), "must be from 1 to 1000000")
	}
	if ch.StuckBlocks < 1 || ch.StuckBlocks > 1000 {
		bad(n.name(setStuckBlocks), "%d is not within 1..1000", ch.StuckBlocks)
	}
	if ch.BumpPercent < 10 || ch.BumpPercent > 1000 {
		bad(n.name(setBumpPercent), "%d is not within 10..1000 (nodes refuse replacements bumped less than 10%%)", ch.BumpPercent)
	}
}

func isRPCURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "ws" || u.Scheme == "wss")
}

// rpcKey is what two spellings of one endpoint have in common: scheme and
// host are case-insensitive, a trailing slash does not matter.
func rpcKey(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	return u.String()
}

// checkKMSKeys checks that each KMS key id looks like one KMS accepts
// (a key id, a key ARN, alias/name or an alias ARN) and is listed once.
// Whether the key exists and can sign is known only when the worker
// asks KMS, at start.
func checkKMSKeys(ch Chain, n chainNamer, bad func(name, format string, args ...any)) {
	seen := map[string]bool{}
	for _, id := range ch.KMSKeyIDs {
		if !isKMSKeyID(id) {
			// A hex private key pasted here by mistake must not be echoed.
			bad(n.name(setKMSKeyIDs), "%s is not a KMS key id, key ARN or alias/name", redactKeyLike(id))
		} else if seen[id] {
			bad(n.name(setKMSKeyIDs), "%s is listed twice", id)
		}
		seen[id] = true
	}
}

// isKMSKeyID reports whether s has the shape of a KeyId that KMS signs
// with: a key id (a UUID, or mrk-… for a multi-Region key), an ARN of a
// key or alias, or alias/name.
func isKMSKeyID(s string) bool {
	switch {
	case s == "" || strings.ContainsAny(s, " \t\r\n"):
		return false
	case strings.HasPrefix(s, "arn:"):
		return strings.Contains(s, ":kms:") && (strings.Contains(s, ":key/") || strings.Contains(s, ":alias/"))
	case strings.HasPrefix(s, "alias/"):
		return len(s) > len("alias/")
	case strings.HasPrefix(s, "mrk-"):
		return len(s) > len("mrk-")
	default:
		return kmsKeyUUID.MatchString(s)
	}
}

// kmsKeyUUID is the shape of a KMS key id.
var kmsKeyUUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// redactKeyLike quotes s, unless it could be a hex private key.
func redactKeyLike(s string) string {
	if len(strings.TrimPrefix(s, "0x")) >= 32 {
		return "an entry (not shown)"
	}
	return fmt.Sprintf("%q", s)
}

// checkKeystore checks a chain's signer settings: the in-flight limit, the
// keystore files are there and a password is given. Decrypting them (slow
// on purpose) happens once, at start.
func checkKeystore(ch Chain, n chainNamer, bad func(name, format string, args ...any)) {
	if ch.SignerMaxInFlight < 1 || ch.SignerMaxInFlight > 100_000 {
		bad(n.name(setSignerMaxInFlight), "%d is not within 1..100000", ch.SignerMaxInFlight)
	}
	if len(ch.KeystoreFiles) == 0 {
		if ch.KeystorePasswordFile != "" || ch.KeystorePassword != "" {
			bad(n.name(setKeystoreFiles), "is empty, but a keystore password is set")
		}
		return
	}
	for _, p := range ch.KeystoreFiles {
		if fi, err := os.Stat(p); err != nil {
			bad(n.name(setKeystoreFiles), "%v", err)
		} else if fi.IsDir() {
			bad(n.name(setKeystoreFiles), "%s is a directory; list the key files", p)
		}
	}
	switch {
	case ch.KeystorePasswordFile != "" && ch.KeystorePassword != "":
		bad(n.name(setKeystorePassword), "and %s are both set; set one", n.ref(setKeystorePWFile))
	case ch.KeystorePasswordFile != "":
		if _, err := os.Stat(ch.KeystorePasswordFile); err != nil {
			bad(n.name(setKeystorePWFile), "%v", err)
		}
	case ch.KeystorePassword == "":
		bad(n.name(setKeystorePWFile), "or %s is required with %s", n.ref(setKeystorePassword), n.ref(setKeystoreFiles))
	}
}
