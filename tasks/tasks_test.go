package tasks

import (
	"testing"

	"github.com/hibiken/asynq"

	"github.com/stretchr/testify/require"
)

func TestSendTaskRoundTrip(t *testing.T) {
	t.Parallel()
	task, opts, err := NewSendTask("", "job-1")
	require.NoError(t, err)
	require.Equal(t, TypeSend, task.Type())
	require.NotEmpty(t, opts)
	p, err := ParseSendPayload(task.Payload())
	require.NoError(t, err)
	require.Equal(t, "job-1", p.JobID)

	_, _, err = NewSendTask("", "")
	require.Error(t, err)
	_, err = ParseSendPayload([]byte(`{}`))
	require.Error(t, err)
	_, err = ParseSendPayload([]byte(`nope`))
	require.Error(t, err)
}

func TestWebhookTaskRoundTrip(t *testing.T) {
	t.Parallel()
	p := WebhookPayload{EventID: "job-1.2", JobID: "job-1", Type: "job.mined", URL: "https://example.com/hook", Body: []byte(`{"id":"job-1.2"}`)}
	task, opts, err := NewWebhookTask("", p)
	require.NoError(t, err)
	require.Equal(t, TypeWebhookDeliver, task.Type())
	require.NotEmpty(t, opts)
	got, err := ParseWebhookPayload(task.Payload())
	require.NoError(t, err)
	require.Equal(t, p, got, "the body survives byte for byte")

	for _, bad := range []WebhookPayload{
		{JobID: "j", URL: "u", Body: []byte("{}")},
		{EventID: "e", URL: "u", Body: []byte("{}")},
		{EventID: "e", JobID: "j", Body: []byte("{}")},
		{EventID: "e", JobID: "j", URL: "u"},
	} {
		_, _, err := NewWebhookTask("", bad)
		require.Error(t, err, "%+v", bad)
	}
	_, err = ParseWebhookPayload([]byte(`{"event_id":"e"}`))
	require.Error(t, err)
	_, err = ParseWebhookPayload([]byte(`nope`))
	require.Error(t, err)
}

// Each chain of a relayq.yaml has its own queues, so a worker of one chain
// never takes another chain's task; the environment's chain keeps the
// historical names.
func TestChainQueuesAreApart(t *testing.T) {
	t.Parallel()
	require.Equal(t, DefaultQueues, Queues{}.OrDefault())
	a, b := ChainQueues("relayq:", 1), ChainQueues("relayq:", 10)
	require.Equal(t, Queues{Send: "relayq-1", Webhooks: "relayq-webhooks-1"}, a)
	require.Equal(t, a, ChainQueues("{relayq}:", 1), "the same names on a Cluster")
	require.Equal(t, Queues{Send: "staging-1", Webhooks: "staging-webhooks-1"}, ChainQueues("staging:", 1), "another deployment on the same Redis")
	for _, q := range []string{a.Send, a.Webhooks, b.Send, b.Webhooks} {
		require.NotContains(t, []string{QueueSend, QueueWebhooks}, q)
	}
	require.NotEqual(t, a, b)

	task, opts, err := NewSendTask(a.Send, "job-1")
	require.NoError(t, err)
	require.Equal(t, TypeSend, task.Type())
	require.Contains(t, opts, asynq.Queue("relayq-1"))
}

// A batch task carries its jobs' ids; a batch of one is a job's own task;
// a payload with neither, both, an empty id or too many ids is refused.
func TestSendBatchTask(t *testing.T) {
	task, opts, err := NewSendBatchTask("", []string{"a", "b", "c"})
	require.NoError(t, err)
	p, err := ParseSendPayload(task.Payload())
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c"}, p.IDs())
	require.Empty(t, p.JobID)
	require.Contains(t, opts, asynq.TaskID("batch:a"))

	one, opts, err := NewSendBatchTask("q", []string{"a"})
	require.NoError(t, err)
	p, err = ParseSendPayload(one.Payload())
	require.NoError(t, err)
	require.Equal(t, "a", p.JobID, "a batch of one is the job's own task")
	require.Contains(t, opts, asynq.TaskID("a"))

	for _, ids := range [][]string{nil, {"a", ""}, make([]string, MaxSendBatch+1)} {
		_, _, err := NewSendBatchTask("", ids)
		require.Error(t, err, "%d ids", len(ids))
	}
	for _, bad := range []string{`{"job_id":"a","job_ids":["b"]}`, `{"job_ids":[]}`, `{"job_ids":["a",""]}`} {
		_, err := ParseSendPayload([]byte(bad))
		require.Error(t, err, bad)
	}
}
