// Package metrics defines relayq's Prometheus metrics. Each process builds
// one Metrics on a registry of its own (never the global default, so a test
// can build several), hands it to the API and the worker, and serves it at
// /metrics. Every method is safe on a nil *Metrics and then does nothing, so
// code paths and tests without metrics need no wiring.
//
// Labels are bounded by construction: statuses, stages, kinds, queue states,
// JSON-RPC methods, error classes, route templates and configured signer
// addresses. No job id, hash or raw URL is ever a label value.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// Stage is a point in a job's life whose time since acceptance is measured.
type Stage string

// The stages timed from a job's acceptance.
const (
	StageBroadcast Stage = "broadcast" // the node first accepted the job's transaction
	StageMined     Stage = "mined"     // a receipt of the job's transaction was seen
	StageConfirmed Stage = "confirmed" // the block is deep enough
)

// Reasons for sending a job's persisted transaction again.
const (
	RebroadcastRetry   = "retry"   // the send task ran again for a job that already has a signed tx
	RebroadcastDropped = "dropped" // the tracker found the node no longer knows the tx
)

// Replacement kinds, as jobs.Attempt.Kind names them.
var replacementKinds = []string{jobs.KindBump, jobs.KindCancel, jobs.KindResign, jobs.KindGapFill}

// rpcMethods are the JSON-RPC methods txmgr.Observed reports, so their
// series exist from the start.
var rpcMethods = []string{
	"eth_chainId", "eth_getBlockByNumber", "eth_maxPriorityFeePerGas", "eth_estimateGas",
	"eth_call", "eth_sendRawTransaction", "eth_getTransactionCount", "eth_getBalance",
	"eth_getTransactionReceipt", "eth_getTransactionByHash",
}

// stageBuckets span 0.1 s to 30 min: a job on a fast dev chain is mined in
// a fraction of a second; a stuck one on a busy network takes many minutes.
var stageBuckets = []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800}

// attemptBuckets: 0 is a job that failed before signing; each fee bump,
// cancel or re-sign adds one.
var attemptBuckets = []float64{0, 1, 2, 3, 4, 5, 7, 10, 15, 20}

// Metrics is one process's metrics.
type Metrics struct {
	reg *prometheus.Registry

	// API
	accepted     *prometheus.CounterVec
	rejected     *prometheus.CounterVec
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	// Worker
	finished     *prometheus.CounterVec
	stage        *prometheus.HistogramVec
	attempts     *prometheus.HistogramVec
	replacements *prometheus.CounterVec
	rebroadcasts *prometheus.CounterVec
	webhooks     *prometheus.CounterVec

	// Node
	rpcRequests *prometheus.CounterVec
	rpcErrors   *prometheus.CounterVec
	rpcDuration *prometheus.HistogramVec
}

// New builds the metrics on a fresh registry, with the Go runtime and
// process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_jobs_accepted_total",
			Help: "POST /v1/jobs answered with a job: outcome created (202, a new job) or replayed (200, an Idempotency-Key seen before).",
		}, []string{"outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_jobs_rejected_total",
			Help: "POST /v1/jobs refused, by the API error code of the answer.",
		}, []string{"code"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_http_requests_total",
			Help: "HTTP requests answered, by method, route template and status class (2xx, 4xx, 5xx).",
		}, []string{"method", "route", "status_class"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relayq_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by method and route template.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_jobs_finished_total",
			Help: "Jobs this process moved to a final status (confirmed, failed, cancelled).",
		}, []string{"status"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relayq_job_stage_seconds",
			Help:    "Time from a job's acceptance until it reached a stage (broadcast, mined, confirmed).",
			Buckets: stageBuckets,
		}, []string{"stage"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relayq_job_attempts",
			Help:    "Transactions signed for a job (original, bumps, cancel, re-signs, gap fill) when it reached a final status.",
			Buckets: attemptBuckets,
		}, []string{"status"}),
		replacements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_tx_replacements_total",
			Help: "Replacement transactions signed and persisted, by kind: bump (fee bump), cancel, resign (new nonce after foreign use), gap_fill (nonce gap filled).",
		}, []string{"kind"}),
		rebroadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_tx_rebroadcasts_total",
			Help: "Persisted transactions sent again, by reason: retry (send task ran again) or dropped (the node had forgotten it).",
		}, []string{"reason"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome: delivered (2xx), failed (will be retried unless it was the last), refused (the address policy).",
		}, []string{"outcome"}),
		rpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_rpc_requests_total",
			Help: "Calls to the node, by chain (its name; \"default\" without RELAYQ_CONFIG) and JSON-RPC method (a batch of receipts or transactions counts once).",
		}, []string{"chain", "method"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relayq_rpc_errors_total",
			Help: "Calls to the node that failed, by chain, JSON-RPC method and error class (txmgr.Classify).",
		}, []string{"chain", "method", "class"}),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relayq_rpc_duration_seconds",
			Help:    "Time of a call to the node, by chain and JSON-RPC method.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"chain", "method"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.accepted, m.rejected, m.httpRequests, m.httpDuration,
		m.finished, m.stage, m.attempts, m.replacements, m.rebroadcasts, m.webhooks,
		m.rpcRequests, m.rpcErrors, m.rpcDuration,
	)
	// Series that exist from the start read 0 instead of missing, so
	// increase() and alerts work from the first scrape.
	for _, o := range []string{"created", "replayed"} {
		m.accepted.WithLabelValues(o)
	}
	for _, st := range []jobs.Status{jobs.Confirmed, jobs.Failed, jobs.Cancelled} {
		m.finished.WithLabelValues(string(st))
		m.attempts.WithLabelValues(string(st))
	}
	for _, s := range []Stage{StageBroadcast, StageMined, StageConfirmed} {
		m.stage.WithLabelValues(string(s))
	}
	for _, k := range replacementKinds {
		m.replacements.WithLabelValues(k)
	}
	for _, r := range []string{RebroadcastRetry, RebroadcastDropped} {
		m.rebroadcasts.WithLabelValues(r)
	}
	for _, o := range []string{"delivered", "failed", "refused"} {
		m.webhooks.WithLabelValues(o)
	}
	m.initRPC(DefaultChain)
	return m
}

