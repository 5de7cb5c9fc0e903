package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/webhook"
)

// WebhookConfig configures how a worker delivers webhooks.
type WebhookConfig struct {
	// Secret signs deliveries (RELAYQ_WEBHOOK_SECRET). A worker without it
	// cannot deliver: its attempts fail, and are retried, so set it on
	// every worker of a deployment that accepts webhook_url.
	Secret string
	// Secrets are API keys' own secrets, by key name
	// (RELAYQ_WEBHOOK_SECRETS): the events of a job created by a key with
	// one are signed with it instead of Secret, so that one key cannot
	// have events signed for another key's receiver.
	Secrets map[string]string
	// Allow exempts these prefixes from the SSRF policy
	// (RELAYQ_WEBHOOK_ALLOW_CIDRS), e.g. 127.0.0.0/8 for a local receiver.
	Allow []netip.Prefix
	// Concurrency is how many deliveries one worker makes at once (default
	// 8). They have handlers of their own, apart from the send handlers.
	Concurrency int
	// Poll is how often the outbox is read (default 200 ms).
	Poll time.Duration
	// Timeout bounds one delivery attempt (default webhook.DefaultTimeout).
	Timeout time.Duration
	// RetryDelay replaces WebhookRetryDelay (tests).
	RetryDelay func(retried int) time.Duration
}

// webhooks is the worker's webhook client, made on first use.
type webhooks struct {
	once   sync.Once
	client *webhook.Client // nil without any secret
}

func (w *Worker) webhookClient() *webhook.Client {
	w.hooks.once.Do(func() {
		if c := w.cfg.Webhook; c.Secret != "" || len(c.Secrets) > 0 {
			w.hooks.client = webhook.NewClient(c.Secret, webhook.NewPolicy(c.Allow), c.Timeout)
		}
	})
	return w.hooks.client
}

// webhookBackoff is the wait before each retry of a delivery: about 7 hours
// over tasks.WebhookMaxRetry retries, so a receiver that is down for an
// afternoon still gets every event.
var webhookBackoff = []time.Duration{
	10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 30 * time.Minute, time.Hour, time.Hour, 2 * time.Hour, 2 * time.Hour,
}

// WebhookRetryDelay is the wait before retry number retried+1 of a
// delivery, ±25 % so a receiver coming back is not hit by every retry at
// once.
func WebhookRetryDelay(retried int) time.Duration {
	return jitter(webhookBackoff[max(0, min(retried, len(webhookBackoff)-1))])
}

// runWebhooks serves the webhook queue, with handlers of its own so that
// slow receivers never take the send handlers (Asynq's queue weights only
// choose what a free handler takes next), and drains the outbox until ctx
// ends.
func (w *Worker) runWebhooks(ctx context.Context) {
	cfg := w.cfg.Webhook
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	delay := cfg.RetryDelay
	if delay == nil {
		delay = WebhookRetryDelay
	}
	srv := asynq.NewServerFromRedisClient(w.cfg.Redis, asynq.Config{
		Concurrency:    cfg.Concurrency,
		Queues:         map[string]int{w.cfg.Queues.Webhooks: 1},
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration { return delay(n) },
		ErrorHandler:   asynq.ErrorHandlerFunc(w.handleTaskError),
		Logger:         asynqLogger{w.log},
		// The first retry waits 10 s; look for due retries every second
		// rather than Asynq's default 5 s.
		DelayedTaskCheckInterval: time.Second,
		ShutdownTimeout:          w.cfg.ShutdownTimeout,
	})
	if err := srv.Start(w.Handler()); err != nil {
		w.log.Error("webhooks: start asynq server; deliveries wait for another worker", "err", err)
	} else {
		defer srv.Shutdown()
	}
	if c := w.webhookClient(); c != nil {
		defer c.CloseIdle()
	}
	w.runDispatcher(ctx, cfg.Poll)
}

// dispatchBatch bounds the events one pass over the outbox reads.
const dispatchBatch = 100

