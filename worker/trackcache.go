package worker

import (
	"context"

	"github.com/relayq/relayq/jobs"
)

// jobCache holds the in-flight records a tracker read at earlier ticks,
// by job id. A tick reads each cached job's version (one HGET) and loads
// whole only the jobs that are new to it or changed since: with 0.25 s
// blocks and a thousand jobs in flight, reloading every record and its
// history each block was 4,000 loads of three commands a second.
type jobCache map[string]*jobs.Job

// load returns the records of ids (nil for a job not found), from the
// cache where the job's version is unchanged and from Redis otherwise,
// and forgets the jobs that are no longer in flight.
func (t *Tracker) load(ctx context.Context, ids []string) ([]*jobs.Job, error) {
	out := make([]*jobs.Job, len(ids))
	var cached []string
	for _, id := range ids {
		if t.cache[id] != nil {
			cached = append(cached, id)
		}
	}
	var stale []string
	var at []int
	if len(cached) > 0 {
		vs, err := t.w.store.Versions(ctx, cached)
		if err != nil {
			return nil, err
		}
		same := make(map[string]bool, len(cached))
		for i, id := range cached {
			same[id] = vs[i] != "" && vs[i] == t.cache[id].Version()
		}
		for i, id := range ids {
			if same[id] {
				out[i] = t.cache[id]
			} else {
				stale, at = append(stale, id), append(at, i)
			}
		}
	} else {
		stale, at = ids, make([]int, len(ids))
		for i := range ids {
			at[i] = i
		}
	}
	if len(stale) > 0 {
		js, err := t.w.store.GetMany(ctx, stale)
		if err != nil {
			return nil, err
		}
		for k, j := range js {
			out[at[k]] = j
		}
	}
	// The cache keeps the records as read; the tick gets copies, which it
	// updates as its actions go (a failed write must not leave the cache
	// believing it happened). The copies share the attempts and history,
	// which nothing changes in place.
	next := make(jobCache, len(ids))
	for i, id := range ids {
		if out[i] != nil {
			next[id] = out[i]
			cp := *out[i]
			out[i] = &cp
		}
	}
	t.cache = next
	return out, nil
}
