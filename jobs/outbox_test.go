package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

func hookedJob() *jobs.Job {
	j := newJob()
	j.WebhookURL = "https://example.com/hook"
	return j
}

func outbox(t *testing.T, s *jobs.Store) map[string]jobs.OutboxEvent {
	t.Helper()
	evs, err := s.Outbox(context.Background(), 100)
	require.NoError(t, err)
	out := map[string]jobs.OutboxEvent{}
	for _, ev := range evs {
		require.NoError(t, ev.Err)
		out[ev.ID] = ev
	}
	return out
}

// Each status change a receiver cares about lands in the outbox in the same
// script that makes it, with the job as it was right then.
func TestTransitionRecordsWebhookEvents(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	j, _, err := s.Create(ctx, hookedJob(), "")
	require.NoError(t, err)
	id := j.ID

	att := &jobs.Attempt{Hash: "0x01", Nonce: 7, Kind: jobs.KindOriginal}
	require.NoError(t, s.TransitionIf(ctx, id, jobs.Queued, jobs.Submitted, "signed", jobs.Fields{"nonce", 7, "tx_hash", "0x01"}, att))
	require.Empty(t, outbox(t, s), "submitted fires nothing")
	require.NoError(t, s.TransitionIf(ctx, id, jobs.Submitted, jobs.Mined, "", jobs.Fields{"block_number", 5, "block_hash", "0xb5"}, nil))
	require.NoError(t, s.TransitionIf(ctx, id, jobs.Mined, jobs.Submitted, "reorg", jobs.Fields{"block_number", "", "block_hash", ""}, nil))
	bump := &jobs.Attempt{Hash: "0x02", Nonce: 7, Kind: jobs.KindBump}
	require.NoError(t, s.Update(ctx, id, jobs.Submitted, jobs.Fields{"tx_hash", "0x02"}, bump))
	require.NoError(t, s.TransitionIf(ctx, id, jobs.Submitted, jobs.Mined, "", jobs.Fields{"block_number", 6, "block_hash", "0xb6"}, nil))
	require.NoError(t, s.TransitionIf(ctx, id, jobs.Mined, jobs.Confirmed, "", nil, nil))

	evs := outbox(t, s)
	require.Len(t, evs, 4)
	want := []struct {
		n          string
		from, to   jobs.Status
		block      uint64
		txHash     string
		attempts   int
		historyLen int
	}{
		{".2", jobs.Submitted, jobs.Mined, 5, "0x01", 1, 3},
		{".3", jobs.Mined, jobs.Submitted, 0, "0x01", 1, 4},
		{".4", jobs.Submitted, jobs.Mined, 6, "0x02", 2, 5},
		{".5", jobs.Mined, jobs.Confirmed, 6, "0x02", 2, 6},
	}
	for _, w := range want {
		ev, ok := evs[id+w.n]
		require.True(t, ok, "event %s%s", id, w.n)
		require.Equal(t, id, ev.JobID)
		require.Equal(t, w.from, ev.Change.From)
		require.Equal(t, w.to, ev.Change.To)
		require.Equal(t, w.to, ev.Job.Status, "the snapshot is the job right after the change, not now")
		require.Equal(t, w.txHash, ev.Job.TxHash)
		require.Len(t, ev.Job.Attempts, w.attempts)
		require.Len(t, ev.Job.History, w.historyLen)
		require.Equal(t, "https://example.com/hook", ev.Job.WebhookURL)
		if w.block == 0 {
			require.Nil(t, ev.Job.BlockNumber)
		} else {
			require.Equal(t, w.block, *ev.Job.BlockNumber)
		}
	}
	// Oldest first.
	list, err := s.Outbox(ctx, 2)
	require.NoError(t, err)
	require.Equal(t, []string{id + ".2", id + ".3"}, []string{list[0].ID, list[1].ID})

	// Removing an event removes its snapshot too.
	require.NoError(t, s.RemoveFromOutbox(ctx, id+".2"))
	require.NoError(t, s.RemoveFromOutbox(ctx, id+".2"), "removing twice is fine")
	n, err := rdb.Exists(ctx, s.JobKey(id)+":event:2").Result()
	require.NoError(t, err)
	require.Zero(t, n)
	require.Len(t, outbox(t, s), 3)
}

