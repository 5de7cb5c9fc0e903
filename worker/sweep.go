package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
)

// sweepBatch bounds how many queued jobs one sweep looks at.
const sweepBatch = 1000

func (w *Worker) runSweeper(ctx context.Context) {
	every := w.cfg.SweepAfter / 2
	w.everyWhileLeased(ctx, w.cfg.Prefix+"sweeper", every, 2*every+time.Second, w.sweepRound)
}

// sweepRound is one round of the sweeper.
func (w *Worker) sweepRound(ctx context.Context) {
	if n, err := w.Expire(ctx, time.Now()); err != nil && ctx.Err() == nil {
		w.log.Warn("expire", "err", err)
	} else if n > 0 {
		w.log.Warn("failed queued jobs past their deadline", "jobs", n)
	}
	if n, err := w.Sweep(ctx, time.Now()); err != nil && ctx.Err() == nil {
		w.log.Warn("sweep", "err", err)
	} else if n > 0 {
		w.log.Warn("sweep re-enqueued jobs whose task was lost", "jobs", n)
	}
	if n, err := w.RecoverOrphans(ctx); err != nil && ctx.Err() == nil {
		w.log.Warn("recover orphaned tasks", "err", err)
	} else if n > 0 {
		w.log.Warn("ran jobs whose task was left active by a worker that died", "jobs", n)
	}
	if n, err := w.Prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
		w.log.Warn("prune", "err", err)
	} else if n > 0 {
		w.log.Info("deleted jobs past RELAYQ_JOB_RETENTION", "jobs", n)
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
	var carried map[string]bool
	for _, id := range ids {
		created, ok := jobs.CreatedAt(id)
		if ok && now.Sub(created) < w.cfg.SweepAfter {
			break // ids sort by creation time: the rest are younger
		}
		if carried == nil {
			carried = w.carried()
		}
		if carried[id] {
			continue // its batch task is still waiting, running or retrying
		}
		t, opts, err := tasks.NewSendTask(w.cfg.Queues.Send, id)
		if err != nil {
			return n, err
		}
		_, err = w.enqueuer.EnqueueContext(ctx, t, opts...)
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			// Usually the task is still pending or retrying. But an archived
			// task (retries used up, or archived from the monitor) keeps the
			// id for months: delete it so the job can run again.
			info, ierr := w.inspector.GetTaskInfo(w.cfg.Queues.Send, id)
			if ierr != nil || (info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted) {
				continue
			}
			if err := w.inspector.DeleteTask(w.cfg.Queues.Send, id); err != nil {
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

// carriedPages bounds the pages of batch tasks one sweep reads.
const carriedPages = 20

// carried returns the jobs that the send queue's batch tasks carry (see
// tasks.NewSendBatchTask): waiting, scheduled, retrying or running. Their
// task ids are not the jobs' ids, so Asynq cannot refuse the sweeper's
// duplicate; a job found here is left to its batch. A listing that fails
// leaves the set short, and a job it missed gets a task of its own, which
// is harmless (Send is idempotent).
func (w *Worker) carried() map[string]bool {
	out := map[string]bool{}
	q := w.cfg.Queues.Send
	lists := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){
		w.inspector.ListPendingTasks, w.inspector.ListScheduledTasks, w.inspector.ListRetryTasks, w.inspector.ListActiveTasks,
	}
	for _, list := range lists {
		for page := 1; page <= carriedPages; page++ {
			ts, err := list(q, asynq.PageSize(sweepBatch), asynq.Page(page))
			if err != nil {
				break
			}
			for _, t := range ts {
				if p, err := tasks.ParseSendPayload(t.Payload); err == nil {
					for _, id := range p.JobIDs {
						out[id] = true
					}
				}
			}
			if len(ts) < sweepBatch {
				break
			}
		}
	}
	return out
}

// pruneBatches bounds one sweep's deletions: pruneBatches × sweepBatch jobs.
const pruneBatches = 50

// Prune deletes jobs in a final status created more than JobRetention
// before now (none when JobRetention is 0), in batches, and returns how
// many. Redis holds every job until then: a few kB each.
//
// With an archive, final jobs leave Redis only through it (ArchiveJobs):
// Prune deletes nothing, so no job is deleted that was not archived.
func (w *Worker) Prune(ctx context.Context, now time.Time) (int, error) {
	if w.cfg.JobRetention <= 0 || w.cfg.Archive != nil {
		return 0, nil
	}
	total := 0
	for range pruneBatches {
		n, err := w.store.Prune(ctx, now.Add(-w.cfg.JobRetention), sweepBatch)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
	return total, nil
}

// RecoverOrphans runs the jobs of send tasks that Asynq shows active with
// an expired lease: their worker died holding them (kill -9, a lost
// machine). Asynq itself hands such a task back only when its recoverer
// next runs, once a minute, which left a job waiting 60–120 s; the sweeper
// looks every RELAYQ_SWEEP_AFTER/2. Send is idempotent, so the task Asynq
// recovers later finds its job already moved on. It returns how many jobs
// it ran.
func (w *Worker) RecoverOrphans(ctx context.Context) (int, error) {
	active, err := w.inspector.ListActiveTasks(w.cfg.Queues.Send, asynq.PageSize(sweepBatch))
	if err != nil {
		if errors.Is(err, asynq.ErrQueueNotFound) {
			return 0, nil
		}
		return 0, err
	}
	var ids []string
	for _, t := range active {
		if !t.IsOrphaned || t.Type != tasks.TypeSend {
			continue
		}
		if p, err := tasks.ParseSendPayload(t.Payload); err == nil {
			ids = append(ids, p.IDs()...)
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	js, err := w.store.GetMany(ctx, ids)
	if err != nil {
		return 0, err
	}
	// Within the sweeper's lease: another process may take it afterwards
	// and find the rest (running one twice is safe, Send is idempotent).
	ctx, cancel := context.WithTimeout(ctx, w.cfg.SweepAfter/2)
	defer cancel()
	n := 0
	for _, j := range js {
		if ctx.Err() != nil {
			break
		}
		// Only a job that never got its transaction waits on the task; the
		// tracker looks after one that did.
		if j == nil || j.Status != jobs.Queued {
			continue
		}
		if err := w.Send(ctx, j.ID); err != nil {
			w.log.Warn("run orphaned job", "job_id", j.ID, "err", err)
			continue
		}
		n++
	}
	return n, nil
}

// Expire fails the queued jobs (among the sweepBatch oldest) whose deadline
// passed by now, whether or not their task is running: a job waiting out a
// node outage in its task's retries expires on time. It returns how many it
// failed.
func (w *Worker) Expire(ctx context.Context, now time.Time) (int, error) {
	ids, err := w.store.Oldest(ctx, jobs.Queued, sweepBatch)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	deadlines, err := w.store.Deadlines(ctx, ids)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		d, ok := deadlines[id]
		if !ok || now.Before(d) {
			continue
		}
		failed, err := w.expireJob(ctx, id, d)
		if err != nil {
			return n, err
		}
		if failed {
			n++
		}
	}
	return n, nil
}

// expire fails j, a queued job past its deadline.
func (w *Worker) expire(ctx context.Context, j *jobs.Job) error {
	_, err := w.expireJob(ctx, j.ID, *j.Deadline)
	return err
}

// expireJob fails job id expired if it is still queued: not broadcast, so
// it never executed. One that moved on meanwhile (signed by a concurrent
// run) is left to the chain. A job that already holds a bound nonce it
// never signed (a run crashed after reserving) leaves that nonce to the
// tracker, which fills it with a no-op as for any failed job.
func (w *Worker) expireJob(ctx context.Context, id string, deadline time.Time) (bool, error) {
	err := w.failQueued(ctx, id, 0, "deadline passed", jobs.Error{
		Code: jobs.ErrCodeExpired, Message: "the deadline " + deadline.UTC().Format(time.RFC3339) + " passed before the job was broadcast"})
	var bad *jobs.BadTransitionError
	switch {
	case errors.As(err, &bad), errors.Is(err, jobs.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("expire %s: %w", id, err)
	}
	w.log.Info("job expired before it was broadcast", "job_id", id, "deadline", deadline)
	return true, nil
}
