package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// MaxCreateMany bounds the jobs of one CreateMany: the script holds Redis
// for the whole batch, and its arguments are built in memory.
const MaxCreateMany = 1000

// MismatchError is CreateMany's ErrIdempotencyMismatch: the idempotency key
// of job Index was used before, by job PrevID, with a different request.
type MismatchError struct {
	Index  int
	PrevID string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("job %d: idempotency key used by job %s: %v", e.Index, e.PrevID, ErrIdempotencyMismatch)
}

// Unwrap makes errors.Is(err, ErrIdempotencyMismatch) hold.
func (e *MismatchError) Unwrap() error { return ErrIdempotencyMismatch }

// createManyScript writes a batch of new jobs, all or none, in one step.
// First it reads every idempotency key: if any was used with a different
// body hash it writes nothing. Then it writes each job whose key is unused
// (or that has none), exactly as createScript writes one.
//
// KEYS[1] queued index, KEYS[2] all-jobs index, KEYS[3] replication probe
// counter, KEYS[4] and KEYS[5] the queued and all-jobs indexes of the
// jobs' API key (KEYS[1] and KEYS[2] again when they have none); then for
// job i (1-based) KEYS[3i+3] job hash, KEYS[3i+4] history list, KEYS[3i+5]
// idempotency key.
// ARGV[1] idempotency TTL in seconds; then for each job in order: id,
// "id\nbody hash" for its idempotency key ("" for none), history entry
// (JSON), the number of field/value arguments that follow, and those.
//
// Returns {1, v1, …, vn} where vi is "" for a job written now and the
// stored "id\nbody hash" for one whose key returned an earlier job; or
// {0, i, stored} when job i's key holds a different body hash (nothing was
// written). The probe counter is bumped when any key was found, so that a
// WAIT after the script has a write to wait for (see Replicated).
var createManyScript = redis.NewScript(`
local n = (#KEYS - 5) / 3
local starts, prev = {}, {}
local found = false
local pos = 2
for i = 1, n do
  starts[i] = pos
  local idem = ARGV[pos + 1]
  if idem ~= "" then
    local p = redis.call("GET", KEYS[3 * i + 5])
    if p then
      found = true
      prev[i] = p
      local a = string.find(p, "\n", 1, true)
      local b = string.find(idem, "\n", 1, true)
      if not a or string.sub(p, a + 1) ~= string.sub(idem, b + 1) then
        return {0, i, p}
      end
    end
  end
  pos = pos + 4 + tonumber(ARGV[pos + 3])
end
local out = {1}
for i = 1, n do
  if prev[i] then
    out[#out + 1] = prev[i]
  else
    local p = starts[i]
    local id = ARGV[p]
    if ARGV[p + 1] ~= "" then
      redis.call("SET", KEYS[3 * i + 5], ARGV[p + 1], "EX", ARGV[1])
    end
    local nf = tonumber(ARGV[p + 3])
    redis.call("HSET", KEYS[3 * i + 3], unpack(ARGV, p + 4, p + 3 + nf))
    redis.call("RPUSH", KEYS[3 * i + 4], ARGV[p + 2])
    redis.call("ZADD", KEYS[1], 0, id)
    redis.call("ZADD", KEYS[2], 0, id)
    redis.call("ZADD", KEYS[4], 0, id)
    redis.call("ZADD", KEYS[5], 0, id)
    out[#out + 1] = ""
  end
end
if found then redis.call("INCR", KEYS[3]) end
return out
`)

