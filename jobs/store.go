package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Sentinel errors.
var (
	ErrNotFound            = errors.New("job not found")
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
)

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// Store keeps jobs in Redis under a key prefix.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time

	// replicas (WithReplicas) is how many replicas must acknowledge a
	// write, within waitTimeout; 0: writes do not wait.
	replicas    int
	waitTimeout time.Duration

	// archived (WithArchived) loads a job that left Redis for the
	// archive: an Idempotency-Key outlives the hot window.
	archived func(ctx context.Context, id string) (*Job, error)
}

// WithArchived gives the store the archive's loader, so that a request
// repeating the Idempotency-Key of a job already archived is answered
// with that job rather than an error.
func WithArchived(get func(ctx context.Context, id string) (*Job, error)) Option {
	return func(s *Store) { s.archived = get }
}

// getArchived loads job id from the archive, if the store has one.
func (s *Store) getArchived(ctx context.Context, id string) (*Job, error) {
	if s.archived == nil {
		return nil, fmt.Errorf("get job %s: %w", id, ErrNotFound)
	}
	return s.archived(ctx, id)
}

// Option configures a Store.
type Option func(*Store)

// NewStore returns a Store on rdb whose keys start with prefix ("relayq:").
// On a Redis Cluster the prefix must carry the deployment's one hash tag
// ("{relayq}:", see internal/redisconn) so that every script stays in one
// slot.
func NewStore(rdb redis.UniversalClient, prefix string, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: prefix, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Keys. A job's own keys share the hash tag {<id>} so its scripts stay in
// one Cluster slot; the status indexes are separate keys.
func (s *Store) jobKey(id string) string { return s.prefix + "job:{" + id + "}" }

// JobKey is the Redis key of a job's record, for scripts of other packages
// that must check the job atomically.
func (s *Store) JobKey(id string) string { return s.jobKey(id) }

func (s *Store) historyKey(id string) string  { return s.prefix + "job:{" + id + "}:history" }
func (s *Store) attemptsKey(id string) string { return s.prefix + "job:{" + id + "}:attempts" }
func (s *Store) indexPrefix() string          { return s.prefix + "jobs:status:" }
func (s *Store) statusKey(st Status) string   { return s.indexPrefix() + string(st) }
func (s *Store) allKey() string               { return s.prefix + "jobs:all" }
func (s *Store) idemKey(k string) string      { return s.prefix + "idem:" + k }
func (s *Store) outboxKey() string            { return s.prefix + "webhooks:outbox" }
func (s *Store) probeKey() string             { return s.prefix + "replication:probe" }

// ownerStatusKey and ownerAllKey are the indexes of one API key's jobs
// (its name; names have no colons), kept beside the global ones so that a
// key's listing pages through its own jobs only. transitionLua builds the
// status one itself from indexPrefix.
func (s *Store) ownerStatusKey(owner string, st Status) string {
	return s.statusKey(st) + ":key:" + owner
}
func (s *Store) ownerAllKey(owner string) string { return s.allKey() + ":key:" + owner }

// createIndexes are the indexes a new job goes in: the queued and all-jobs
// indexes, and its API key's (the global ones again when it has none, so
// that the scripts add to four keys either way).
func (s *Store) createIndexes(owner string) []string {
	if owner == "" {
		return []string{s.statusKey(Queued), s.allKey(), s.statusKey(Queued), s.allKey()}
	}
	return []string{s.statusKey(Queued), s.allKey(), s.ownerStatusKey(owner, Queued), s.ownerAllKey(owner)}
}

// NewID returns a new job id: a UUIDv7, so ids sort by creation time and the
// indexes can page by id alone.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// createScript writes a new job unless its idempotency key is taken.
//
// KEYS[1] job hash, KEYS[2] history list, KEYS[3] idempotency key,
// KEYS[4] queued index, KEYS[5] all-jobs index, KEYS[6] and KEYS[7] the
// queued and all-jobs indexes of the job's API key (KEYS[4] and KEYS[5]
// again for a job without one).
// ARGV[1] job id, ARGV[2] "id\nbody hash" for the idempotency key ("" when
// the request had no key), ARGV[3] idempotency TTL in seconds, ARGV[4]
// history entry (JSON), ARGV[5..] field/value pairs of the job hash.
//
// Returns {1, id} when created, {0, "<id>\n<body hash>"} when the key was
// already used.
var createScript = redis.NewScript(`
if ARGV[2] ~= "" then
  local prev = redis.call("GET", KEYS[3])
  if prev then return {0, prev} end
  redis.call("SET", KEYS[3], ARGV[2], "EX", ARGV[3])
end
local fv = {}
for i = 5, #ARGV do fv[#fv+1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fv))
redis.call("RPUSH", KEYS[2], ARGV[4])
redis.call("ZADD", KEYS[4], 0, ARGV[1])
redis.call("ZADD", KEYS[5], 0, ARGV[1])
redis.call("ZADD", KEYS[6], 0, ARGV[1])
redis.call("ZADD", KEYS[7], 0, ARGV[1])
return {1, ARGV[1]}
`)

// Create writes j as a new queued job. With a non-empty idemKey it is
// idempotent: when the key was used before, Create returns the earlier job
// and created=false, or ErrIdempotencyMismatch (with that job) when the
// earlier request's body hash differs from j.BodyHash. With WithReplicas,
// a job the replicas did not acknowledge in time comes back with an error
// wrapping ErrNotReplicated (and created=true when this call wrote it).
func (s *Store) Create(ctx context.Context, j *Job, idemKey string) (job *Job, created bool, err error) {
	now := s.now().UTC()
	if j.ID == "" {
		j.ID = NewID()
	}
	j.Status, j.CreatedAt, j.UpdatedAt = Queued, now, now
	j.History = []Change{{To: Queued, At: now}}
	j.Attempts = []Attempt{}
	hist, _ := json.Marshal(j.History[0])
	idem := ""
	if idemKey != "" {
		idem = j.ID + "\n" + j.BodyHash
	}
	args := []any{j.ID, idem, int(IdempotencyTTL / time.Second), string(hist)}
	args = append(args, s.fields(j)...)
	keys := append([]string{s.jobKey(j.ID), s.historyKey(j.ID), s.idemKey(idemKey)}, s.createIndexes(j.APIKey)...)
	res, werr, err := s.runScript(ctx, createScript, keys, args...)
	if err != nil {
		return nil, false, fmt.Errorf("create job: %w", err)
	}
	if res[0].(int64) == 1 {
		if werr != nil {
			// The job is on the primary; a retry with the same
			// idempotency key finds it (and waits for it again).
			return j, true, fmt.Errorf("create job %s: %w", j.ID, werr)
		}
		return j, true, nil
	}
	prevID, prevHash, _ := strings.Cut(res[1].(string), "\n")
	prev, err := s.Get(ctx, prevID)
	if errors.Is(err, ErrNotFound) {
		// Archived: durable in PostgreSQL, no replica to wait for.
		if prev, err = s.getArchived(ctx, prevID); err == nil {
			if prevHash != j.BodyHash {
				return prev, false, ErrIdempotencyMismatch
			}
			return prev, false, nil
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("create job: load job of idempotency key: %w", err)
	}
	if prevHash != j.BodyHash {
		return prev, false, ErrIdempotencyMismatch
	}
	// The first request may have been answered ErrNotReplicated: this one
	// must not vouch for the job before replicas hold it either.
	if err := s.Replicated(ctx, prev.ID, "", ""); err != nil {
		return prev, false, fmt.Errorf("create job: %w", err)
	}
	return prev, false, nil
}

// fields flattens the parts of j that are set at creation.
func (s *Store) fields(j *Job) []any {
	f := []any{
		"id", j.ID,
		"status", string(j.Status),
		"chain_id", j.ChainID,
		"api_key", j.APIKey,
		"from", j.From,
		"to", j.To,
		"function", j.Function,
		"args", string(j.Args),
		"data", j.Data,
		"value", j.Value,
		"gas_limit", j.GasLimit,
		"confirmations", j.Confirmations,
		"metadata", string(j.Metadata),
		"body_hash", j.BodyHash,
		"created_at", j.CreatedAt.Format(time.RFC3339Nano),
		"updated_at", j.UpdatedAt.Format(time.RFC3339Nano),
	}
	if j.WebhookURL != "" {
		f = append(f, "webhook_url", j.WebhookURL)
	}
	if j.Deadline != nil {
		f = append(f, "deadline", j.Deadline.UTC().Format(time.RFC3339Nano))
	}
	return f
}

// Get loads one job with its attempts and history.
func (s *Store) Get(ctx context.Context, id string) (*Job, error) {
	js, err := s.GetMany(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if js[0] == nil {
		return nil, fmt.Errorf("get job %s: %w", id, ErrNotFound)
	}
	return js[0], nil
}

// GetMany loads jobs in one pipeline; a missing job is a nil entry.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*Job, error) {
	pipe := s.rdb.Pipeline()
	type cmds struct {
		h    *redis.MapStringStringCmd
		hist *redis.StringSliceCmd
		att  *redis.StringSliceCmd
	}
	cs := make([]cmds, len(ids))
	for i, id := range ids {
		cs[i] = cmds{
			h:    pipe.HGetAll(ctx, s.jobKey(id)),
			hist: pipe.LRange(ctx, s.historyKey(id), 0, -1),
			att:  pipe.LRange(ctx, s.attemptsKey(id), 0, -1),
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("load jobs: %w", err)
	}
	out := make([]*Job, len(ids))
	for i, c := range cs {
		h := c.h.Val()
		if len(h) == 0 {
			continue
		}
		j, err := decode(h, c.hist.Val(), c.att.Val())
		if err != nil {
			return nil, fmt.Errorf("load job %s: %w", ids[i], err)
		}
		out[i] = j
	}
	return out, nil
}

// Versions reads each job's version in one pipeline: its updated_at,
// which every write of its status, fields, attempts or history renews
// (transitionScript), so an unchanged version means an unchanged record
// (but for its webhook delivery state and its "from" before a nonce is
// bound). A missing job's version is "".
func (s *Store) Versions(ctx context.Context, ids []string) ([]string, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, s.jobKey(id), "updated_at")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("job versions: %w", err)
	}
	out := make([]string, len(ids))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// Version is a loaded job's version (see Versions).
func (j *Job) Version() string { return j.UpdatedAt.Format(time.RFC3339Nano) }

func decode(h map[string]string, hist, att []string) (*Job, error) {
	j := &Job{
		ID:                h["id"],
		Status:            Status(h["status"]),
		APIKey:            h["api_key"],
		From:              h["from"],
		To:                h["to"],
		ContractAddress:   h["contract_address"],
		Function:          h["function"],
		Data:              h["data"],
		Value:             h["value"],
		TxHash:            h["tx_hash"],
		BlockHash:         h["block_hash"],
		EffectiveGasPrice: h["effective_gas_price"],
		Raw:               h["raw"],
		BodyHash:          h["body_hash"],
		CancelRequested:   h["cancel_requested"] == "1",
		Warning:           h["warning"],
		WebhookURL:        h["webhook_url"],
		Attempts:          []Attempt{},
		History:           []Change{},
	}
	if a := h["args"]; a != "" {
		j.Args = json.RawMessage(a)
	}
	if m := h["metadata"]; m != "" {
		j.Metadata = json.RawMessage(m)
	}
	var numErr error
	u := func(k string) uint64 {
		v, e := strconv.ParseUint(h[k], 10, 64)
		if e != nil && h[k] != "" {
			numErr = fmt.Errorf("field %s: %w", k, e)
		}
		return v
	}
	opt := func(k string) *uint64 {
		if h[k] == "" {
			return nil
		}
		v := u(k)
		return &v
	}
	j.ChainID, j.GasLimit, j.Gas, j.Confirmations = u("chain_id"), u("gas_limit"), u("gas"), u("confirmations")
	j.Nonce, j.BlockNumber, j.GasUsed, j.ReceiptStatus = opt("nonce"), opt("block_number"), opt("gas_used"), opt("receipt_status")
	if numErr != nil {
		return nil, numErr
	}
	j.predictContract()
	if e := h["error"]; e != "" {
		j.Error = &Error{}
		if err2 := json.Unmarshal([]byte(e), j.Error); err2 != nil {
			return nil, fmt.Errorf("field error: %w", err2)
		}
	}
	if e := h["abandon"]; e != "" {
		j.Abandon = &Error{}
		if err2 := json.Unmarshal([]byte(e), j.Abandon); err2 != nil {
			return nil, fmt.Errorf("field abandon: %w", err2)
		}
	}
	if w := h["webhook"]; w != "" {
		j.Webhook = &WebhookState{}
		if err2 := json.Unmarshal([]byte(w), j.Webhook); err2 != nil {
			return nil, fmt.Errorf("field webhook: %w", err2)
		}
		j.Webhook.Deliveries, j.Webhook.Failures = int64(u("webhook_deliveries")), int64(u("webhook_failures"))
		if numErr != nil {
			return nil, numErr
		}
	}
	var err error
	if d := h["deadline"]; d != "" {
		t, err := time.Parse(time.RFC3339Nano, d)
		if err != nil {
			return nil, fmt.Errorf("field deadline: %w", err)
		}
		j.Deadline = &t
	}
	if j.CreatedAt, err = time.Parse(time.RFC3339Nano, h["created_at"]); err != nil {
		return nil, fmt.Errorf("field created_at: %w", err)
	}
	if j.UpdatedAt, err = time.Parse(time.RFC3339Nano, h["updated_at"]); err != nil {
		return nil, fmt.Errorf("field updated_at: %w", err)
	}
	for _, s := range hist {
		var c Change
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			return nil, fmt.Errorf("history: %w", err)
		}
		j.History = append(j.History, c)
	}
	for _, s := range att {
		var a Attempt
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			return nil, fmt.Errorf("attempts: %w", err)
		}
		j.Attempts = append(j.Attempts, a)
	}
	return j, nil
}

