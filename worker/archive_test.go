package worker

import (
	"errors"
	"testing"
	"time"

	"github.com/relayq/relayq/jobs"
)

// The archiver refuses what a reorg or a later transition could change:
// a job not final, final within the hot window, or whose block is not
// confirmations deep (or the head unknown).
func TestCheckMovable(t *testing.T) {
	t.Parallel()
	now := time.Now()
	block := uint64(100)
	job := func(st jobs.Status, finalAgo time.Duration, b *uint64, confs uint64) *jobs.Job {
		return &jobs.Job{ID: "j", Status: st, BlockNumber: b, Confirmations: confs,
			History: []jobs.Change{{To: jobs.Queued, At: now.Add(-2 * time.Hour)}, {To: st, At: now.Add(-finalAgo)}}}
	}
	for _, tc := range []struct {
		name string
		j    *jobs.Job
		head uint64
		ok   bool
	}{
		{"confirmed, deep, past the window", job(jobs.Confirmed, 2*time.Hour, &block, 3), 102, true},
		{"failed before any block", job(jobs.Failed, 2*time.Hour, nil, 1), 0, true},
		{"cancelled, deep", job(jobs.Cancelled, 2*time.Hour, &block, 1), 100, true},
		{"mined is not final", job(jobs.Mined, 2*time.Hour, &block, 1), 200, false},
		{"submitted is not final", job(jobs.Submitted, 2*time.Hour, nil, 1), 200, false},
		{"queued is not final", job(jobs.Queued, 2*time.Hour, nil, 1), 200, false},
		{"final within the window", job(jobs.Confirmed, 10*time.Minute, &block, 1), 200, false},
		{"not deep enough", job(jobs.Confirmed, 2*time.Hour, &block, 3), 101, false},
		{"head unknown", job(jobs.Confirmed, 2*time.Hour, &block, 1), 0, false},
		{"no history", &jobs.Job{ID: "j", Status: jobs.Failed}, 200, false},
	} {
		err := checkMovable(tc.j, tc.head, now, time.Hour)
		if tc.ok && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrNotMovable) {
			t.Errorf("%s: not refused (%v)", tc.name, err)
		}
	}
}
