package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The first signal starts a graceful shutdown; the second exits at once
// with 128 + its number, as a shell reports a death by that signal.
func TestSecondSignalForcesExit(t *testing.T) {
	t.Parallel()
	sigs := make(chan os.Signal, 2)
	ctx, stop := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	var stderr syncBuffer
	go onSignals(sigs, stop, &stderr, func(code int) { exited <- code })

	sigs <- syscall.SIGTERM
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not end the context")
	}
	select {
	case code := <-exited:
		t.Fatalf("exited with %d after one signal", code)
	case <-time.After(50 * time.Millisecond):
	}
	sigs <- syscall.SIGINT
	select {
	case code := <-exited:
		require.Equal(t, 130, code)
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not force an exit")
	}
	require.Contains(t, stderr.String(), "second signal (interrupt)")
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, exitCode(nil))
	require.Equal(t, 1, exitCode(errors.New("boom")))
	err := withCode(exitFailed, errors.New("job x failed"))
	require.Equal(t, 3, exitCode(err))
	require.Equal(t, 3, exitCode(errors.Join(errors.New("wrapped"), err)))
	require.Equal(t, "job x failed", err.Error())
}

// waitWithin is what bounds a shutdown: a part that never returns is
// abandoned when the time is up.
func TestWaitWithinAbandonsAStuckPart(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	wg.Add(1)
	err := waitWithin(&wg, 50*time.Millisecond)
	require.ErrorContains(t, err, "shutdown did not finish within 50ms")
	wg.Done()
	require.NoError(t, waitWithin(&wg, 10*time.Second))
}

func TestShutdownTimeoutIsChecked(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0s", "500ms", "11m", "soon"} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"relayq", "worker"}, envOf(map[string]string{
			"REDIS_URL": "redis://127.0.0.1:1/0", "RELAYQ_RPC_URL": "http://127.0.0.1:1", "RELAYQ_PRIVATE_KEYS": "00", "RELAYQ_SHUTDOWN_TIMEOUT": v,
		}), &out, &errOut)
		require.ErrorContains(t, err, "RELAYQ_SHUTDOWN_TIMEOUT", v)
	}
}
