package jobs

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Movable returns up to limit final jobs that may leave Redis for the
// archive: created and final before before, and holding no nonce binding
// in their signer's allocator (as Prune, a bound job's nonce still waits
// for its gap fill or its release). Jobs are loaded whole.
func (s *Store) Movable(ctx context.Context, before time.Time, limit int) ([]*Job, error) {
	floor := idFloor(before)
	var out []*Job
	for _, st := range finalStatuses {
		// Nothing leaves the index here: page past every id read.
		read := int64(0)
		for len(out) < limit {
			ids, err := s.rdb.ZRangeByLex(ctx, s.statusKey(st), &redis.ZRangeBy{Min: "-", Max: "(" + floor, Offset: read, Count: int64(limit - len(out))}).Result()
			if err != nil {
				return out, fmt.Errorf("movable %s jobs: %w", st, err)
			}
			if len(ids) == 0 {
				break
			}
			free, err := s.unbound(ctx, ids)
			if err != nil {
				return out, fmt.Errorf("movable %s jobs: %w", st, err)
			}
			js, err := s.GetMany(ctx, free)
			if err != nil {
				return out, err
			}
			read += int64(len(ids))
			for _, j := range js {
				if j == nil || j.Status != st || !finishedBefore(j, before) {
					continue
				}
				out = append(out, j)
			}
		}
	}
	return out, nil
}

// finishedBefore reports whether j's last change is before t.
func finishedBefore(j *Job, t time.Time) bool {
	if n := len(j.History); n > 0 {
		return j.History[n-1].At.Before(t)
	}
	return j.UpdatedAt.Before(t)
}

// forgetScript deletes a job that the archive holds: its record, history
// and attempts and its index entries, in one step, provided it is still as
// it was archived.
//
// KEYS[1] job hash, KEYS[2] history, KEYS[3] attempts, KEYS[4] its status
// index, KEYS[5] all-jobs index, KEYS[6] and KEYS[7] its API key's status
// and all-jobs indexes (KEYS[4], KEYS[5] without a key), KEYS[8] its
// signer's nonce bindings, KEYS[9] the webhook outbox.
// ARGV[1] job id, ARGV[2] the archived status, ARGV[3] and ARGV[4] the
// archived webhook delivery and failure counters, ARGV[5] the outbox event
// of its final change ("<id>.<n>"), ARGV[6] "1" when the job has a signer
// (and so may hold a binding).
//
// Returns 1 when deleted; 0 when the job is gone already; -1 when it
// changed (another status, a webhook attempt recorded since), -2 when its
// nonce is bound, -3 when its final webhook event is still in the outbox:
// then nothing is deleted.
var forgetScript = redis.NewScript(`
local h = redis.call("HMGET", KEYS[1], "status", "webhook_deliveries", "webhook_failures")
if not h[1] then return 0 end
if h[1] ~= ARGV[2] or (h[2] or "0") ~= ARGV[3] or (h[3] or "0") ~= ARGV[4] then return -1 end
if ARGV[6] == "1" and redis.call("HEXISTS", KEYS[8], ARGV[1]) == 1 then return -2 end
if redis.call("ZSCORE", KEYS[9], ARGV[5]) then return -3 end
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
redis.call("ZREM", KEYS[4], ARGV[1])
redis.call("ZREM", KEYS[5], ARGV[1])
redis.call("ZREM", KEYS[6], ARGV[1])
redis.call("ZREM", KEYS[7], ARGV[1])
return 1
`)

// Forget deletes from Redis each job of js that the archive holds, as Prune
// does (record, history, attempts, every index), one atomic script per job.
// A job that changed since it was loaded (a webhook attempt recorded), is
// bound, or whose final webhook event is still in the outbox is kept; the
// caller archives it again later. It returns how many jobs it deleted.
func (s *Store) Forget(ctx context.Context, js []*Job) (int, error) {
	if len(js) == 0 {
		return 0, nil
	}
	// Loaded first: in a pipeline EVALSHA's NOSCRIPT comes too late to
	// fall back on EVAL.
	if err := forgetScript.Load(ctx, s.rdb).Err(); err != nil {
		return 0, fmt.Errorf("forget jobs: %w", err)
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(js))
	for i, j := range js {
		idx := []string{s.statusKey(j.Status), s.allKey()}
		if j.APIKey != "" {
			idx = append(idx, s.ownerStatusKey(j.APIKey, j.Status), s.ownerAllKey(j.APIKey))
		} else {
			idx = append(idx, idx...)
		}
		var del, fail int64
		if j.Webhook != nil {
			del, fail = j.Webhook.Deliveries, j.Webhook.Failures
		}
		signed := "0"
		binding := s.prefix + "{none}:bound"
		if j.From != "" {
			signed, binding = "1", s.bindingKey(strconv.FormatUint(j.ChainID, 10), j.From)
		}
		keys := append([]string{s.jobKey(j.ID), s.historyKey(j.ID), s.attemptsKey(j.ID)}, idx...)
		keys = append(keys, binding, s.outboxKey())
		cmds[i] = forgetScript.EvalSha(ctx, pipe, keys, j.ID, string(j.Status), del, fail,
			j.ID+"."+strconv.Itoa(len(j.History)-1), signed)
	}
	// Each script is atomic on its own; a crash between them leaves the
	// rest in Redis, and in the archive too, which is safe.
	_, _ = pipe.Exec(ctx)
	n := 0
	for i, c := range cmds {
		v, err := c.Int()
		if err != nil {
			return n, fmt.Errorf("forget job %s: %w", js[i].ID, err)
		}
		if v == 1 {
			n++
		}
	}
	return n, nil
}

// WithClock sets the clock that stamps creations and transitions (tests
// make jobs that became final in the past with it).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}
