// Package tasks names relayq's Asynq task types and builds their payloads.
// It does no I/O: the API enqueues what it builds and the worker decodes it.
package tasks

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Task type names.
const (
	// TypeSend signs (once) and broadcasts the transaction of one job.
	TypeSend = "tx:send"
)

// QueueSend is the Asynq queue that carries send tasks (of the chain the
// environment describes; see Queues).
const QueueSend = "relayq"

// Queues names the Asynq queues of one chain. The chain the environment
// describes uses DefaultQueues; each chain of a relayq.yaml has its own
// (ChainQueues), so the workers of one chain never take another's tasks.
type Queues struct {
	Send     string
	Webhooks string
}

// DefaultQueues are the queues of the environment's chain.
var DefaultQueues = Queues{Send: QueueSend, Webhooks: QueueWebhooks}

// ChainQueues are the queues of a chain of a relayq.yaml, named by the
// deployment's key prefix and the chain id: with the default prefix
// "relayq:", relayq-<id> and relayq-webhooks-<id>. Asynq's queues are
// global to a Redis, so two deployments (two prefixes) sharing one keep
// apart; braces (a Cluster hash tag) do not count.
func ChainQueues(prefix string, chainID uint64) Queues {
	base := strings.Trim(strings.NewReplacer("{", "", "}", "").Replace(prefix), ":")
	if base == "" {
		base = QueueSend
	}
	return Queues{Send: fmt.Sprintf("%s-%d", base, chainID), Webhooks: fmt.Sprintf("%s-webhooks-%d", base, chainID)}
}

// OrDefault is q, or DefaultQueues when q is the zero value.
func (q Queues) OrDefault() Queues {
	if q == (Queues{}) {
		return DefaultQueues
	}
	return q
}

// SendMaxRetry bounds how often a send task is retried. Backoff is capped
// (see worker.RetryDelay), so this is hours of trying, not seconds; the job
// is durable in Redis either way and the sweeper can enqueue it again.
const SendMaxRetry = 200

// SendPayload is the payload of a TypeSend task: one job (JobID), or a
// batch of jobs the API accepted together (JobIDs). Exactly one is set.
type SendPayload struct {
	JobID  string   `json:"job_id,omitempty"`
	JobIDs []string `json:"job_ids,omitempty"`
}

// IDs is the payload's jobs.
func (p SendPayload) IDs() []string {
	if p.JobID != "" {
		return []string{p.JobID}
	}
	return p.JobIDs
}

// MaxSendBatch bounds the jobs of one batch task.
const MaxSendBatch = 256

// NewSendTask builds the send task of a job, on queue (QueueSend when
// empty). The job id is also the Asynq TaskID, so enqueueing it twice is
// refused by Asynq (ErrTaskIDConflict), which the caller treats as
// "already queued".
func NewSendTask(queue, jobID string) (*asynq.Task, []asynq.Option, error) {
	if jobID == "" {
		return nil, nil, fmt.Errorf("new send task: empty job id")
	}
	return newSendTask(queue, jobID, SendPayload{JobID: jobID})
}

// NewSendBatchTask builds one send task for the jobs ids, on queue
// (QueueSend when empty): the API's way to hand over the jobs it accepted
// together at one Asynq enqueue, dequeue and acknowledgement for all (an
// Asynq task costs about 20 Redis commands). Its TaskID is "batch:" and
// the first job's id, unique since a job is put in one batch only. The
// worker gives a job of the batch that must be tried again a task of its
// own (NewSendTask), so one job's retries never hold up its neighbours.
func NewSendBatchTask(queue string, ids []string) (*asynq.Task, []asynq.Option, error) {
	if len(ids) == 0 || len(ids) > MaxSendBatch {
		return nil, nil, fmt.Errorf("new send batch task: %d jobs (1..%d)", len(ids), MaxSendBatch)
	}
	for _, id := range ids {
		if id == "" {
			return nil, nil, fmt.Errorf("new send batch task: empty job id")
		}
	}
	if len(ids) == 1 {
		return NewSendTask(queue, ids[0])
	}
	return newSendTask(queue, "batch:"+ids[0], SendPayload{JobIDs: ids})
}

