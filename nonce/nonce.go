// Package nonce allocates nonces for one (chain, signer) from Redis, so any
// number of worker processes share one contiguous sequence.
//
// The allocator's truth is three keys under the signer's hash tag
// {<chain>:<address>}: next (the next nonce to hand out), bound (job id →
// nonce) and inflight (a sorted set of job ids scored by nonce). Reserving a
// nonce and binding it to a job is one script, so a crash can never leave a
// nonce handed out but bound to nobody, nor a job with two nonces.
package nonce

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/redis/go-redis/v9"
)

// ErrNotInitialized means the allocator has never been reconciled with the
// chain, so it does not know where the sequence starts.
var ErrNotInitialized = errors.New("nonce allocator not initialized: reconcile with the chain first")

// ErrNotQueued means the job asking for a nonce has already left the queued
// status (another execution of its task got there first).
var ErrNotQueued = errors.New("job is no longer queued")

// Allocator hands out nonces for one signer on one chain.
type Allocator struct {
	rdb     redis.UniversalClient
	chainID uint64
	addr    common.Address
	next    string
	bound   string
	flight  string
}

// New returns the allocator of addr on chainID with keys under prefix.
func New(rdb redis.UniversalClient, prefix string, chainID uint64, addr common.Address) *Allocator {
	tag := fmt.Sprintf("%s{%d:%s}:", prefix, chainID, addr.Hex())
	return &Allocator{rdb: rdb, chainID: chainID, addr: addr, next: tag + "next", bound: tag + "bound", flight: tag + "inflight"}
}

// Address is the signer this allocator serves.
func (a *Allocator) Address() common.Address { return a.addr }

// ChainID is the chain this allocator serves.
func (a *Allocator) ChainID() uint64 { return a.chainID }

// KeyTag returns the key prefix (with hash tag) of this signer, so other
// per-signer keys (leases) can live in the same slot.
func (a *Allocator) KeyTag() string { return a.next[:len(a.next)-len("next")] }

// Reserve binds the next nonce to jobID and returns it. It is idempotent: a
// job that already holds a nonce gets the same one. jobKey is the Redis key
// of the job's record (jobs.Store.JobKey): a nonce is only bound to a job
// that is still queued (ErrNotQueued otherwise), and the job's "from" is
// pinned to this signer in the same step. It is ReserveMany for one job.
func (a *Allocator) Reserve(ctx context.Context, jobID, jobKey string) (uint64, error) {
	res, err := a.ReserveMany(ctx, []string{jobID}, []string{jobKey})
	if err != nil {
		return 0, err
	}
	return res[0].Nonce, res[0].Err
}

// rebindScript moves a job to a fresh nonce when its old one was used by a
// transaction that is not relayq's: the job never executed, so it needs a new
// place in the sequence. It does nothing unless the job is still bound to
// the old nonce (a concurrent rebind already happened).
//
// KEYS[1] next, KEYS[2] bound hash, KEYS[3] inflight zset.
// ARGV[1] job id, ARGV[2] old nonce.
// Returns the new nonce, or -1 when the job is not bound to the old nonce.
var rebindScript = redis.NewScript(`
if redis.call("HGET", KEYS[2], ARGV[1]) ~= ARGV[2] then return -1 end
local n = redis.call("GET", KEYS[1])
if not n then return redis.error_reply("NOTINIT") end
redis.call("SET", KEYS[1], n + 1)
redis.call("HSET", KEYS[2], ARGV[1], n)
redis.call("ZADD", KEYS[3], n, ARGV[1])
return tonumber(n)
`)

// ErrNotBound means a rebind found the job no longer bound to the nonce it
// expected.
var ErrNotBound = errors.New("job is not bound to that nonce")

// Rebind gives jobID the next nonce in place of old. Call Reconcile first, so
// the new nonce is past what the chain has used.
func (a *Allocator) Rebind(ctx context.Context, jobID string, old uint64) (uint64, error) {
	n, err := rebindScript.Run(ctx, a.rdb, []string{a.next, a.bound, a.flight}, jobID, strconv.FormatUint(old, 10)).Int64()
	if err != nil {
		if strings.HasSuffix(err.Error(), "NOTINIT") {
			return 0, ErrNotInitialized
		}
		return 0, fmt.Errorf("rebind nonce: %w", err)
	}
	if n < 0 {
		return 0, ErrNotBound
	}
	return uint64(n), nil
}

// PausedTTL is how long a paused mark lasts unless renewed: a paused
// signer's jobs retry (and renew it) far more often, and a mark left by a
// process that died or by another process's view cannot outlive it.
const PausedTTL = time.Minute

// SetPaused records (reason != "") or clears that the signer cannot pay.
func (a *Allocator) SetPaused(ctx context.Context, reason string) error {
	key := a.KeyTag() + "paused"
	if reason == "" {
		return a.rdb.Del(ctx, key).Err()
	}
	return a.rdb.Set(ctx, key, reason, PausedTTL).Err()
}

