package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated means a write reached the Redis primary but fewer
// replicas than WithReplicas asks for acknowledged it in time. The write
// is not undone: it stands on the primary, and a failover before the
// replicas catch up may lose it. Whoever acts on the write (answering 202,
// broadcasting signed bytes) must not act yet; retrying is safe.
var ErrNotReplicated = errors.New("not acknowledged by enough Redis replicas")

// WithReplicas makes the store's writes wait, with Redis's WAIT on the
// connection that wrote, until n replicas acknowledged them, for at most
// timeout; a write they did not all acknowledge in time answers
// ErrNotReplicated. With Sentinel, n = 1 means a promoted replica holds
// every job the API accepted and every transaction the worker broadcast.
// n = 0 (the default) does not wait.
func WithReplicas(n int, timeout time.Duration) Option {
	return func(s *Store) {
		s.replicas, s.waitTimeout = max(n, 0), timeout
	}
}

// pipeliner is a client that can pipeline: the store's client, or on a
// cluster the client of one node.
type pipeliner interface {
	Pipeline() redis.Pipeliner
}

// waited runs fill's commands in one pipeline, that is on one connection,
// followed by a WAIT for the store's replicas; it returns ErrNotReplicated
// when too few acknowledged. The commands' own results are in their Cmds.
// key names the slot the commands touch: on a cluster the pipeline goes to
// that slot's primary, since only its replicas count.
func (s *Store) waited(ctx context.Context, key string, fill func(p redis.Pipeliner)) error {
	var c pipeliner = s.rdb
	cc, isCluster := s.rdb.(*redis.ClusterClient)
	if isCluster {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return fmt.Errorf("find the primary of %s: %w", key, err)
		}
		c = node
	}
	p := c.Pipeline()
	fill(p)
	wait := p.Do(ctx, "wait", s.replicas, s.waitTimeout.Milliseconds())
	cmds, _ := p.Exec(ctx)
	if isCluster {
		for _, cmd := range cmds {
			// A node client does not follow redirects: after a failover or
			// a resharding, learn the new map; the caller retries.
			if err := cmd.Err(); err != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") || redis.HasErrorPrefix(err, "CLUSTERDOWN")) {
				cc.ReloadState(ctx)
				break
			}
		}
	}
	n, err := wait.Int64()
	if err != nil {
		return fmt.Errorf("wait for %d Redis replicas: %w", s.replicas, err)
	}
	if int(n) < s.replicas {
		return fmt.Errorf("%w: %d of %d within %v", ErrNotReplicated, n, s.replicas, s.waitTimeout)
	}
	return nil
}

// runWaited runs script with a WAIT after it on the same connection (see
// waited), loading the script if the server does not have it (a primary
// that was just promoted has none). cmd holds the script's answer; werr is
// the WAIT's verdict, which only matters when the script wrote something.
// runScript runs a write script and, with WithReplicas, the WAIT after it:
// res and err are the script's answer, werr says the replicas did not
// acknowledge it in time (the write stands on the primary).
func (s *Store) runScript(ctx context.Context, script *redis.Script, keys []string, args ...any) (res []any, werr, err error) {
	if s.replicas == 0 {
		res, err = script.Run(ctx, s.rdb, keys, args...).Slice()
		return res, nil, err
	}
	cmd, werr := s.runWaited(ctx, script, keys, args...)
	res, err = cmd.Slice()
	return res, werr, err
}

func (s *Store) runWaited(ctx context.Context, script *redis.Script, keys []string, args ...any) (cmd *redis.Cmd, werr error) {
	for attempt := 0; ; attempt++ {
		werr = s.waited(ctx, keys[0], func(p redis.Pipeliner) {
			if attempt == 0 {
				cmd = script.EvalSha(ctx, p, keys, args...)
			} else {
				cmd = script.Eval(ctx, p, keys, args...)
			}
		})
		if attempt > 0 || !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			return cmd, werr
		}
	}
}

// probeScript checks a job on the primary and makes a write, so that a
// WAIT after it in the same pipeline tells whether replicas hold the job as
// it was checked (replication is one ordered stream: a replica that has
// the probe has everything the primary wrote before it).
//
// KEYS[1] job hash, KEYS[2] probe counter. ARGV[1] a field of the job ("":
// none), ARGV[2] the value it must have.
// Returns 1, or 0 when the field differs, or -1 when there is no such job.
var probeScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= "" and redis.call("HGET", KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call("INCR", KEYS[2])
return 1
`)

// ErrChanged means a job no longer holds what the caller read from it.
var ErrChanged = errors.New("job changed since it was read")

// Replicated returns nil once the replicas the store waits for hold job
// id, with field (if not "") equal to value: call it before acting on
// something written earlier, perhaps by another process, such as
// broadcasting a persisted raw transaction (field "raw"). It answers
// ErrNotReplicated, ErrChanged or ErrNotFound otherwise. Without
// WithReplicas it returns nil at once.
func (s *Store) Replicated(ctx context.Context, id, field, value string) error {
	if s.replicas == 0 {
		return nil
	}
	cmd, werr := s.runWaited(ctx, probeScript, []string{s.jobKey(id), s.probeKey()}, field, value)
	res, err := cmd.Int64()
	switch {
	case err != nil:
		return fmt.Errorf("check replicas of job %s: %w", id, err)
	case res == -1:
		return fmt.Errorf("check replicas of job %s: %w", id, ErrNotFound)
	case res == 0:
		return fmt.Errorf("check replicas of job %s: %s: %w", id, field, ErrChanged)
	case werr != nil:
		return fmt.Errorf("job %s: %w", id, werr)
	}
	return nil
}