// CreateMany writes js as new queued jobs in one Redis round trip, all or
// none: it is Create for a batch. idemKeys is nil (no idempotency) or holds
// one key per job ("" for none; the non-empty ones distinct). A job whose
// key was used before with the same body hash is not written again: its
// entry in the answer is the earlier job and created[i] is false. When any
// key was used with a different body hash nothing is written and the error
// is a *MismatchError (errors.Is ErrIdempotencyMismatch). With
// WithReplicas, a batch the replicas did not acknowledge in time comes
// back, written, with an error wrapping ErrNotReplicated.
func (s *Store) CreateMany(ctx context.Context, js []*Job, idemKeys []string) (out []*Job, created []bool, err error) {
	if len(js) == 0 {
		return nil, nil, nil
	}
	if len(js) > MaxCreateMany {
		return nil, nil, fmt.Errorf("create jobs: %d jobs, at most %d at once", len(js), MaxCreateMany)
	}
	if idemKeys != nil && len(idemKeys) != len(js) {
		return nil, nil, fmt.Errorf("create jobs: %d idempotency keys for %d jobs", len(idemKeys), len(js))
	}
	for _, j := range js {
		if j.APIKey != js[0].APIKey {
			return nil, nil, fmt.Errorf("create jobs: jobs of API keys %q and %q in one batch", js[0].APIKey, j.APIKey)
		}
	}
	seen := map[string]bool{}
	for _, k := range idemKeys {
		if k != "" && seen[k] {
			return nil, nil, fmt.Errorf("create jobs: idempotency key %q given twice", k)
		}
		seen[k] = true
	}
	now := s.now().UTC()
	keys := make([]string, 0, 5+3*len(js))
	idx := s.createIndexes(js[0].APIKey)
	keys = append(keys, idx[0], idx[1], s.probeKey(), idx[2], idx[3])
	args := []any{int(IdempotencyTTL / time.Second)}
	for i, j := range js {
		if j.ID == "" {
			j.ID = NewID()
		}
		j.Status, j.CreatedAt, j.UpdatedAt = Queued, now, now
		j.History = []Change{{To: Queued, At: now}}
		j.Attempts = []Attempt{}
		hist, _ := json.Marshal(j.History[0])
		key, idem := "", ""
		if idemKeys != nil && idemKeys[i] != "" {
			key, idem = idemKeys[i], j.ID+"\n"+j.BodyHash
		}
		f := s.fields(j)
		keys = append(keys, s.jobKey(j.ID), s.historyKey(j.ID), s.idemKey(key))
		args = append(args, j.ID, idem, string(hist), len(f))
		args = append(args, f...)
	}
	res, werr, err := s.runScript(ctx, createManyScript, keys, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("create jobs: %w", err)
	}
	if res[0].(int64) == 0 {
		prevID, _, _ := strings.Cut(res[2].(string), "\n")
		return nil, nil, &MismatchError{Index: int(res[1].(int64)) - 1, PrevID: prevID}
	}
	out, created = make([]*Job, len(js)), make([]bool, len(js))
	var prevIDs []string
	var prevAt []int
	for i := range js {
		v, _ := res[i+1].(string)
		if v == "" {
			out[i], created[i] = js[i], true
			continue
		}
		id, _, _ := strings.Cut(v, "\n")
		prevIDs, prevAt = append(prevIDs, id), append(prevAt, i)
	}
	if len(prevIDs) > 0 {
		prev, err := s.GetMany(ctx, prevIDs)
		if err != nil {
			return nil, nil, fmt.Errorf("create jobs: load jobs of idempotency keys: %w", err)
		}
		for k, p := range prev {
			if p == nil {
				if p, err = s.getArchived(ctx, prevIDs[k]); err != nil {
					return nil, nil, fmt.Errorf("create jobs: load job %s of an idempotency key: %w", prevIDs[k], err)
				}
			}
			out[prevAt[k]] = p
		}
	}
	if werr != nil {
		// Whatever the script wrote is on the primary; the same batch
		// with the same keys finds it (and waits for it again).
		return out, created, fmt.Errorf("create %d jobs: %w", len(js), werr)
	}
	return out, created, nil
}

// IdempotencyKeyUsed reports whether idemKey names a job already: a
// request with that key will be answered with the earlier job (or refused
// as a mismatch) rather than create one. The API uses it to skip work that
// only a new job needs, such as a dry run.
func (s *Store) IdempotencyKeyUsed(ctx context.Context, idemKey string) (bool, error) {
	if idemKey == "" {
		return false, nil
	}
	n, err := s.rdb.Exists(ctx, s.idemKey(idemKey)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("check idempotency key: %w", err)
	}
	return n == 1, nil
}