func newSendTask(queue, taskID string, p SendPayload) (*asynq.Task, []asynq.Option, error) {
	if queue == "" {
		queue = QueueSend
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, nil, fmt.Errorf("new send task: %w", err)
	}
	opts := []asynq.Option{
		asynq.TaskID(taskID),
		asynq.Queue(queue),
		asynq.MaxRetry(SendMaxRetry),
		asynq.Timeout(2 * time.Minute),
	}
	return asynq.NewTask(TypeSend, b), opts, nil
}

// ParseSendPayload decodes the payload of a TypeSend task.
func ParseSendPayload(b []byte) (SendPayload, error) {
	var p SendPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("parse send payload: %w", err)
	}
	switch {
	case p.JobID == "" && len(p.JobIDs) == 0:
		return p, fmt.Errorf("parse send payload: no job id")
	case p.JobID != "" && len(p.JobIDs) > 0:
		return p, fmt.Errorf("parse send payload: both job_id and job_ids")
	case len(p.JobIDs) > MaxSendBatch:
		return p, fmt.Errorf("parse send payload: %d job ids (at most %d)", len(p.JobIDs), MaxSendBatch)
	}
	for _, id := range p.JobIDs {
		if id == "" {
			return p, fmt.Errorf("parse send payload: empty job id")
		}
	}
	return p, nil
}

// TypeWebhookDeliver delivers one webhook event of a job.
const TypeWebhookDeliver = "webhook:deliver"

// QueueWebhooks is the Asynq queue of webhook deliveries. Workers serve it
// with handlers of its own, so slow receivers never hold up sends.
const QueueWebhooks = "relayq-webhooks"

// WebhookMaxRetry bounds how often a delivery is retried (over about 7
// hours: see worker.WebhookRetryDelay) before its task is archived.
const WebhookMaxRetry = 12

// WebhookRetention is how long a delivered event's task is kept: while it
// is, enqueueing the event again is refused (ErrTaskIDConflict), so an
// outbox entry handed over twice after a crash is delivered once. The
// window it guards (between the enqueue and the outbox removal) is
// milliseconds; keeping every delivered body for a day would cost Redis
// gigabytes at production rates (a few kB per event).
const WebhookRetention = 15 * time.Minute

// WebhookPayload is the payload of a TypeWebhookDeliver task.
type WebhookPayload struct {
	EventID string `json:"event_id"`
	JobID   string `json:"job_id"`
	Type    string `json:"type"`
	URL     string `json:"url"`
	APIKey  string `json:"api_key,omitempty"` // the job's API key name: its secret signs the event
	// Body is the event exactly as it is sent, built once so that every
	// retry sends identical bytes.
	Body []byte `json:"body"`
}

// NewWebhookTask builds the delivery task of one event, on queue
// (QueueWebhooks when empty). The event id is the TaskID, so an event is
// enqueued at most once.
func NewWebhookTask(queue string, p WebhookPayload) (*asynq.Task, []asynq.Option, error) {
	if queue == "" {
		queue = QueueWebhooks
	}
	if err := p.check(); err != nil {
		return nil, nil, fmt.Errorf("new webhook task: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, nil, fmt.Errorf("new webhook task: %w", err)
	}
	opts := []asynq.Option{
		asynq.TaskID(p.EventID),
		asynq.Queue(queue),
		asynq.MaxRetry(WebhookMaxRetry),
		asynq.Timeout(time.Minute),
		asynq.Retention(WebhookRetention),
	}
	return asynq.NewTask(TypeWebhookDeliver, b), opts, nil
}

// ParseWebhookPayload decodes the payload of a TypeWebhookDeliver task.
func ParseWebhookPayload(b []byte) (WebhookPayload, error) {
	var p WebhookPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("parse webhook payload: %w", err)
	}
	if err := p.check(); err != nil {
		return p, fmt.Errorf("parse webhook payload: %w", err)
	}
	return p, nil
}

func (p WebhookPayload) check() error {
	switch {
	case p.EventID == "":
		return fmt.Errorf("no event id")
	case p.JobID == "":
		return fmt.Errorf("no job id")
	case p.URL == "":
		return fmt.Errorf("no url")
	case len(p.Body) == 0:
		return fmt.Errorf("no body")
	}
	return nil
}
