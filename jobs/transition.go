package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// transitionScript moves a job to a new status if it is in one of the
// allowed ones, writing fields, history and an attempt in the same step.
//
// KEYS[1] job hash, KEYS[2] history list, KEYS[3] attempts list.
// ARGV[1] job id, ARGV[2] new status, ARGV[3] allowed current statuses
// (each between spaces: " queued submitted "), ARGV[4] status index key
// prefix, ARGV[5] time (RFC 3339), ARGV[6] note as a JSON string, ARGV[7]
// attempt JSON or "", ARGV[8..] field/value pairs.
//
// Returns {1, previous status} on success, {0, current status} when the job
// is in a status the transition does not start from, {-1, ""} when there is
// no such job.
var transitionScript = redis.NewScript(`
local cur = redis.call("HGET", KEYS[1], "status")
if not cur then return {-1, ""} end
if cur == "" or not string.find(ARGV[3], " " .. cur .. " ", 1, true) then return {0, cur} end
local fv = {"status", ARGV[2], "updated_at", ARGV[5]}
for i = 8, #ARGV do fv[#fv+1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fv))
if cur ~= ARGV[2] then
  redis.call("RPUSH", KEYS[2], '{"from":"' .. cur .. '","to":"' .. ARGV[2] .. '","at":"' .. ARGV[5] .. '","note":' .. ARGV[6] .. '}')
  redis.call("ZREM", ARGV[4] .. cur, ARGV[1])
  redis.call("ZADD", ARGV[4] .. ARGV[2], 0, ARGV[1])
end
if ARGV[7] ~= "" then redis.call("RPUSH", KEYS[3], ARGV[7]) end
return {1, cur}
`)

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
	if len(from) == 0 {
		return "", fmt.Errorf("transition job %s: nothing moves to %q", id, to)
	}
	if len(fields)%2 != 0 {
		return "", fmt.Errorf("transition job %s: odd number of fields", id)
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
			return "", fmt.Errorf("transition job %s: %w", id, err)
		}
		att = string(b)
	}
	args := []any{id, string(to), allowed.String(), s.indexPrefix(), s.now().UTC().Format(time.RFC3339Nano), string(noteJSON), att}
	args = append(args, fields...)
	keys := []string{s.jobKey(id), s.historyKey(id), s.attemptsKey(id)}
	res, err := transitionScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return "", fmt.Errorf("transition job %s to %s: %w", id, to, err)
	}
	cur := Status(res[1].(string))
	switch res[0].(int64) {
	case 1:
		return cur, nil
	case 0:
		return cur, &BadTransitionError{ID: id, Current: cur, Wanted: to, Expected: from}
	default:
		return "", fmt.Errorf("transition job %s: %w", id, ErrNotFound)
	}
}

// ErrorField encodes a job error as the value of the "error" field.
func ErrorField(e Error) string {
	b, _ := json.Marshal(e)
	return string(b)
}