// predictContract sets the address a deployment will create its contract
// at, from its signer and bound nonce, until a receipt says (markMined
// writes contract_address). Computed on every read rather than stored, so
// it can never disagree with the nonce the job holds now.
func (j *Job) predictContract() {
	if !j.Deployment() || j.ContractAddress != "" || j.BlockNumber != nil || j.Nonce == nil ||
		j.Status == Failed || j.Status == Cancelled || !common.IsHexAddress(j.From) {
		return
	}
	j.ContractAddress = crypto.CreateAddress(common.HexToAddress(j.From), *j.Nonce).Hex()
}

// List returns up to limit jobs, newest first, optionally only those in
// status st, starting after the id cursor (the last id of the previous
// page). next is "" on the last page.
func (s *Store) List(ctx context.Context, st Status, limit int, cursor string) (list []*Job, next string, err error) {
	return s.ListFilter(ctx, Filter{Status: st}, limit, cursor)
}

// ListOwned is List for the jobs of one API key (by name), read from that
// key's own indexes: a page holds limit of its jobs, however many other
// keys' jobs there are.
func (s *Store) ListOwned(ctx context.Context, owner string, st Status, limit int, cursor string) (list []*Job, next string, err error) {
	return s.ListFilter(ctx, Filter{Status: st, Owner: owner}, limit, cursor)
}

