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

// transitionScript moves a job to a new status if it is in one of the
// allowed ones, writing fields, history and an attempt in the same step.
// When the status changes to one that fires a webhook and the job has a
// webhook_url, it also records the event in the webhook outbox (a
// transactional outbox): a snapshot of the job right after the change,
// under KEYS[1]..":event:<n>" (same hash tag, so same slot), and the event
// id "<job id>.<n>" in the outbox, n being the change's index in the
// history. A crash after this script therefore never loses an event.
//
// KEYS[1] job hash, KEYS[2] history list, KEYS[3] attempts list, KEYS[4]
// webhook outbox (sorted set, scored by time in ms).
// ARGV[1] job id, ARGV[2] new status, ARGV[3] allowed current statuses
// (each between spaces: " queued submitted "), ARGV[4] status index key
// prefix, ARGV[5] time (RFC 3339), ARGV[6] note as a JSON string, ARGV[7]
// attempt JSON or "", ARGV[8] time in ms (the outbox score), ARGV[9]
// statuses whose arrival fires a webhook (" mined confirmed … "; mined →
// submitted, a reorg, always does), ARGV[10..] field/value pairs.
// A job with an "api_key" also moves between that key's status indexes,
// ARGV[4]..<status>..":key:"..<name> (Store.ownerStatusKey).
//
// Returns {1, previous status} on success, {0, current status} when the job
// is in a status the transition does not start from, {-1, ""} when there is
// no such job.
var transitionScript = redis.NewScript(transitionLua)

const transitionLua = recordEventLua + `
local cur = redis.call("HGET", KEYS[1], "status")
if not cur then return {-1, ""} end
if cur == "" or not string.find(ARGV[3], " " .. cur .. " ", 1, true) then return {0, cur} end
local fv = {"status", ARGV[2], "updated_at", ARGV[5]}
for i = 10, #ARGV do fv[#fv+1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fv))
if ARGV[7] ~= "" then redis.call("RPUSH", KEYS[3], ARGV[7]) end
if cur ~= ARGV[2] then
  local n = redis.call("RPUSH", KEYS[2], '{"from":"' .. cur .. '","to":"' .. ARGV[2] .. '","at":"' .. ARGV[5] .. '","note":' .. ARGV[6] .. '}')
  redis.call("ZREM", ARGV[4] .. cur, ARGV[1])
  redis.call("ZADD", ARGV[4] .. ARGV[2], 0, ARGV[1])
  local owner = redis.call("HGET", KEYS[1], "api_key")
  if owner and owner ~= "" then
    redis.call("ZREM", ARGV[4] .. cur .. ":key:" .. owner, ARGV[1])
    redis.call("ZADD", ARGV[4] .. ARGV[2] .. ":key:" .. owner, 0, ARGV[1])
  end
  if string.find(ARGV[9], " " .. ARGV[2] .. " ", 1, true) or (cur == "mined" and ARGV[2] == "submitted") then
    local url = redis.call("HGET", KEYS[1], "webhook_url")
    if url and url ~= "" then recordEvent(n, ARGV[8]) end
  end
end
return {1, cur}
`

// recordEventLua defines recordEvent(n, score): the webhook event of the
// job's change at history index n-1 (1-based n, as RPUSH answers), a
// snapshot of the job as it is now under KEYS[1]..":event:"..(n-1) and its
// id "<job id>.<n-1>" in the outbox KEYS[4], scored score; KEYS[3] is the
// attempts list and ARGV[1] the job id, in every script that uses it.
const recordEventLua = `
local function recordEvent(n, score)
  local snap = KEYS[1] .. ":event:" .. (n - 1)
  redis.call("DEL", snap)
  redis.call("HSET", snap, unpack(redis.call("HGETALL", KEYS[1])))
  redis.call("HSET", snap, "event_attempts", redis.call("LLEN", KEYS[3]))
  redis.call("ZADD", KEYS[4], score, ARGV[1] .. "." .. (n - 1))
end
`

