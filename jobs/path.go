package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// pathScript moves a job through several statuses in one atomic step, as
// that many transitionScript calls would one after another: each change
// writes its fields and its history entry, and a change to a status that
// fires a webhook records its event with a snapshot of the job as it was
// right after that change. The status indexes move once, from the first
// status to the last. The tracker uses it when one block both mines a job
// and decides it (confirmations 1): one script instead of two, and one
// index move instead of two.
//
// KEYS as transitionScript. ARGV[1] job id, ARGV[2] the statuses the first
// change starts from (" submitted "), ARGV[3] status index key prefix,
// ARGV[4] time (RFC 3339), ARGV[5] time in ms, ARGV[6] webhook statuses,
// then per change: its status, its note as a JSON string, its number of
// field/value pairs and those pairs.
//
// Returns as transitionScript: {1, first status}, {0, current status} or
// {-1, ""}.
var pathScript = redis.NewScript(recordEventLua + `
local cur = redis.call("HGET", KEYS[1], "status")
if not cur then return {-1, ""} end
if cur == "" or not string.find(ARGV[2], " " .. cur .. " ", 1, true) then return {0, cur} end
local first = cur
local url
local i = 7
while i <= #ARGV do
  local to, note, nf = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local fv = {"status", to, "updated_at", ARGV[4]}
  for k = i + 3, i + 2 + 2 * nf do fv[#fv + 1] = ARGV[k] end
  redis.call("HSET", KEYS[1], unpack(fv))
  local n = redis.call("RPUSH", KEYS[2], '{"from":"' .. cur .. '","to":"' .. to .. '","at":"' .. ARGV[4] .. '","note":' .. note .. '}')
  if string.find(ARGV[6], " " .. to .. " ", 1, true) then
    if url == nil then url = redis.call("HGET", KEYS[1], "webhook_url") or "" end
    if url ~= "" then recordEvent(n, ARGV[5]) end
  end
  cur = to
  i = i + 3 + 2 * nf
end
if cur ~= first then
  redis.call("ZREM", ARGV[3] .. first, ARGV[1])
  redis.call("ZADD", ARGV[3] .. cur, 0, ARGV[1])
  local owner = redis.call("HGET", KEYS[1], "api_key")
  if owner and owner ~= "" then
    redis.call("ZREM", ARGV[3] .. first .. ":key:" .. owner, ARGV[1])
    redis.call("ZADD", ARGV[3] .. cur .. ":key:" .. owner, 0, ARGV[1])
  end
end
return {1, first}
`)

// PathStep is one change of TransitionPath.
type PathStep struct {
	To     Status
	Note   string
	Fields Fields
}

// TransitionPath moves job id from status from through each step's status
// in turn, atomically: either the job was in from and every change is
// written (each with its history entry, fields and webhook event, as
// TransitionIf would), or nothing is. Every change must be one
// CanTransition allows. It answers as TransitionIf does.
func (s *Store) TransitionPath(ctx context.Context, id string, from Status, steps []PathStep) error {
	if len(steps) == 0 {
		return fmt.Errorf("transition job %s: no steps", id)
	}
	prev := from
	for _, st := range steps {
		if !CanTransition(prev, st.To) {
			return fmt.Errorf("transition job %s: %s → %s is not allowed", id, prev, st.To)
		}
		prev = st.To
	}
	now := s.now().UTC()
	args := []any{id, " " + string(from) + " ", s.indexPrefix(), now.Format(time.RFC3339Nano), now.UnixMilli(), webhookStatuses}
	for _, st := range steps {
		if len(st.Fields)%2 != 0 {
			return fmt.Errorf("transition job %s: odd number of field arguments", id)
		}
		note, err := json.Marshal(st.Note)
		if err != nil {
			return fmt.Errorf("transition job %s: %w", id, err)
		}
		args = append(args, string(st.To), string(note), len(st.Fields)/2)
		args = append(args, st.Fields...)
	}
	keys := []string{s.jobKey(id), s.historyKey(id), s.attemptsKey(id), s.outboxKey()}
	res, werr, err := s.runScript(ctx, pathScript, keys, args...)
	last := steps[len(steps)-1].To
	if _, err := outcome(id, last, []Status{from}, res, err); err != nil {
		return err
	}
	if werr != nil {
		return fmt.Errorf("transition job %s to %s: %w", id, last, werr)
	}
	return nil
}
