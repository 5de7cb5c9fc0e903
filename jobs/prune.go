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

// bindingKey is the nonce allocator's bound hash (job id → nonce) of the
// signer from on chainID. It mirrors nonce.New's key layout (a test pins
// the two together); jobs does not import nonce.
func (s *Store) bindingKey(chainID, from string) string {
	return s.prefix + "{" + chainID + ":" + from + "}:bound"
}

// Prune deletes up to limit jobs that reached a final status (confirmed,
// failed, cancelled) and were created before before: their records, history
// and attempts, and their entries in the indexes. It returns how many it
// deleted. Jobs that are not final are never touched, however old.
//
// Nor is a final job whose nonce is still bound in its signer's allocator:
// a failed or cancelled job whose nonce waits for its gap fill, or one the
// tracker has not yet released. The tracker drops the binding of a job it
// cannot load, so deleting such a job would leave its nonce unfilled and
// block every later nonce of the signer. A binding only goes away after a
// job is final, so a job kept here is pruned by a later sweep.
func (s *Store) Prune(ctx context.Context, before time.Time, limit int) (int, error) {
	floor := idFloor(before)
	done := 0
	for _, st := range finalStatuses {
		// Bound jobs stay in the index: page past them.
		kept := int64(0)
		for done < limit {
			ids, err := s.rdb.ZRangeByLex(ctx, s.statusKey(st), &redis.ZRangeBy{Min: "-", Max: "(" + floor, Offset: kept, Count: int64(limit - done)}).Result()
			if err != nil {
				return done, fmt.Errorf("prune %s jobs: %w", st, err)
			}
			if len(ids) == 0 {
				break
			}
			free, err := s.unbound(ctx, ids)
			if err != nil {
				return done, fmt.Errorf("prune %s jobs: %w", st, err)
			}
			kept += int64(len(ids) - len(free))
			if len(free) == 0 {
				continue
			}
			// Each job's API key names the indexes of its own to leave.
			owners := make([]*redis.StringCmd, len(free))
			pipe := s.rdb.Pipeline()
			for i, id := range free {
				owners[i] = pipe.HGet(ctx, s.jobKey(id), "api_key")
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return done, fmt.Errorf("prune %s jobs: %w", st, err)
			}
			pipe = s.rdb.Pipeline()
			for i, id := range free {
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
			done += len(free)
		}
	}
	return done, nil
}

// unbound returns the ids among ids whose job holds no nonce binding in
// its signer's allocator: two pipelined round trips, one to read each
// job's signer, one to look for its binding.
func (s *Store) unbound(ctx context.Context, ids []string) ([]string, error) {
	pipe := s.rdb.Pipeline()
	heads := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		heads[i] = pipe.HMGet(ctx, s.jobKey(id), "chain_id", "from")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read signers: %w", err)
	}
	pipe = s.rdb.Pipeline()
	bound := make([]*redis.BoolCmd, len(ids))
	for i, id := range ids {
		v := heads[i].Val()
		chain, _ := v[0].(string)
		from, _ := v[1].(string)
		if chain == "" || from == "" {
			continue // never reserved a nonce: reserving writes from
		}
		bound[i] = pipe.HExists(ctx, s.bindingKey(chain, from), id)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read bindings: %w", err)
	}
	free := make([]string, 0, len(ids))
	for i, id := range ids {
		if bound[i] == nil || !bound[i].Val() {
			free = append(free, id)
		}
	}
	return free, nil
}
