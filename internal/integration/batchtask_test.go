package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/worker"
)

// Issue 15: the jobs the API accepts together reach the workers as one
// Asynq task. A job of that task that must wait (its signer cannot pay for
// it) gets a task of its own, and its neighbours go through without it:
// the batch task is done, not failed or retried, and every other job is
// confirmed once while the dear one waits. Funded, it is confirmed once.
func TestABatchTaskDoesNotHoldItsJobsTogether(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--block-time", "1"}, noWorkerRun: true, worker: func(c *worker.Config) {
		c.SweepAfter = 10 * time.Minute // only the batch's hand-off can give a job a task of its own
	}})
	s.anvil.RPC(t, "anvil_setBalance", s.signer, hexutil.EncodeBig(ether(3)))
	payee := common.HexToAddress("0x00000000000000000000000000000000000a11ce")
	var reqs []string
	for i := range 8 {
		if i == 5 {
			reqs = append(reqs, fmt.Sprintf(`{"to":%q,"data":"0x","value":"%s"}`, payee, ether(12)))
			continue
		}
		reqs = append(reqs, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, s.counter))
	}
	r := s.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+strings.Join(reqs, ",")+`]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	var out struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &out))
	require.Len(t, out.Jobs, 8)
	var ids []string
	for _, j := range out.Jobs {
		ids = append(ids, j.ID)
	}
	dear := ids[5]

	// The API's tasks carry the jobs in batches: fewer tasks than jobs,
	// and every job in exactly one.
	insp := asynq.NewInspectorFromRedisClient(s.rdb)
	var pending []*asynq.TaskInfo
	require.Eventually(t, func() bool {
		var err error
		pending, err = insp.ListPendingTasks(tasks.QueueSend)
		if err != nil {
			return false
		}
		n := 0
		for _, ti := range pending {
			p, err := tasks.ParseSendPayload(ti.Payload)
			require.NoError(t, err)
			n += len(p.IDs())
		}
		return n == len(ids)
	}, 5*time.Second, 10*time.Millisecond, "every job's id is on the queue")
	require.Less(t, len(pending), len(ids), "jobs accepted together share tasks")
	var carried []string
	for _, ti := range pending {
		p, err := tasks.ParseSendPayload(ti.Payload)
		require.NoError(t, err)
		carried = append(carried, p.IDs()...)
	}
	sort.Strings(carried)
	want := append([]string(nil), ids...)
	sort.Strings(want)
	require.Equal(t, want, carried)

	s.runWorker()
	for _, id := range ids {
		if id != dear {
			s.wait(id, jobs.Confirmed)
		}
	}
	require.Equal(t, uint64(7), s.count())
	j, err := s.store.Get(t.Context(), dear)
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, j.Status)
	require.True(t, strings.HasPrefix(j.Warning, jobs.WarnInsufficientFunds+": "), j.Warning)
	own, err := insp.GetTaskInfo(tasks.QueueSend, dear)
	require.NoError(t, err, "the dear job has a task of its own")
	require.Contains(t, []asynq.TaskState{asynq.TaskStateScheduled, asynq.TaskStatePending, asynq.TaskStateActive, asynq.TaskStateRetry}, own.State)
	retrying, err := insp.ListRetryTasks(tasks.QueueSend)
	require.NoError(t, err)
	for _, ti := range retrying {
		p, err := tasks.ParseSendPayload(ti.Payload)
		require.NoError(t, err)
		require.Empty(t, p.JobIDs, "no batch task failed: %s", ti.ID)
	}

	s.anvil.RPC(t, "anvil_setBalance", s.signer, hexutil.EncodeBig(ether(100)))
	s.wait(dear, jobs.Confirmed)
	got, err := s.node.BalanceAt(t.Context(), payee, nil)
	require.NoError(t, err)
	require.Equal(t, ether(12), got, "the dear job paid once")
	require.Equal(t, uint64(7), s.count(), "each call once")
}