// Oldest returns up to limit ids of jobs in status st, oldest first.
func (s *Store) Oldest(ctx context.Context, st Status, limit int) ([]string, error) {
	ids, err := s.rdb.ZRangeByLex(ctx, s.statusKey(st), &redis.ZRangeBy{Min: "-", Max: "+", Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("oldest %s jobs: %w", st, err)
	}
	return ids, nil
}

// Deadlines returns the deadline of each job of ids that has one, in one
// pipelined read of a single field per job (the sweeper looks at many
// queued jobs at a time).
func (s *Store) Deadlines(ctx context.Context, ids []string) (map[string]time.Time, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGet(ctx, s.jobKey(id), "deadline")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read deadlines: %w", err)
	}
	out := make(map[string]time.Time)
	for i, c := range cmds {
		if c.Val() == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, c.Val())
		if err != nil {
			return nil, fmt.Errorf("deadline of job %s: %w", ids[i], err)
		}
		out[ids[i]] = t
	}
	return out, nil
}

// Count returns how many jobs are in status st.
func (s *Store) Count(ctx context.Context, st Status) (int64, error) {
	return s.rdb.ZCard(ctx, s.statusKey(st)).Result()
}

// CreatedAt tells when the job with this id was created, from the id itself.
func CreatedAt(id string) (time.Time, bool) {
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 {
		return time.Time{}, false
	}
	sec, nsec := u.Time().UnixTime()
	return time.Unix(sec, nsec), true
}

