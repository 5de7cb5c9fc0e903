package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
)

// sweepBatch bounds how many queued jobs one sweep looks at.
const sweepBatch = 1000

func (w *Worker) runSweeper(ctx context.Context) {
	every := w.cfg.SweepAfter / 2
	lease := NewLease(w.cfg.Redis, w.cfg.Prefix+"sweeper", 2*every+time.Second)
	defer lease.Release(context.WithoutCancel(ctx))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if held, err := lease.Hold(ctx); err != nil || !held {
			continue
		}
		if n, err := w.Sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
			w.log.Warn("sweep", "err", err)
		} else if n > 0 {
			w.log.Warn("sweep re-enqueued jobs whose task was lost", "jobs", n)
		}
	}
}

// Sweep finds queued jobs older than SweepAfter (at now) whose send task is
// gone (a crash between the job write and the enqueue) and enqueues them
// again. A job whose task still exists is left alone: Asynq refuses the
// duplicate TaskID. It returns how many tasks it enqueued.
func (w *Worker) Sweep(ctx context.Context, now time.Time) (int, error) {
	ids, err := w.store.Oldest(ctx, jobs.Queued, sweepBatch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		created, ok := jobs.CreatedAt(id)
		if ok && now.Sub(created) < w.cfg.SweepAfter {
			break // ids sort by creation time: the rest are younger
		}
		t, opts, err := tasks.NewSendTask(id)
		if err != nil {
			return n, err
		}
		_, err = w.enqueuer.EnqueueContext(ctx, t, opts...)
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			// Usually the task is still pending or retrying. But an archived
			// task (retries used up, or archived from the monitor) keeps the
			// id for months: delete it so the job can run again.
			info, ierr := w.inspector.GetTaskInfo(tasks.QueueSend, id)
			if ierr != nil || (info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted) {
				continue
			}
			if err := w.inspector.DeleteTask(tasks.QueueSend, id); err != nil {
				return n, err
			}
			_, err = w.enqueuer.EnqueueContext(ctx, t, opts...)
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