// boundTransitionScript is transitionScript behind one more check, for a
// step that writes the nonce the allocator bound to the job: KEYS[5] is
// the allocator's bound hash (job id → nonce), and the step applies only if
// it binds the job (ARGV[1]) to the "nonce" among the fields. A reservation
// made on a Redis primary that then failed over (or restarted without it)
// is missing on the server that takes the step, which answers {-2, ""}
// instead of recording a transaction at a nonce nobody holds.
var boundTransitionScript = redis.NewScript(`
local want
for i = 10, #ARGV - 1, 2 do
  if ARGV[i] == "nonce" then want = ARGV[i + 1] end
end
if KEYS[5] and want and redis.call("HGET", KEYS[5], ARGV[1]) ~= want then return {-2, ""} end
` + transitionLua)

// ErrNotBound means a step's nonce is not bound to the job on the Redis
// server that took it (see Step.Binding): nothing was written.
var ErrNotBound = errors.New("the job's nonce is not bound to it on this Redis server")

// webhookStatuses are the statuses whose arrival fires a job's webhook
// (besides mined → submitted, a reorg's step back).
const webhookStatuses = " mined confirmed failed cancelled "

// Fields are extra job fields a transition writes, in pairs.
type Fields []any

// Transition is the one way a job's status changes. It moves job id to
// status to if its current status may move there (see CanTransition),
// writing fields and appending attempt (if not nil) in the same atomic
// step, and records the change in the job's history. It returns the
// previous status, or a *BadTransitionError, or ErrNotFound.
func (s *Store) Transition(ctx context.Context, id string, to Status, note string, fields Fields, attempt *Attempt) (Status, error) {
	return s.apply(ctx, id, to, allowedFrom[to], note, fields, attempt)
}

// TransitionIf is Transition restricted to jobs currently in status from
// (which must be one the table allows): for a caller that only knows how to
// handle that one starting point.
func (s *Store) TransitionIf(ctx context.Context, id string, from, to Status, note string, fields Fields, attempt *Attempt) error {
	if !CanTransition(from, to) {
		return fmt.Errorf("transition job %s: %s → %s is not allowed", id, from, to)
	}
	_, err := s.apply(ctx, id, to, []Status{from}, note, fields, attempt)
	return err
}

// Update writes fields (and an attempt) to a job that is in status in,
// without changing its status: a fee bump, a receipt detail.
func (s *Store) Update(ctx context.Context, id string, in Status, fields Fields, attempt *Attempt) error {
	_, err := s.apply(ctx, id, in, []Status{in}, "", fields, attempt)
	return err
}

func (s *Store) apply(ctx context.Context, id string, to Status, from []Status, note string, fields Fields, attempt *Attempt) (Status, error) {
	keys, args, err := s.prepare(id, to, from, note, fields, attempt)
	if err != nil {
		return "", err
	}
	res, werr, err := s.runScript(ctx, transitionScript, keys, args...)
	prev, err := outcome(id, to, from, res, err)
	if err == nil && werr != nil {
		// Written on the primary, not yet on enough replicas.
		return prev, fmt.Errorf("transition job %s to %s: %w", id, to, werr)
	}
	return prev, err
}

// prepare builds the keys and arguments of transitionScript.
func (s *Store) prepare(id string, to Status, from []Status, note string, fields Fields, attempt *Attempt) ([]string, []any, error) {
	if len(from) == 0 {
		return nil, nil, fmt.Errorf("transition job %s: nothing moves to %q", id, to)
	}
	if len(fields)%2 != 0 {
		return nil, nil, fmt.Errorf("transition job %s: odd number of fields", id)
	}
	var allowed strings.Builder
	allowed.WriteString(" ")
	for _, f := range from {
		allowed.WriteString(string(f) + " ")
	}
	noteJSON, _ := json.Marshal(note)
	att := ""
	if attempt != nil {
		b, err := json.Marshal(attempt)
		if err != nil {
			return nil, nil, fmt.Errorf("transition job %s: %w", id, err)
		}
		att = string(b)
	}
	now := s.now().UTC()
	args := []any{id, string(to), allowed.String(), s.indexPrefix(), now.Format(time.RFC3339Nano), string(noteJSON), att, now.UnixMilli(), webhookStatuses}
	args = append(args, fields...)
	keys := []string{s.jobKey(id), s.historyKey(id), s.attemptsKey(id), s.outboxKey()}
	return keys, args, nil
}

