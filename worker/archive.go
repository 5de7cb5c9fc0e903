package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relayq/relayq/jobs"
)

// Archiver is where final jobs go when they leave Redis: PostgreSQL's
// archive.Archive, or a fault-injecting wrapper in tests.
type Archiver interface {
	// Put writes jobs in one transaction, keyed by id: a repeat changes
	// nothing. It returns only once the write is committed.
	Put(ctx context.Context, js []*jobs.Job) (int, error)
}

// Defaults of the archive move.
const (
	DefaultHotRetention = time.Hour
	DefaultArchiveEvery = 10 * time.Second
	// archiveBatch is how many jobs one PostgreSQL transaction moves.
	archiveBatch = 500
	// archiveBatches bounds one round: archiveBatches × archiveBatch jobs.
	archiveBatches = 40
)

// ErrNotMovable is the archiver's refusal of a job that a reorg or a later
// transition could still change. Movable never offers one; the check is
// the reorg argument of docs/archive.md, asserted.
var ErrNotMovable = errors.New("job may still change")

// checkMovable asserts that j may leave Redis at now: final, final for
// longer than hot, and, if it reached a block, that block is at least its
// confirmations deep below head (head 0: unknown, so it is not).
func checkMovable(j *jobs.Job, head uint64, now time.Time, hot time.Duration) error {
	if !j.Status.Terminal() {
		return fmt.Errorf("job %s is %s, not final: %w", j.ID, j.Status, ErrNotMovable)
	}
	if n := len(j.History); n == 0 || now.Sub(j.History[n-1].At) < hot {
		return fmt.Errorf("job %s became final within the hot window (%s): %w", j.ID, hot, ErrNotMovable)
	}
	if j.BlockNumber != nil {
		confs := max(j.Confirmations, 1)
		if head+1 < *j.BlockNumber+confs {
			return fmt.Errorf("job %s's block %d is not %d deep below head %d: %w", j.ID, *j.BlockNumber, confs, head, ErrNotMovable)
		}
	}
	return nil
}

// runArchiver moves final jobs out of Redis every ArchiveEvery, in one
// process of the deployment at a time (a lease per chain's keys).
func (w *Worker) runArchiver(ctx context.Context) {
	every := w.cfg.ArchiveEvery
	key := fmt.Sprintf("%sarchiver:%d", w.cfg.Prefix, w.chainID.Uint64())
	w.everyWhileLeased(ctx, key, every, 2*every+30*time.Second, func(ctx context.Context) {
		if n, err := w.ArchiveJobs(ctx, w.now()); err != nil && ctx.Err() == nil {
			// PostgreSQL down: the jobs stay in Redis; the next round
			// tries again.
			w.log.Warn("archive", "err", err, "moved", n)
		} else if n > 0 {
			w.log.Info("moved final jobs to the archive", "jobs", n)
		}
	})
}

// ArchiveJobs moves this chain's final jobs past the hot window (at now)
// to the archive: each batch is written in one PostgreSQL transaction, and
// only once it is committed are its jobs deleted from Redis. A crash at any
// point leaves each job in Redis, in the archive, or in both; a job in
// both is written again (changing nothing) and deleted by a later round.
// It returns how many jobs it deleted from Redis.
func (w *Worker) ArchiveJobs(ctx context.Context, now time.Time) (int, error) {
	if w.cfg.Archive == nil {
		return 0, nil
	}
	hot := w.cfg.HotRetention
	var head uint64
	if h, err := w.cfg.Backend.HeaderByNumber(ctx, nil); err == nil {
		head = h.Number.Uint64()
	} else {
		w.log.Warn("archive: no chain head; jobs with a block wait", "err", err)
	}
	total := 0
	for range archiveBatches {
		js, err := w.store.Movable(ctx, now.Add(-hot), archiveBatch)
		if err != nil {
			return total, err
		}
		move := js[:0:0]
		for _, j := range js {
			if j.ChainID != w.chainID.Uint64() {
				continue // another chain's, on shared keys: its archiver's
			}
			if err := checkMovable(j, head, now, hot); err != nil {
				w.log.Error("archive: refused a job", "job_id", j.ID, "err", err)
				continue
			}
			move = append(move, j)
		}
		if len(move) > 0 {
			w.crashPoint("archive_before_put")
			if _, err := w.cfg.Archive.Put(ctx, move); err != nil {
				return total, err
			}
			w.crashPoint("archive_after_put")
			n, err := w.store.Forget(ctx, move)
			total += n
			if err != nil {
				return total, err
			}
			w.crashPoint("archive_after_forget")
		}
		if len(js) < archiveBatch || len(move) == 0 {
			return total, nil
		}
	}
	return total, nil
}