// Paused returns why the signer is paused, or "".
func (a *Allocator) Paused(ctx context.Context) (string, error) {
	v, err := a.rdb.Get(ctx, a.KeyTag()+"paused").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, err
}

// Bound returns the nonce bound to jobID, if any.
func (a *Allocator) Bound(ctx context.Context, jobID string) (uint64, bool, error) {
	v, err := a.rdb.HGet(ctx, a.bound, jobID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("bound nonce: %w", err)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil, err
}

// reconcileScript raises next to at least the chain's pending nonce. It never
// lowers it: nonces above the chain's may be bound to jobs whose
// transactions are signed but not yet seen by the node.
//
// KEYS[1] next. ARGV[1] the chain's pending nonce.
// Returns the new next.
var reconcileScript = redis.NewScript(`
local n = tonumber(redis.call("GET", KEYS[1]) or "-1")
local p = tonumber(ARGV[1])
if p > n then redis.call("SET", KEYS[1], p); n = p end
return n
`)

// Reconcile brings the allocator up to the chain's pending nonce (someone
// else may have used the key) and returns the next nonce it will hand out.
func (a *Allocator) Reconcile(ctx context.Context, chainPending uint64) (uint64, error) {
	n, err := reconcileScript.Run(ctx, a.rdb, []string{a.next}, chainPending).Int64()
	if err != nil {
		return 0, fmt.Errorf("reconcile nonce: %w", err)
	}
	return uint64(n), nil
}

// Next returns the next nonce the allocator will hand out (false when not
// initialized).
func (a *Allocator) Next(ctx context.Context) (uint64, bool, error) {
	v, err := a.rdb.Get(ctx, a.next).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("next nonce: %w", err)
	}
	return v, true, nil
}

// InFlight is a job holding a nonce whose transaction is not final yet.
type InFlight struct {
	JobID string
	Nonce uint64
}

// Below lists in-flight jobs whose nonce is below n (the chain's latest
// nonce: those nonces are used), lowest first, at most limit.
func (a *Allocator) Below(ctx context.Context, n uint64, limit int) ([]InFlight, error) {
	if n == 0 {
		return nil, nil
	}
	zs, err := a.rdb.ZRangeByScoreWithScores(ctx, a.flight, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatUint(n-1, 10), Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("in-flight below %d: %w", n, err)
	}
	return toInFlight(zs), nil
}

// All lists every in-flight job, lowest nonce first, at most limit.
func (a *Allocator) All(ctx context.Context, limit int) ([]InFlight, error) {
	zs, err := a.rdb.ZRangeByScoreWithScores(ctx, a.flight, &redis.ZRangeBy{Min: "-inf", Max: "+inf", Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("in-flight: %w", err)
	}
	return toInFlight(zs), nil
}

// Count returns how many jobs are in flight.
func (a *Allocator) Count(ctx context.Context) (int64, error) {
	return a.rdb.ZCard(ctx, a.flight).Result()
}

func toInFlight(zs []redis.Z) []InFlight {
	out := make([]InFlight, len(zs))
	for i, z := range zs {
		out[i] = InFlight{JobID: z.Member.(string), Nonce: uint64(z.Score)}
	}
	return out
}

// Release drops a finished job from the in-flight set and its binding. The
// nonce stays used: next never goes back.
func (a *Allocator) Release(ctx context.Context, jobID string) error {
	pipe := a.rdb.TxPipeline()
	pipe.ZRem(ctx, a.flight, jobID)
	pipe.HDel(ctx, a.bound, jobID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("release nonce of %s: %w", jobID, err)
	}
	return nil
}

// Registry records which signers the workers hold, so the API (which holds
// no keys) can validate a job's "from".
type Registry struct {
	rdb redis.UniversalClient
	key string
}

// NewRegistry returns the signer registry under prefix.
func NewRegistry(rdb redis.UniversalClient, prefix string) *Registry {
	return &Registry{rdb: rdb, key: prefix + "signers"}
}

// Register records addrs as signers on chainID.
func (r *Registry) Register(ctx context.Context, chainID uint64, addrs []common.Address) error {
	if len(addrs) == 0 {
		return nil
	}
	fv := make([]any, 0, 2*len(addrs))
	for _, a := range addrs {
		fv = append(fv, a.Hex(), chainID)
	}
	if err := r.rdb.HSet(ctx, r.key, fv...).Err(); err != nil {
		return fmt.Errorf("register signers: %w", err)
	}
	return nil
}

// Signers returns every registered signer with its chain id.
func (r *Registry) Signers(ctx context.Context) (map[common.Address]uint64, error) {
	m, err := r.rdb.HGetAll(ctx, r.key).Result()
	if err != nil {
		return nil, fmt.Errorf("registered signers: %w", err)
	}
	out := make(map[common.Address]uint64, len(m))
	for a, c := range m {
		id, err := strconv.ParseUint(c, 10, 64)
		if err != nil || !common.IsHexAddress(a) {
			continue
		}
		out[common.HexToAddress(a)] = id
	}
	return out, nil
}
