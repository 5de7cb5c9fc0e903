package worker

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/rpc"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
)

// Waiting is not failing: node faults, a paused signer and a job its signer
// cannot afford yet keep the job's retry budget; what the job or relayq got
// wrong, or an error nobody recognises, spends it.
func TestIsFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"timeout", fmt.Errorf("job x: fees: latest header: %w", context.DeadlineExceeded), false},
		{"connection refused", fmt.Errorf("broadcast x: %w", syscall.ECONNREFUSED), false},
		{"http 502 from a proxy", fmt.Errorf("estimate: %w", rpc.HTTPError{StatusCode: 502, Status: "502 Bad Gateway"}), false},
		{"http 429", fmt.Errorf("estimate: %w", rpc.HTTPError{StatusCode: 429}), false},
		{"txpool full", errors.New("broadcast x (retryable): txpool is full"), false},
		{"paused signer", &PausedError{Err: errors.New("insufficient funds for gas * price + value")}, false},
		{"job too dear", &FundsError{JobID: "x", Why: "value exceeds balance"}, false},
		{"bare insufficient funds", errors.New("insufficient funds for gas * price + value"), false},
		{"unknown node answer", errors.New("something odd happened"), true},
		{"job record not found", fmt.Errorf("send x: %w", jobs.ErrNotFound), true},
		{"no key for the signer", errors.New("job x: this worker holds no key for 0xabc"), true},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, IsFailure(tc.err))
		})
	}
}

// A counted failure backs off by its retry count; a wait (which leaves the
// count at 0) backs off by the job's age instead, within 500 ms..30 s.
func TestRetryDelay(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	task := func(age time.Duration) *asynq.Task {
		tk, _, err := tasks.NewSendTask("", jobs.NewIDAt(now.Add(-age)))
		require.NoError(t, err)
		return tk
	}
	down := fmt.Errorf("estimate: %w", syscall.ECONNREFUSED)
	odd := errors.New("something odd happened")
	for _, tc := range []struct {
		name string
		n    int
		err  error
		age  time.Duration
		want time.Duration
	}{
		{"first failure", 0, odd, time.Hour, 500 * time.Millisecond},
		{"fourth failure", 3, odd, time.Hour, 4 * time.Second},
		{"many failures are capped", 50, odd, time.Hour, 30 * time.Second},
		{"node down for a moment", 0, down, 2 * time.Second, 500 * time.Millisecond},
		{"node down for a minute", 0, down, time.Minute, 6 * time.Second},
		{"node down for an hour", 0, down, time.Hour, 30 * time.Second},
		{"job too dear for ten minutes", 0, &FundsError{JobID: "x"}, 10 * time.Minute, 30 * time.Second},
		{"paused signer", 0, &PausedError{Err: odd}, time.Hour, 15 * time.Second},
		{"signers at their in-flight limit", 0, &PausedError{Err: ErrSignersBusy}, time.Hour, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, retryDelay(now, tc.n, tc.err, task(tc.age)))
		})
	}
}
