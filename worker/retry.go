package worker

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
)

// PausedError means the signer cannot pay for the job now (insufficient
// funds). The task waits and retries without using up its retry budget.
type PausedError struct{ Err error }

func (e *PausedError) Error() string { return "signer paused: " + e.Err.Error() }
func (e *PausedError) Unwrap() error { return e.Err }

// IsFailure tells Asynq which errors count against a task's retries (with
// false, Asynq v0.26 retries the task without incrementing its retry
// counter: rdb.Retry's isFailure). Waiting is not failing: a paused signer,
// a job the signer cannot afford yet (FundsError), and a node fault
// (IsNodeFault) never spend a job's retry budget, nor does a node's
// "insufficient funds" however it arrives, so a long node outage
// leaves its jobs queued instead of failing them retries_exhausted.
func IsFailure(err error) bool {
	if err == nil {
		return false
	}
	var p *PausedError
	var f *FundsError
	if errors.As(err, &p) || errors.As(err, &f) {
		return false
	}
	return txmgr.Classify(err) != txmgr.ClassPaused && !IsNodeFault(err)
}

// IsNodeFault reports whether err says the node (or the way to it) is
// unavailable or overloaded rather than anything about the job: a timeout,
// a refused or dropped connection, HTTP 429 or 5xx, a full pool or a price
// below what the pool takes right now. An error txmgr does not recognise is
// not one: its retries stay bounded.
func IsNodeFault(err error) bool {
	c, reason := txmgr.Explain(err)
	return c == txmgr.ClassRetryable && reason != "unknown error"
}

// busyRetry is the delay of a job whose signers were all at their
// in-flight limit, after its handler already waited busyWait.
const busyRetry = time.Second

// maxRetryDelay caps the delay between two runs of a task.
const maxRetryDelay = 30 * time.Second

// RetryDelay is exponential from 500 ms, capped at 30 s, with ±25 % jitter
// so retries of a burst do not hit the node in lockstep. A paused signer is
// retried every 15 s. Errors that do not count as failures (IsFailure)
// leave n at 0, so their delay grows with how long the job has waited
// instead (see retryDelay).
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	return jitter(retryDelay(time.Now(), n, err, t))
}

// retryDelay is RetryDelay before jitter, at now.
func retryDelay(now time.Time, n int, err error, t *asynq.Task) time.Duration {
	var p *PausedError
	if errors.As(err, &p) {
		if errors.Is(err, ErrSignersBusy) {
			// Not a pause: every signer is at its in-flight limit, and
			// a slot frees with the next confirmation. Waiting 15 s here
			// stalled a burst past the limit (measured: 10,000 jobs on a
			// fast chain at 0.07 of the node's rate, against 0.21
			// without the limit).
			return busyRetry
		}
		return 15 * time.Second
	}
	if !IsFailure(err) {
		// A tenth of the job's age, within 500 ms..30 s: a blip is retried
		// at once, an outage of minutes is polled every 30 s.
		d := 500 * time.Millisecond
		if pl, perr := tasks.ParseSendPayload(t.Payload()); perr == nil {
			if created, ok := jobs.CreatedAt(pl.IDs()[0]); ok {
				d = max(d, now.Sub(created)/10)
			}
		}
		return min(d, maxRetryDelay)
	}
	d := 500 * time.Millisecond
	for i := 0; i < n && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

func jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rand.Int64N(int64(d)/2+1))
}
