// Package tasks names relayq's Asynq task types and builds their payloads.
// It does no I/O: the API enqueues what it builds and the worker decodes it.
package tasks

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// Task type names.
const (
	// TypeSend signs (once) and broadcasts the transaction of one job.
	TypeSend = "tx:send"
)

// QueueSend is the Asynq queue that carries send tasks.
const QueueSend = "relayq"

// SendMaxRetry bounds how often a send task is retried. Backoff is capped
// (see worker.RetryDelay), so this is hours of trying, not seconds; the job
// is durable in Redis either way and the sweeper can enqueue it again.
const SendMaxRetry = 200

// SendPayload is the payload of a TypeSend task.
type SendPayload struct {
	JobID string `json:"job_id"`
}

// NewSendTask builds the send task of a job. The job id is also the Asynq
// TaskID, so enqueueing it twice is refused by Asynq (ErrTaskIDConflict),
// which the caller treats as "already queued".
func NewSendTask(jobID string) (*asynq.Task, []asynq.Option, error) {
	if jobID == "" {
		return nil, nil, fmt.Errorf("new send task: empty job id")
	}
	b, err := json.Marshal(SendPayload{JobID: jobID})
	if err != nil {
		return nil, nil, fmt.Errorf("new send task: %w", err)
	}
	opts := []asynq.Option{
		asynq.TaskID(jobID),
		asynq.Queue(QueueSend),
		asynq.MaxRetry(SendMaxRetry),
		asynq.Timeout(2 * time.Minute),
	}
	return asynq.NewTask(TypeSend, b), opts, nil
}

// ParseSendPayload decodes the payload of a TypeSend task.
func ParseSendPayload(b []byte) (SendPayload, error) {
	var p SendPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("parse send payload: %w", err)
	}
	if p.JobID == "" {
		return p, fmt.Errorf("parse send payload: no job id")
	}
	return p, nil
}
