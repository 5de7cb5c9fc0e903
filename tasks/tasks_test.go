package tasks

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSendTaskRoundTrip(t *testing.T) {
	t.Parallel()
	task, opts, err := NewSendTask("job-1")
	require.NoError(t, err)
	require.Equal(t, TypeSend, task.Type())
	require.NotEmpty(t, opts)
	p, err := ParseSendPayload(task.Payload())
	require.NoError(t, err)
	require.Equal(t, "job-1", p.JobID)

	_, _, err = NewSendTask("")
	require.Error(t, err)
	_, err = ParseSendPayload([]byte(`{}`))
	require.Error(t, err)
	_, err = ParseSendPayload([]byte(`nope`))
	require.Error(t, err)
}
