package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runAPI measures `relayq api` on its own (its Redis writes and the Asynq
// enqueue included, no worker draining the queue): as many jobs as the
// clients can post, then a steady APIRate jobs/s (1,000) for APISeconds (5),
// whose latencies are the ones to read.
func (o *Options) runAPI(ctx context.Context, dir string) ([]*Result, error) {
	st, err := o.startStack(ctx, dir, "api-alone", 0, false, nil)
	if err != nil {
		return nil, err
	}
	defer st.close()
	defer o.profile(ctx, st).Wait()

	sat := &Result{Name: "API alone, flat out", Jobs: o.APIJobs, NoRatio: true}
	ids := make([]string, sat.Jobs)
	sat.Accept = make([]time.Duration, sat.Jobs)
	t0 := time.Now()
	if err := o.post(ctx, st, ids, sat.Accept); err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	sat.Elapsed = time.Since(t0)
	u := st.api.usage()
	sat.CPU, sat.PeakRSS = u.CPU, u.PeakRSS

	rate, secs := o.APIRate, o.APISeconds
	paced := &Result{Name: fmt.Sprintf("API alone, %d/s", rate), Jobs: rate * secs, NoRatio: true}
	paced.Accept = make([]time.Duration, paced.Jobs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 512) // bounded: a stalled API fails the run instead of piling up goroutines
	start := time.Now()
	for i := range paced.Jobs {
		// Open loop: request i leaves at its time whatever the others do,
		// so a slow answer shows as latency, not as a lower rate.
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			t := time.Now()
			_, err := postJob(ctx, st.hc, st.base, st.apiKey, st.body(i))
			paced.Accept[i] = time.Since(t)
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	paced.Elapsed = time.Since(start)
	if firstErr != nil {
		return nil, fmt.Errorf("api at %d/s: %w", rate, firstErr)
	}
	u2 := st.api.usage()
	paced.CPU, paced.PeakRSS = u2.CPU-u.CPU, u2.PeakRSS
	return []*Result{sat, paced}, nil
}