// runDispatcher hands outbox events to the queue every poll until ctx
// ends. Every worker runs one: two that take the same event enqueue it
// once (its id is the TaskID), and both remove it.
func (w *Worker) runDispatcher(ctx context.Context, poll time.Duration) {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		n, err := w.DispatchWebhooks(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("webhooks: dispatch", "err", err)
		}
		if n == dispatchBatch && err == nil {
			continue // more are waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DispatchWebhooks hands one batch of outbox events to the queue: it builds
// each event's body once, from the job as it was right after its
// transition, enqueues a delivery task whose TaskID is the event id, and
// only then removes the event from the outbox. A crash in between leaves
// the event in the outbox; enqueueing it again is refused as a duplicate
// (the task is kept tasks.WebhookRetention after delivery), which counts as
// done. It returns how many events it read.
func (w *Worker) DispatchWebhooks(ctx context.Context) (int, error) {
	evs, err := w.store.Outbox(ctx, dispatchBatch)
	if err != nil {
		return 0, err
	}
	for _, ev := range evs {
		if ev.Job != nil && ev.Err == nil {
			var t *asynq.Task
			var opts []asynq.Option
			t, opts, ev.Err = webhookTask(w.cfg.Queues.Webhooks, ev)
			if ev.Err == nil {
				_, err := w.enqueuer.EnqueueContext(ctx, t, opts...)
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					return 0, fmt.Errorf("enqueue webhook event %s: %w", ev.ID, err)
				}
			}
		}
		if ev.Err != nil {
			// Retrying cannot repair a corrupt event; keeping it would
			// only make every pass read it again.
			w.log.Error("webhooks: dropping an event that cannot be built", "event_id", ev.ID, "err", ev.Err)
		}
		if err := w.store.RemoveFromOutbox(ctx, ev.ID); err != nil {
			return 0, err
		}
	}
	return len(evs), nil
}

// eventType names the event a change fires.
func eventType(c jobs.Change) string {
	switch {
	case c.From == jobs.Mined && c.To == jobs.Submitted:
		return webhook.EventReorged
	case c.To == jobs.Mined:
		return webhook.EventMined
	case c.To == jobs.Confirmed:
		return webhook.EventConfirmed
	case c.To == jobs.Failed:
		return webhook.EventFailed
	case c.To == jobs.Cancelled:
		return webhook.EventCancelled
	}
	return "job." + string(c.To)
}

// webhookTask builds the delivery task of an outbox event, body and all.
func webhookTask(queue string, ev jobs.OutboxEvent) (*asynq.Task, []asynq.Option, error) {
	j := *ev.Job
	// Delivery bookkeeping is about the webhook, not the job's state.
	j.Webhook = nil
	jb, err := json.Marshal(&j)
	if err != nil {
		return nil, nil, fmt.Errorf("webhook event %s: %w", ev.ID, err)
	}
	typ := eventType(ev.Change)
	body, err := json.Marshal(webhook.Event{ID: ev.ID, Type: typ, CreatedAt: ev.Change.At, Job: jb})
	if err != nil {
		return nil, nil, fmt.Errorf("webhook event %s: %w", ev.ID, err)
	}
	return tasks.NewWebhookTask(queue, tasks.WebhookPayload{EventID: ev.ID, JobID: ev.JobID, Type: typ, URL: j.WebhookURL, APIKey: j.APIKey, Body: body})
}

// HandleWebhookTask makes one delivery attempt and records its outcome on
// the job. A non-2xx answer or a network error is returned, so Asynq
// retries with WebhookRetryDelay (the monitor shows the error); an address
// the SSRF policy refuses is not retried: a host name that resolves to an
// internal address is a configuration to fix or an attack, and retrying
// for hours would only probe the inside longer.
func (w *Worker) HandleWebhookTask(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseWebhookPayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	st := jobs.WebhookState{LastEvent: p.EventID, LastType: p.Type, LastAttemptAt: time.Now().UTC()}
	secret := w.cfg.Webhook.Secrets[p.APIKey] // "": the client's, RELAYQ_WEBHOOK_SECRET
	if c := w.webhookClient(); c == nil || secret == "" && w.cfg.Webhook.Secret == "" {
		err = errors.New("RELAYQ_WEBHOOK_SECRET is not set on this worker, nor a RELAYQ_WEBHOOK_SECRETS entry for the job's API key: it cannot sign deliveries")
	} else {
		err = c.Deliver(ctx, webhook.Delivery{URL: p.URL, EventID: p.EventID, EventType: p.Type, Body: p.Body, Secret: secret})
	}
	switch {
	case err == nil:
		st.LastStatus = jobs.WebhookDelivered
	case webhook.IsRefused(err):
		st.LastStatus, st.LastError = jobs.WebhookRefused, err.Error()
		err = fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	default:
		st.LastStatus, st.LastError = jobs.WebhookFailed, err.Error()
		retried, _ := asynq.GetRetryCount(ctx)
		if most, ok := asynq.GetMaxRetry(ctx); ok && retried >= most {
			st.LastError = fmt.Sprintf("gave up after %d attempts: %s", retried+1, st.LastError)
		}
	}
	w.cfg.Metrics.WebhookDelivery(st.LastStatus)
	// The outcome is recorded even when the task's context has ended.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := w.store.SetWebhookState(sctx, p.JobID, st); serr != nil {
		w.log.Warn("webhooks: record delivery state", "job_id", p.JobID, "event_id", p.EventID, "err", serr)
	}
	return err
}