// OutboxEvent is a webhook event that a transition recorded in the outbox
// and that has not been handed to the queue yet.
type OutboxEvent struct {
	ID     string // "<job id>.<n>": n is the change's index in the job's history
	JobID  string
	Change Change // the transition that fired the event
	// Job is the job as it was right after the transition (its history
	// ends with Change), or nil when the snapshot is gone: another
	// dispatcher handed the event over already.
	Job *Job
	// Err says the event cannot be read (a corrupt record): retrying will
	// not help.
	Err error
}

// Outbox returns up to limit webhook events from the outbox, oldest first.
func (s *Store) Outbox(ctx context.Context, limit int) ([]OutboxEvent, error) {
	ids, err := s.rdb.ZRange(ctx, s.outboxKey(), 0, int64(limit)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read webhook outbox: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	type cmds struct {
		h         *redis.MapStringStringCmd
		hist, att *redis.StringSliceCmd
	}
	out := make([]OutboxEvent, len(ids))
	cs := make([]cmds, len(ids))
	pipe := s.rdb.Pipeline()
	for i, id := range ids {
		jobID, n, err := parseEventID(id)
		out[i] = OutboxEvent{ID: id, JobID: jobID, Err: err}
		if err != nil {
			continue
		}
		cs[i] = cmds{
			h:    pipe.HGetAll(ctx, s.eventKey(jobID, n)),
			hist: pipe.LRange(ctx, s.historyKey(jobID), 0, int64(n)),
			att:  pipe.LRange(ctx, s.attemptsKey(jobID), 0, -1),
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read webhook outbox: %w", err)
	}
	for i, c := range cs {
		if out[i].Err != nil {
			continue
		}
		h := c.h.Val()
		if len(h) == 0 {
			continue
		}
		att := c.att.Val()
		if n, err := strconv.Atoi(h["event_attempts"]); err == nil && n < len(att) {
			att = att[:n]
		}
		j, err := decode(h, c.hist.Val(), att)
		if err == nil && len(j.History) == 0 {
			err = errors.New("no history")
		}
		if err != nil {
			out[i].Err = fmt.Errorf("webhook event %s: %w", ids[i], err)
			continue
		}
		out[i].Job, out[i].Change = j, j.History[len(j.History)-1]
	}
	return out, nil
}

// RemoveFromOutbox forgets a webhook event and its job snapshot, once the
// event is safely on the queue.
func (s *Store) RemoveFromOutbox(ctx context.Context, eventID string) error {
	jobID, n, err := parseEventID(eventID)
	pipe := s.rdb.TxPipeline()
	pipe.ZRem(ctx, s.outboxKey(), eventID)
	if err == nil {
		pipe.Del(ctx, s.eventKey(jobID, n))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("remove webhook event %s from the outbox: %w", eventID, err)
	}
	return nil
}

// OutboxLen is how many webhook events wait in the outbox.
func (s *Store) OutboxLen(ctx context.Context) (int64, error) {
	return s.rdb.ZCard(ctx, s.outboxKey()).Result()
}

func (s *Store) eventKey(jobID string, n int) string {
	return s.jobKey(jobID) + ":event:" + strconv.Itoa(n)
}

// parseEventID splits "<job id>.<n>".
func parseEventID(id string) (jobID string, n int, err error) {
	i := strings.LastIndexByte(id, '.')
	if i > 0 {
		n, err = strconv.Atoi(id[i+1:])
	}
	if i <= 0 || err != nil || n < 0 {
		return "", 0, fmt.Errorf("webhook event id %q is not <job id>.<n>", id)
	}
	return id[:i], n, nil
}

// webhookStateScript records the outcome of one webhook delivery attempt
// on a job, without touching its status (and without creating a record for
// a job that does not exist).
//
// KEYS[1] job hash. ARGV[1] the last attempt as JSON, ARGV[2] the counter
// field to increment. Returns 1, or 0 when there is no such job.
var webhookStateScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
redis.call("HSET", KEYS[1], "webhook", ARGV[1])
redis.call("HINCRBY", KEYS[1], ARGV[2], 1)
return 1
`)

// SetWebhookState records a webhook delivery attempt on job id: st's
// Last* fields replace the previous attempt's, and the deliveries or the
// failures counter (st's own counters are ignored) goes up by one.
func (s *Store) SetWebhookState(ctx context.Context, id string, st WebhookState) error {
	counter := "webhook_failures"
	if st.LastStatus == WebhookDelivered {
		counter = "webhook_deliveries"
	}
	st.Deliveries, st.Failures = 0, 0
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("set webhook state of job %s: %w", id, err)
	}
	n, err := webhookStateScript.Run(ctx, s.rdb, []string{s.jobKey(id)}, string(b), counter).Int()
	if err != nil {
		return fmt.Errorf("set webhook state of job %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("set webhook state of job %s: %w", id, ErrNotFound)
	}
	return nil
}
