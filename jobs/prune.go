package jobs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// finalStatuses are the statuses a job never leaves.
var finalStatuses = []Status{Confirmed, Failed, Cancelled}

// NewIDAt is NewID for a job created at t: a UUIDv7 whose timestamp is t.
// Ids order by creation time, which is how Prune finds old jobs.
func NewIDAt(t time.Time) string {
	u := uuid.Must(uuid.NewV7())
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(u[0:6], ms[2:8])
	return u.String()
}

// idFloor is the smallest id of a job created at t or later.
func idFloor(t time.Time) string {
	var u uuid.UUID
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(u[0:6], ms[2:8])
	return u.String()
}

// Prune deletes up to limit jobs that reached a final status (confirmed,
// failed, cancelled) and were created before before: their records, history
// and attempts, and their entries in the indexes. It returns how many it
// deleted. Jobs that are not final are never touched, however old.
func (s *Store) Prune(ctx context.Context, before time.Time, limit int) (int, error) {
	floor := idFloor(before)
	done := 0
	for _, st := range finalStatuses {
		if done >= limit {
			break
		}
		ids, err := s.rdb.ZRangeByLex(ctx, s.statusKey(st), &redis.ZRangeBy{Min: "-", Max: "(" + floor, Count: int64(limit - done)}).Result()
		if err != nil {
			return done, fmt.Errorf("prune %s jobs: %w", st, err)
		}
		if len(ids) == 0 {
			continue
		}
		// Each job's API key names the indexes of its own to leave.
		owners := make([]*redis.StringCmd, len(ids))
		pipe := s.rdb.Pipeline()
		for i, id := range ids {
			owners[i] = pipe.HGet(ctx, s.jobKey(id), "api_key")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return done, fmt.Errorf("prune %s jobs: %w", st, err)
		}
		pipe = s.rdb.Pipeline()
		for i, id := range ids {
			pipe.Del(ctx, s.jobKey(id), s.historyKey(id), s.attemptsKey(id))
			pipe.ZRem(ctx, s.statusKey(st), id)
			pipe.ZRem(ctx, s.allKey(), id)
			if owner := owners[i].Val(); owner != "" {
				pipe.ZRem(ctx, s.ownerStatusKey(owner, st), id)
				pipe.ZRem(ctx, s.ownerAllKey(owner), id)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return done, fmt.Errorf("prune %s jobs: %w", st, err)
		}
		done += len(ids)
	}
	return done, nil
}
