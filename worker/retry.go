package worker

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
)

// PausedError means the signer cannot pay for the job now (insufficient
// funds). The task waits and retries without using up its retry budget.
type PausedError struct{ Err error }

func (e *PausedError) Error() string { return "signer paused: " + e.Err.Error() }
func (e *PausedError) Unwrap() error { return e.Err }

// IsFailure tells Asynq which errors count against a task's retries: a
// paused signer is waiting, not failing.
func IsFailure(err error) bool {
	var p *PausedError
	return err != nil && !errors.As(err, &p)
}

// RetryDelay is exponential from 500 ms, capped at 30 s, with ±25 % jitter
// so retries of a burst do not hit the node in lockstep. A paused signer is
// retried every 15 s.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var p *PausedError
	if errors.As(err, &p) {
		return jitter(15 * time.Second)
	}
	d := 500 * time.Millisecond
	for i := 0; i < n && d < 30*time.Second; i++ {
		d *= 2
	}
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	return jitter(d)
}

func jitter(d time.Duration) time.Duration {
	return d*3/4 + time.Duration(rand.Int64N(int64(d)/2+1))
}
