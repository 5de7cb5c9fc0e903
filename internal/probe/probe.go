// Package probe shares the answer of a health probe (is the node up, what
// are the signers' balances) among the requests that ask for it, so that
// routes anyone may hit (/readyz, /metrics) cost the node at most one probe
// per interval whatever the request rate.
package probe

import (
	"context"
	"sync"
	"time"
)

// DefaultEvery is how often a Cache probes at most.
const DefaultEvery = time.Second

// DefaultTimeout bounds one probe.
const DefaultTimeout = 2 * time.Second

// Cache holds the last answer of one probe for Every. Concurrent callers
// that find no fresh answer share one probe in flight. Errors are kept like
// answers: a node that is down must not be asked once per request either.
type Cache[V any] struct {
	every   time.Duration
	timeout time.Duration
	now     func() time.Time

	mu     sync.Mutex
	at     time.Time // when the kept answer's probe started; zero: none
	val    V
	err    error
	flight chan struct{} // closed when the probe in flight ends; nil: none
}

// New returns a Cache that probes at most once per every (DefaultEvery
// when 0), gives each probe timeout (DefaultTimeout when 0; it runs on for the callers that wait,
// even if the one that started it gives up), and reads the time from now
// (time.Now when nil).
func New[V any](every, timeout time.Duration, now func() time.Time) *Cache[V] {
	if every <= 0 {
		every = DefaultEvery
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if now == nil {
		now = time.Now
	}
	return &Cache[V]{every: every, timeout: timeout, now: now}
}

// Get returns the kept answer if its probe started less than Every ago,
// else waits for the probe in flight or starts one with probe. It returns
// early with ctx's error if ctx ends first.
func (c *Cache[V]) Get(ctx context.Context, probe func(context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	now := c.now() // read once per call, whatever follows
	if !c.at.IsZero() && now.Sub(c.at) < c.every {
		v, err := c.val, c.err
		c.mu.Unlock()
		return v, err
	}
	done := c.flight
	if done == nil {
		done = make(chan struct{})
		c.flight = done
		// Detached from ctx: the probe answers every caller waiting on it.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		go func() {
			defer cancel()
			v, err := probe(pctx)
			c.mu.Lock()
			c.at, c.val, c.err, c.flight = now, v, err, nil
			c.mu.Unlock()
			close(done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
