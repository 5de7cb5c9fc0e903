package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/jobs"
)

// DefaultMaxInFlight is the per-signer in-flight limit when
// Config.MaxInFlight is 0.
const DefaultMaxInFlight = 4096

// poolRefresh is how old the pool's view of the allocators may get: one
// Redis read per signer per interval, not per job.
const poolRefresh = 100 * time.Millisecond

// busyWait is how long a job whose signers are all at the in-flight limit
// waits in its handler for a free slot before it is retried later.
const busyWait = 2 * time.Second

// ErrSignersBusy means every signer that could take the job has
// Config.MaxInFlight transactions in flight; the job waits (as a
// PausedError, so waiting does not use up its retries).
var ErrSignersBusy = errors.New("every signer is at its in-flight limit")

// pool chooses the signer of a job that names none: the one with the
// fewest transactions in flight that is not paused and under the limit
// (a paused one only when all are).
//
// Its view of each signer is the allocator's in-flight count and paused
// mark, read at most every poolRefresh, plus what this process picked since:
// a job counts from its pick until the read after its reservation, so the
// view can only overcount and the limit holds within this process. Worker
// processes holding the same key each apply the limit on their own.
type pool struct {
	mu         sync.Mutex
	state      map[common.Address]*poolLoad
	refreshed  time.Time     // when the last refresh read began
	refreshing chan struct{} // closed when the refresh under way ends; nil if none
	next       atomic.Uint64 // rotates ties among equally loaded signers
}

type poolLoad struct {
	counted int64 // in flight per the allocator at the last refresh
	paused  bool  // paused per the allocator at the last refresh
	transit int64 // picked and not yet released
	done    int64 // released since the current refresh read began
	prev    int64 // released before it, kept until its counts land
}

func (l *poolLoad) load() int64 { return l.counted + l.transit + l.done + l.prev }

// maxInFlight is the per-signer in-flight limit.
func (w *Worker) maxInFlight() int64 {
	if w.cfg.MaxInFlight > 0 {
		return int64(w.cfg.MaxInFlight)
	}
	return DefaultMaxInFlight
}

// pick returns the account that submits j, and a release to call once its
// send is over (its nonce is reserved by then, or will not be). A job with
// from is pinned to that signer; one without gets the least-loaded signer.
// A job that would go over a signer's in-flight limit gets a PausedError.
func (w *Worker) pick(ctx context.Context, j *jobs.Job) (*Account, func(), error) {
	// A signer at the limit frees a slot when one of its transactions is
	// confirmed: a task's handler waits a little for that rather than the
	// long retry delay of a PausedError. The sweeper and the tracker go on
	// to their next job.
	deadline := time.Now().Add(busyWait)
	if _, inTask := asynq.GetTaskID(ctx); !inTask {
		deadline = time.Time{}
	}
	for {
		a, release, err := w.tryPick(ctx, j)
		if !errors.Is(err, ErrSignersBusy) || time.Now().After(deadline) {
			return a, release, err
		}
		select {
		case <-time.After(poolRefresh):
		case <-ctx.Done():
			return nil, nil, err
		}
	}
}

