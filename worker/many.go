package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/tasks"
)

// sendMany runs the jobs of a batch task (tasks.NewSendBatchTask)
// concurrently, so they meet in their signers' send batches (batch.go).
// A job that must be tried again gets a send task of its own, due when its
// retry would have been (RetryDelay): its retries and its errors are its
// own from then on, and its neighbours are done. Only when such a task
// cannot be enqueued does the batch task fail, to be run again whole;
// Send is idempotent, so the jobs that went through are left as they are.
func (w *Worker) sendMany(ctx context.Context, ids []string) error {
	// One round trip loads them all; a job it did not find goes through
	// Send's own reading (a stale read is retried there).
	js, err := w.store.GetMany(ctx, ids)
	if err != nil {
		return fmt.Errorf("batch of %d jobs: %w", len(ids), err)
	}
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			errs[i] = recovered(func() error {
				if js[i] == nil {
					return w.Send(ctx, id)
				}
				return w.sendJob(ctx, js[i])
			})
		})
	}
	wg.Wait()
	var failed []error
	for i, err := range errs {
		if err == nil || errors.Is(err, asynq.SkipRetry) {
			// Done, or given up for good (Send says why in the job or
			// the log; the sweeper still finds a job left queued).
			continue
		}
		w.log.Info("job of a batch task will be tried again on its own", "job_id", ids[i], "err", err)
		if eerr := w.retryAlone(ctx, ids[i], err); eerr != nil {
			failed = append(failed, eerr)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("batch of %d jobs: %w", len(ids), errors.Join(failed...))
	}
	return nil
}

// recovered runs f and turns a panic into its error. A handler's panic is
// Asynq's to recover, but only in the handler's own goroutine: one in a
// job of a batch would otherwise end the process and every job in it
// (DESIGN.md, invariant 7). The job goes on in a task of its own, where
// Asynq recovers it as for any task.
func recovered(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return f()
}

// retryAlone enqueues job id's own send task, after the delay a single
// job's task gets after its first failure with err.
func (w *Worker) retryAlone(ctx context.Context, id string, err error) error {
	t, opts, terr := tasks.NewSendTask(w.cfg.Queues.Send, id)
	if terr != nil {
		return terr
	}
	delay := RetryDelay(0, err, t)
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, eerr := w.enqueuer.EnqueueContext(ectx, t, append(opts, asynq.ProcessIn(delay))...)
	if eerr != nil && !errors.Is(eerr, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("job %s: enqueue its own send task: %w", id, eerr)
	}
	return nil
}
