package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayq/relayq/archive"
)

// rssPoint is the memory of relayq's processes at one moment of a soak.
type rssPoint struct {
	At          time.Duration
	Done        int // jobs mined by then
	API, Worker int64
	Redis       int64 // Redis's used_memory
}

// redisUsed reads Redis's used_memory (0 when it cannot).
func redisUsed(ctx context.Context, rdb *redis.Client) int64 {
	info, err := rdb.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
	return n
}

// runSoak pushes SoakJobs jobs through one API and one worker at a steady
// rate the chain can absorb, sampling both processes' resident memory every
// second: what matters is that it levels off instead of growing with the
// number of jobs served.
func (o *Options) runSoak(ctx context.Context, dir string) (*Result, error) {
	st, err := o.startStack(ctx, dir, "soak", 1, true, nil)
	if err != nil {
		return nil, err
	}
	defer st.close()
	r := &Result{Name: fmt.Sprintf("soak, %d/s", o.SoakRate), Jobs: o.SoakJobs, NoRatio: true}
	var archived func(context.Context) (int64, error)
	if o.SoakArchiveURL != "" {
		r.Name += fmt.Sprintf(", archive after %s", o.SoakHotRetention)
		r.Archive = true
		a, err := archive.Open(o.SoakArchiveURL)
		if err != nil {
			return nil, err
		}
		defer a.Close()
		// Jobs of earlier runs in the same database are not this run's.
		base, err := a.Count(ctx)
		if err != nil {
			return nil, fmt.Errorf("soak: archive: %w", err)
		}
		archived = func(ctx context.Context) (int64, error) {
			n, err := a.Count(ctx)
			return n - base, err
		}
	}
	p := &progress{start: time.Now()}
	r.RSS = append(r.RSS, rssPoint{Redis: redisUsed(ctx, st.rds.rdb)})
	var mined atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				r.RSS = append(r.RSS, rssPoint{At: time.Since(p.start), Done: int(mined.Load()), API: st.api.usage().RSS, Worker: st.worker.usage().RSS, Redis: redisUsed(ctx, st.rds.rdb)})
			}
		}
	}()
	done := make(chan error, 1)
	go func() {
		done <- waitMinedFn(ctx, st.store, o.SoakJobs, p, o.Timeout, func(n int) { mined.Store(int64(n)) }, archived)
	}()
	var wg sync.WaitGroup
	var postErr atomic.Value
	sem := make(chan struct{}, 256)
	for i := range o.SoakJobs {
		if postErr.Load() != nil {
			break
		}
		if d := time.Until(p.start.Add(time.Duration(i) * time.Second / time.Duration(o.SoakRate))); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := postJob(ctx, st.hc, st.base, st.apiKey, st.body(i)); err != nil {
				postErr.CompareAndSwap(nil, err)
			}
		}()
		if i%10000 == 0 && i > 0 {
			fmt.Fprintf(o.Log, "bench: soak: %d posted, %d mined\n", i, mined.Load())
		}
	}
	wg.Wait()
	if err, _ := postErr.Load().(error); err != nil {
		close(stop)
		return nil, fmt.Errorf("soak: %w", err)
	}
	err = <-done
	close(stop)
	sampler.Wait()
	if archived != nil && err == nil {
		// One hot window (and a round) later, the last jobs are archived
		// too: what Redis keeps then is the in-flight set and its own.
		time.Sleep(o.SoakHotRetention + 12*time.Second)
	}
	r.RSS = append(r.RSS, rssPoint{At: time.Since(p.start), Done: int(mined.Load()), API: st.api.usage().RSS, Worker: st.worker.usage().RSS, Redis: redisUsed(ctx, st.rds.rdb)})
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	r.Elapsed = p.points[len(p.points)-1].At
	r.Progress = p.points
	for _, c := range []*child{st.api, st.worker} {
		u := c.usage()
		r.CPU += u.CPU
		r.PeakRSS += u.PeakRSS
	}
	return r, nil
}

// printSoak reports memory at a tenth, half and all of the jobs.
func printSoak(w io.Writer, r *Result) {
	if len(r.RSS) == 0 {
		return
	}
	at := func(frac float64) rssPoint {
		want := int(frac * float64(r.Jobs))
		for _, p := range r.RSS {
			if p.Done >= want {
				return p
			}
		}
		return r.RSS[len(r.RSS)-1]
	}
	fmt.Fprintf(w, "%s: resident memory (MB) api / worker:", r.Name)
	for _, f := range []float64{0.1, 0.5, 1} {
		p := at(f)
		fmt.Fprintf(w, " at %d jobs %s / %s;", p.Done, mb(p.API), mb(p.Worker))
	}
	fmt.Fprintln(w)
	// Redis's used_memory: before the first job, the highest, and after
	// the last (with the archive, bounded by the hot window's jobs).
	peak := int64(0)
	for _, p := range r.RSS {
		peak = max(peak, p.Redis)
	}
	fmt.Fprintf(w, "%s: Redis used_memory (MB) before %s, peak %s, after %d jobs %s", r.Name, mb(r.RSS[0].Redis), mb(peak), r.RSS[len(r.RSS)-1].Done, mb(r.RSS[len(r.RSS)-1].Redis))
	for _, f := range []float64{0.1, 0.5} {
		p := at(f)
		fmt.Fprintf(w, "; at %d jobs %s", p.Done, mb(p.Redis))
	}
	fmt.Fprintln(w)
}
