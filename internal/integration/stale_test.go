package integration

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
)

// A send task whose job the worker cannot read (a stale read while Redis
// fails over: the Sentinel test met one) is retried, not dropped, and never
// fails the job: once the job can be read it runs to confirmed. The fault
// is injected by enqueueing the task before its job exists.
func TestSendTaskBeforeItsJobIsVisible(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	id := jobs.NewID()
	task, opts, err := tasks.NewSendTask("", id)
	require.NoError(t, err)
	client := asynq.NewClientFromRedisClient(s.rdb)
	defer client.Close()
	_, err = client.EnqueueContext(ctx, task, opts...)
	require.NoError(t, err)

	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	require.Eventually(t, func() bool {
		info, err := insp.GetTaskInfo(tasks.QueueSend, id)
		return err == nil && info.Retried >= 1
	}, 30*time.Second, 20*time.Millisecond, "the task is retried, not dropped")
	info, err := insp.GetTaskInfo(tasks.QueueSend, id)
	require.NoError(t, err)
	require.Contains(t, info.LastErr, "job not found")

	_, created, err := s.store.Create(ctx, &jobs.Job{ID: id, ChainID: devchain.ChainID, To: s.counter.Hex(),
		Function: "increment()", Data: "0xd09de08a", Value: "0", Confirmations: 1, BodyHash: "h"}, "")
	require.NoError(t, err)
	require.True(t, created)
	j := s.wait(id, jobs.Confirmed)
	require.NotNil(t, j.Nonce)
	require.Equal(t, uint64(1), s.count(), "executed once")
}
