package nonce

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// reserveManyScript binds the next nonces to jobs, in one step: the nonces
// come out contiguous and in the order of the jobs. A job that already holds
// a nonce gets it back (a retried task must get the same nonce); a job that
// is not queued gets none, so a stale duplicate of a finished job's task
// cannot take a nonce it would never use. The signer's address is written to
// each bound job's "from" in the same step: once a nonce of this signer is
// bound, a retry on any worker must sign with this signer.
//
// KEYS[1] next, KEYS[2] bound hash, KEYS[3] inflight zset, KEYS[4..] the
// jobs' hashes. ARGV[1] the signer's address, ARGV[2..] the job ids, in the
// order of their keys.
// Returns one entry per job: its nonce, -1 when the job is not queued, or
// -2 when the job's "from" names another signer (pinned by its request, or
// by a reservation another run of its task made on that signer: a job takes
// nonces from one signer only). The error "NOTINIT" when next is unset.
var reserveManyScript = redis.NewScript(`
local out = {}
local n = redis.call("GET", KEYS[1])
local me = string.lower(ARGV[1])
for i = 2, #ARGV do
  local id, key = ARGV[i], KEYS[i + 2]
  local have = redis.call("HGET", KEYS[2], id)
  local from = redis.call("HGET", key, "from")
  if have then
    out[#out + 1] = tonumber(have)
  elseif redis.call("HGET", key, "status") ~= "queued" then
    out[#out + 1] = -1
  elseif from and from ~= "" and string.lower(from) ~= me then
    out[#out + 1] = -2
  else
    if not n then return redis.error_reply("NOTINIT") end
    redis.call("HSET", KEYS[2], id, n)
    redis.call("ZADD", KEYS[3], n, id)
    redis.call("HSET", key, "from", ARGV[1])
    out[#out + 1] = tonumber(n)
    n = n + 1
  end
end
if n then redis.call("SET", KEYS[1], n) end
return out
`)

// ErrOtherSigner means the job is pinned to another signer: its request
// named one, or another run of its task reserved a nonce of that signer.
var ErrOtherSigner = errors.New("job is pinned to another signer")

// Reservation is the outcome of one job of ReserveMany: its nonce, or
// ErrNotQueued, or ErrOtherSigner.
type Reservation struct {
	Nonce uint64
	Err   error
}

// ReserveMany is Reserve for several jobs of this signer in one round trip.
// jobKeys[i] is the record key of jobIDs[i]. A job that already holds a
// nonce gets it back; new nonces are contiguous in the order given. The
// error is ErrNotInitialized (nothing reserved) or a Redis error.
func (a *Allocator) ReserveMany(ctx context.Context, jobIDs, jobKeys []string) ([]Reservation, error) {
	if len(jobIDs) != len(jobKeys) {
		return nil, fmt.Errorf("reserve nonces: %d ids, %d keys", len(jobIDs), len(jobKeys))
	}
	if len(jobIDs) == 0 {
		return nil, nil
	}
	keys := append([]string{a.next, a.bound, a.flight}, jobKeys...)
	args := make([]any, 0, len(jobIDs)+1)
	args = append(args, a.addr.Hex())
	for _, id := range jobIDs {
		args = append(args, id)
	}
	res, err := reserveManyScript.Run(ctx, a.rdb, keys, args...).Int64Slice()
	if err != nil {
		if strings.HasSuffix(err.Error(), "NOTINIT") {
			return nil, ErrNotInitialized
		}
		return nil, fmt.Errorf("reserve nonces: %w", err)
	}
	if len(res) != len(jobIDs) {
		return nil, fmt.Errorf("reserve nonces: %d answers for %d jobs", len(res), len(jobIDs))
	}
	out := make([]Reservation, len(res))
	for i, n := range res {
		switch {
		case n == -2:
			out[i].Err = ErrOtherSigner
		case n < 0:
			out[i].Err = ErrNotQueued
		default:
			out[i].Nonce = uint64(n)
		}
	}
	return out, nil
}