func (w *Worker) tryPick(ctx context.Context, j *jobs.Job) (*Account, func(), error) {
	if err := w.pool.fresh(ctx, w); err != nil {
		return nil, nil, fmt.Errorf("job %s: choose signer: %w", j.ID, err)
	}
	limit := w.maxInFlight()
	p := &w.pool
	if j.From != "" {
		a, err := w.account(j)
		if err != nil {
			return nil, nil, err
		}
		p.mu.Lock()
		l := p.state[a.Signer.Address()]
		over := l.load() >= limit
		if !over {
			l.transit++
		}
		p.mu.Unlock()
		if over {
			// A job that already holds a nonce of this signer is in flight
			// already: it must go on, or its nonce would hold up the rest.
			if _, bound, err := a.Nonces.Bound(ctx, j.ID); err != nil {
				return nil, nil, fmt.Errorf("job %s: %w", j.ID, err)
			} else if !bound {
				return nil, nil, &PausedError{Err: fmt.Errorf("%s: %w", a.Signer.Address(), ErrSignersBusy)}
			}
			p.mu.Lock()
			l.transit++
			p.mu.Unlock()
		}
		return a, p.releaser(a), nil
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	// The least-loaded signer under the limit, among those that can pay;
	// if none can, among all: its attempt renews the paused mark, or finds
	// the signer funded again and clears it.
	var best, bestPaused *Account
	var bestLoad, bestPausedLoad int64
	paused := 0
	start := int(p.next.Add(1) % uint64(len(w.order)))
	for i := range w.order {
		addr := w.order[(start+i)%len(w.order)]
		l := p.state[addr]
		n := l.load()
		// This process's own mark counts at once: the view read from
		// Redis may be older than it (or a refresh may be in flight).
		if l.paused || w.accounts[addr].paused.Load() {
			paused++
			if n < limit && (bestPaused == nil || n < bestPausedLoad) {
				bestPaused, bestPausedLoad = w.accounts[addr], n
			}
			continue
		}
		if n < limit && (best == nil || n < bestLoad) {
			best, bestLoad = w.accounts[addr], n
		}
	}
	if best == nil && paused == len(w.order) {
		best = bestPaused
	}
	if best == nil {
		return nil, nil, &PausedError{Err: ErrSignersBusy}
	}
	p.state[best.Signer.Address()].transit++
	return best, p.releaser(best), nil
}

func (p *pool) releaser(a *Account) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			l := p.state[a.Signer.Address()]
			l.transit--
			l.done++
			p.mu.Unlock()
		})
	}
}

// fresh refreshes the pool's view when it is older than poolRefresh. One
// caller reads; the others go on with the view they have, except before the
// first read, when they wait for it.
func (p *pool) fresh(ctx context.Context, w *Worker) error {
	p.mu.Lock()
	if p.state == nil {
		p.state = make(map[common.Address]*poolLoad, len(w.order))
		for _, addr := range w.order {
			p.state[addr] = &poolLoad{}
		}
	}
	if p.refreshing != nil || time.Since(p.refreshed) < poolRefresh {
		wait := p.refreshing
		first := p.refreshed.IsZero()
		p.mu.Unlock()
		if wait != nil && first {
			select {
			case <-wait:
			case <-ctx.Done():
				return ctx.Err()
			}
			return p.fresh(ctx, w) // the first read may have failed
		}
		return nil
	}
	ch := make(chan struct{})
	p.refreshing = ch
	began := time.Now()
	for _, l := range p.state {
		// Releases from here on may or may not be in the counts read
		// next: count them separately, and keep the older ones until the
		// counts land.
		l.prev += l.done
		l.done = 0
	}
	p.mu.Unlock()

	counts, paused, err := w.readPool(ctx)

	p.mu.Lock()
	defer p.mu.Unlock()
	defer close(ch)
	p.refreshing = nil
	if err != nil {
		return err
	}
	p.refreshed = began
	for addr, l := range p.state {
		l.counted, l.paused, l.prev = counts[addr], paused[addr], 0
	}
	return nil
}

// readPool reads every signer's in-flight count and paused mark.
func (w *Worker) readPool(ctx context.Context) (map[common.Address]int64, map[common.Address]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	counts := make(map[common.Address]int64, len(w.order))
	paused := make(map[common.Address]bool, len(w.order))
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make([]error, len(w.order))
	for i, addr := range w.order {
		a := w.accounts[addr]
		wg.Go(func() {
			n, err := a.Nonces.Count(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("in-flight count of %s: %w", addr, err)
				return
			}
			why, err := a.Nonces.Paused(ctx)
			if err != nil {
				errs[i] = fmt.Errorf("paused mark of %s: %w", addr, err)
				return
			}
			mu.Lock()
			counts[addr], paused[addr] = n, why != ""
			mu.Unlock()
		})
	}
	wg.Wait()
	return counts, paused, errors.Join(errs...)
}