// initRPC makes a chain's RPC series exist from the start.
func (m *Metrics) initRPC(chain string) {
	for _, method := range rpcMethods {
		m.rpcRequests.WithLabelValues(chain, method)
	}
}

// Registry is the registry the metrics live on (nil for nil Metrics), for
// registering more collectors or gathering in tests.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// maxScrapes bounds concurrent scrapes: /metrics needs no key, and each
// scrape of the cluster gauges costs Redis and node calls.
const maxScrapes = 4

// Handler serves the metrics in the Prometheus exposition format. A part of
// the cluster gauges that cannot be read leaves its series out (and sets
// relayq_cluster_scrape_success to 0) rather than failing the scrape. On nil
// Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"metrics are not enabled in this process"}}` + "\n"))
		})
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
	})
}

// JobAccepted counts a POST /v1/jobs answered with a job: a new one, or
// (replayed) the earlier job of a repeated Idempotency-Key.
func (m *Metrics) JobAccepted(replayed bool) {
	if m == nil {
		return
	}
	outcome := "created"
	if replayed {
		outcome = "replayed"
	}
	m.accepted.WithLabelValues(outcome).Inc()
}

// JobRejected counts a POST /v1/jobs refused with an API error code.
func (m *Metrics) JobRejected(code string) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(code).Inc()
}

// Stage records that a job accepted at accepted reached stage now. A zero
// accepted (not known) records nothing.
func (m *Metrics) Stage(stage Stage, accepted time.Time) {
	if m == nil || accepted.IsZero() {
		return
	}
	m.stage.WithLabelValues(string(stage)).Observe(max(time.Since(accepted).Seconds(), 0))
}

// AcceptedAt is when the job with this id was accepted, read from the id
// itself (a UUIDv7); zero if id is not one.
func AcceptedAt(id string) time.Time {
	t, _ := jobs.CreatedAt(id)
	return t
}

// Finished records a job's move to a final status with the number of
// transactions it had signed (attempts < 0: not known at the call site;
// counted, not observed), unless err says the transition did not happen. It
// returns err, so a call site can wrap the transition it records.
func (m *Metrics) Finished(status jobs.Status, attempts int, err error) error {
	if m == nil || err != nil {
		return err
	}
	m.finished.WithLabelValues(string(status)).Inc()
	if attempts >= 0 {
		m.attempts.WithLabelValues(string(status)).Observe(float64(attempts))
	}
	return nil
}

// Replaced counts a replacement transaction signed and persisted for a job
// (kind is jobs.KindBump, KindCancel, KindResign or KindGapFill).
func (m *Metrics) Replaced(kind string) {
	if m == nil {
		return
	}
	m.replacements.WithLabelValues(kind).Inc()
}

// Rebroadcast counts a persisted transaction sent again (RebroadcastRetry,
// RebroadcastDropped).
func (m *Metrics) Rebroadcast(reason string) {
	if m == nil {
		return
	}
	m.rebroadcasts.WithLabelValues(reason).Inc()
}

// WebhookDelivery counts one delivery attempt by its outcome (delivered,
// failed, refused: the job's webhook last_status values).
func (m *Metrics) WebhookDelivery(outcome string) {
	if m == nil {
		return
	}
	m.webhooks.WithLabelValues(outcome).Inc()
}

// RPC records one call to the node: its JSON-RPC method, how long it took,
// and its error, counted by txmgr.Classify's class. Its signature is the
// observer txmgr.Observed takes.
// Its calls carry chain="default", the name of the chain the environment
// describes.
func (m *Metrics) RPC(method string, took time.Duration, err error) {
	m.rpc(DefaultChain, method, took, err)
}

// DefaultChain is the chain label of RPC (config.DefaultChainName).
const DefaultChain = "default"

// RPCFor is the observer of one chain's node, when a process serves
// several: its calls carry chain="<chain>". A nil Metrics observes nothing.
func (m *Metrics) RPCFor(chain string) txmgr.Observer {
	if m == nil {
		return nil
	}
	m.initRPC(chain)
	return func(method string, took time.Duration, err error) { m.rpc(chain, method, took, err) }
}

func (m *Metrics) rpc(chain, method string, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.rpcRequests.WithLabelValues(chain, method).Inc()
	m.rpcDuration.WithLabelValues(chain, method).Observe(took.Seconds())
	if err != nil {
		m.rpcErrors.WithLabelValues(chain, method, txmgr.Classify(err).String()).Inc()
	}
}