// outcome reads transitionScript's answer.
func outcome(id string, to Status, from []Status, res []any, err error) (Status, error) {
	if err != nil {
		return "", fmt.Errorf("transition job %s to %s: %w", id, to, err)
	}
	cur := Status(res[1].(string))
	switch res[0].(int64) {
	case 1:
		return cur, nil
	case 0:
		return cur, &BadTransitionError{ID: id, Current: cur, Wanted: to, Expected: from}
	case -2:
		return "", fmt.Errorf("transition job %s to %s: %w", id, to, ErrNotBound)
	default:
		return "", fmt.Errorf("transition job %s: %w", id, ErrNotFound)
	}
}

// Step is one transition of TransitionMany: TransitionIf's arguments.
type Step struct {
	ID       string
	From, To Status
	Note     string
	Fields   Fields
	Attempt  *Attempt
	// Binding, if set, is the nonce allocator's bound hash: the step
	// applies only where it binds the job to the "nonce" in Fields, and
	// answers ErrNotBound otherwise (see boundTransitionScript).
	Binding string
}

// TransitionMany applies each step as TransitionIf would, in one round
// trip. Each step is atomic on its own; together they are a pipeline, not a
// transaction: one step's failure does not undo another's. It returns each
// step's error. With WithReplicas a WAIT ends the pipeline, and a step the
// replicas did not acknowledge in time answers ErrNotReplicated although
// it was written.
func (s *Store) TransitionMany(ctx context.Context, steps []Step) []error {
	errs := make([]error, len(steps))
	type prepared struct {
		i      int
		keys   []string
		args   []any
		script *redis.Script
	}
	var todo []prepared
	for i, st := range steps {
		if !CanTransition(st.From, st.To) {
			errs[i] = fmt.Errorf("transition job %s: %s → %s is not allowed", st.ID, st.From, st.To)
			continue
		}
		keys, args, err := s.prepare(st.ID, st.To, []Status{st.From}, st.Note, st.Fields, st.Attempt)
		if err != nil {
			errs[i] = err
			continue
		}
		script := transitionScript
		if st.Binding != "" {
			keys, script = append(keys, st.Binding), boundTransitionScript
		}
		todo = append(todo, prepared{i, keys, args, script})
	}
	// A Redis that restarted has forgotten the script: steps answered
	// NOSCRIPT did not run, so they go again once it is loaded.
	for attempt := 0; len(todo) > 0; attempt++ {
		cmds := make([]*redis.Cmd, len(todo))
		fill := func(p redis.Pipeliner) {
			for k, t := range todo {
				cmds[k] = t.script.EvalSha(ctx, p, t.keys, t.args...)
			}
		}
		var werr error // the WAIT's verdict on this round's writes
		if s.replicas == 0 {
			_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { fill(p); return nil })
		} else {
			werr = s.waited(ctx, todo[0].keys[0], fill)
		}
		var again []prepared
		for k, t := range todo {
			res, err := cmds[k].Slice()
			if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") && attempt == 0 {
				again = append(again, t)
				continue
			}
			st := steps[t.i]
			_, errs[t.i] = outcome(st.ID, st.To, []Status{st.From}, res, err)
			if errs[t.i] == nil && werr != nil {
				errs[t.i] = fmt.Errorf("transition job %s to %s: %w", st.ID, st.To, werr)
			}
		}
		for _, script := range []*redis.Script{transitionScript, boundTransitionScript} {
			if len(again) == 0 {
				break
			}
			if err := script.Load(ctx, s.rdb).Err(); err != nil {
				for _, t := range again {
					errs[t.i] = fmt.Errorf("transition job %s: load script: %w", steps[t.i].ID, err)
				}
				return errs
			}
		}
		todo = again
	}
	return errs
}

// ErrorField encodes a job error as the value of the "error" field.
func ErrorField(e Error) string {
	b, _ := json.Marshal(e)
	return string(b)
}
