package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is a Redis lock with a TTL that its holder renews: a periodic loop
// that must run once across all worker processes takes it before each round,
// and when its holder dies another process takes over within the TTL.
type Lease struct {
	rdb   redis.UniversalClient
	key   string
	ttl   time.Duration
	token string
}

// NewLease returns a lease on key held for ttl after each Hold.
func NewLease(rdb redis.UniversalClient, key string, ttl time.Duration) *Lease {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return &Lease{rdb: rdb, key: key, ttl: ttl, token: hex.EncodeToString(b)}
}

// holdScript takes the lease if it is free or renews it if we hold it.
//
// KEYS[1] lease key. ARGV[1] holder token, ARGV[2] TTL in ms.
// Returns 1 when held by the caller, 0 otherwise.
var holdScript = redis.NewScript(`
local cur = redis.call("GET", KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
return 0
`)

// releaseScript deletes the lease only if the caller holds it.
//
// KEYS[1] lease key. ARGV[1] holder token. Returns 1 if released.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`)

// Hold takes or renews the lease and reports whether the caller holds it.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	n, err := holdScript.Run(ctx, l.rdb, []string{l.key}, l.token, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

// Release gives the lease up so another process can take it at once.
func (l *Lease) Release(ctx context.Context) {
	_ = releaseScript.Run(ctx, l.rdb, []string{l.key}, l.token).Err()
}

// everyWhileLeased runs round every interval, in one process of the
// deployment at a time: a round runs only while this process holds the
// lease key (ttl long), which it releases when ctx ends.
func (w *Worker) everyWhileLeased(ctx context.Context, key string, every, ttl time.Duration, round func(context.Context)) {
	lease := NewLease(w.cfg.Redis, key, ttl)
	defer lease.Release(context.WithoutCancel(ctx))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if held, err := lease.Hold(ctx); err != nil || !held {
			continue
		}
		round(ctx)
	}
}