func TestOnlyJobsWithAWebhookFireEvents(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	plain, _, err := s.Create(ctx, newJob(), "")
	require.NoError(t, err)
	require.NoError(t, s.TransitionIf(ctx, plain.ID, jobs.Queued, jobs.Failed, "", nil, nil))
	require.Empty(t, outbox(t, s))

	// Straight from queued: failed (at estimate) and cancelled fire too.
	failed, _, err := s.Create(ctx, hookedJob(), "")
	require.NoError(t, err)
	require.NoError(t, s.TransitionIf(ctx, failed.ID, jobs.Queued, jobs.Failed, "reverted at estimate", jobs.Fields{"error", jobs.ErrorField(jobs.Error{Code: jobs.ErrCodeRevertedAtEstimate, Message: "boom"})}, nil))
	cancelled, _, err := s.Create(ctx, hookedJob(), "")
	require.NoError(t, err)
	require.NoError(t, s.TransitionIf(ctx, cancelled.ID, jobs.Queued, jobs.Cancelled, "cancelled by request", nil, nil))
	// A refused transition fires nothing.
	require.Error(t, s.TransitionIf(ctx, cancelled.ID, jobs.Queued, jobs.Cancelled, "", nil, nil))

	evs := outbox(t, s)
	require.Len(t, evs, 2)
	require.Equal(t, jobs.Failed, evs[failed.ID+".1"].Job.Status)
	require.Equal(t, "boom", evs[failed.ID+".1"].Job.Error.Message)
	require.Equal(t, jobs.Cancelled, evs[cancelled.ID+".1"].Job.Status)
}

// An event whose snapshot is gone was handed over by another dispatcher; a
// corrupt entry says so instead of blocking the outbox.
func TestOutboxOddEntries(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	j, _, err := s.Create(ctx, hookedJob(), "")
	require.NoError(t, err)
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Cancelled, "", nil, nil))
	require.NoError(t, rdb.Del(ctx, s.JobKey(j.ID)+":event:1").Err())
	require.NoError(t, rdb.ZAdd(ctx, "test:webhooks:outbox", redisZ(1, "no-index")).Err())
	require.NoError(t, rdb.ZAdd(ctx, "test:webhooks:outbox", redisZ(2, "x.3")).Err())
	require.NoError(t, rdb.HSet(ctx, "test:job:{x}:event:3", "status", "mined", "nonce", "seven").Err())

	evs, err := s.Outbox(ctx, 10)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	byID := map[string]jobs.OutboxEvent{}
	for _, ev := range evs {
		byID[ev.ID] = ev
	}
	require.Nil(t, byID[j.ID+".1"].Job)
	require.NoError(t, byID[j.ID+".1"].Err)
	require.Error(t, byID["no-index"].Err)
	require.ErrorContains(t, byID["x.3"].Err, "field nonce")
	for id := range byID {
		require.NoError(t, s.RemoveFromOutbox(ctx, id))
	}
	n, err := s.OutboxLen(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestSetWebhookState(t *testing.T) {
	t.Parallel()
	s, rdb := setup(t)
	ctx := context.Background()
	j, _, err := s.Create(ctx, hookedJob(), "")
	require.NoError(t, err)
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Nil(t, got.Webhook, "no attempt yet")

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, s.SetWebhookState(ctx, j.ID, jobs.WebhookState{LastEvent: j.ID + ".1", LastType: "job.mined", LastStatus: jobs.WebhookFailed, LastError: "receiver answered 500", LastAttemptAt: at}))
	require.NoError(t, s.SetWebhookState(ctx, j.ID, jobs.WebhookState{LastEvent: j.ID + ".1", LastType: "job.mined", LastStatus: jobs.WebhookDelivered, LastAttemptAt: at.Add(time.Second), Deliveries: 99}))
	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, &jobs.WebhookState{Deliveries: 1, Failures: 1, LastEvent: j.ID + ".1", LastType: "job.mined", LastStatus: jobs.WebhookDelivered, LastAttemptAt: at.Add(time.Second)}, got.Webhook)
	require.Equal(t, jobs.Queued, got.Status, "not a transition")
	b, err := json.Marshal(got)
	require.NoError(t, err)
	require.Contains(t, string(b), `"webhook":{"deliveries":1,"failures":1,`)
	require.Contains(t, string(b), `"webhook_url":"https://example.com/hook"`)

	// No record is made up for a job that does not exist.
	missing := jobs.NewID()
	require.ErrorIs(t, s.SetWebhookState(ctx, missing, jobs.WebhookState{LastStatus: jobs.WebhookDelivered}), jobs.ErrNotFound)
	n, err := rdb.Exists(ctx, s.JobKey(missing)).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
