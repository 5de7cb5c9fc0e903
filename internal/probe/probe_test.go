package probe_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/probe"
)

// clock is a clock the test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Many callers over several ticks of the clock: one probe per tick, and
// every caller gets the answer of its tick's probe, errors included.
func TestCacheProbesOncePerInterval(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := probe.New[int](time.Second, time.Second, clk.Now)
	var probes atomic.Int64
	down := errors.New("node down")
	probeFn := func(context.Context) (int, error) {
		n := probes.Add(1)
		if n%2 == 0 {
			return 0, down
		}
		return int(n), nil
	}
	for _, tc := range []struct {
		advance    time.Duration
		wantProbes int64
		wantErr    error
	}{
		{0, 1, nil},
		{999 * time.Millisecond, 1, nil}, // still fresh
		{time.Millisecond, 2, down},      // a second after the first: probe again; the error is kept too
		{500 * time.Millisecond, 2, down},
		{500 * time.Millisecond, 3, nil},
	} {
		clk.Advance(tc.advance)
		for range 200 {
			v, err := c.Get(context.Background(), probeFn)
			require.ErrorIs(t, err, tc.wantErr)
			if tc.wantErr == nil {
				require.Equal(t, int(tc.wantProbes), v)
			}
		}
		require.Equal(t, tc.wantProbes, probes.Load())
	}
}

// Concurrent callers while a probe is in flight share it; a caller that
// gives up does not cancel it for the others.
func TestCacheSharesTheProbeInFlight(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	c := probe.New[string](time.Second, 10*time.Second, clk.Now)
	var probes atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	probeFn := func(ctx context.Context) (string, error) {
		if probes.Add(1) == 1 {
			close(entered)
		}
		select {
		case <-release:
			return "up", ctx.Err()
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	impatient, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := c.Get(impatient, probeFn)
		gaveUp <- err
	}()
	<-entered
	var wg sync.WaitGroup
	answers := make([]string, 50)
	for i := range answers {
		wg.Go(func() {
			v, err := c.Get(context.Background(), probeFn)
			require.NoError(t, err)
			answers[i] = v
		})
	}
	cancel()
	require.ErrorIs(t, <-gaveUp, context.Canceled)
	close(release)
	wg.Wait()
	for _, v := range answers {
		require.Equal(t, "up", v)
	}
	require.Equal(t, int64(1), probes.Load())
}
