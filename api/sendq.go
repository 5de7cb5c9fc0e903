package api

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/tasks"
)

// The API hands the jobs it accepts to the workers in batches: the ids of
// the jobs accepted within sendLinger of each other (at most sendBatchMax)
// go out as one send task (tasks.NewSendBatchTask). An Asynq task costs
// about 20 Redis commands between its enqueue, dequeue and acknowledgement;
// a batch pays them once. Each job is still written, and answered, on its
// own before its id joins a batch: the answer never waits for the enqueue,
// and a job whose batch is lost (the API dies within sendLinger, or Redis
// refuses the enqueue) is queued and durable, and the sweeper enqueues it
// after RELAYQ_SWEEP_AFTER, as it did for a lost single task.

// sendLinger is how long the first job of a batch waits for others. It is
// short next to any block time.
const sendLinger = 2 * time.Millisecond

// sendBatchMax bounds a batch's jobs.
const sendBatchMax = 64

// enqueueTimeout bounds one batch's enqueue.
const enqueueTimeout = 5 * time.Second

type sendQueue struct {
	enq   *asynq.Client
	queue string
	log   *slog.Logger

	mu      sync.Mutex
	pending []string
	armed   bool // a flush is due after sendLinger
	wg      sync.WaitGroup
}

func newSendQueue(enq *asynq.Client, queue string, log *slog.Logger) *sendQueue {
	return &sendQueue{enq: enq, queue: queue, log: log}
}

// add puts job id in the next batch.
func (q *sendQueue) add(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pending = append(q.pending, id)
	if len(q.pending) >= sendBatchMax {
		q.flushLocked()
		return
	}
	if !q.armed {
		q.armed = true
		time.AfterFunc(sendLinger, func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			q.armed = false
			q.flushLocked()
		})
	}
}

// flushLocked enqueues the pending ids as one task, in the background.
func (q *sendQueue) flushLocked() {
	if len(q.pending) == 0 {
		return
	}
	ids := q.pending
	q.pending = nil
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		q.send(ids)
	}()
}

func (q *sendQueue) send(ids []string) {
	t, opts, err := tasks.NewSendBatchTask(q.queue, ids)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), enqueueTimeout)
		_, err = q.enq.EnqueueContext(ctx, t, opts...)
		cancel()
	}
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		q.log.Warn("enqueue failed; the sweeper will retry", "jobs", len(ids), "first_job_id", ids[0], "err", err)
	}
}

// close enqueues what is pending and waits for every enqueue under way.
func (q *sendQueue) close() {
	q.mu.Lock()
	q.flushLocked()
	q.mu.Unlock()
	q.wg.Wait()
}
