package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/tasks"
)

// queued counts the distinct job ids the send queue's tasks carry.
func (b *bundle) queued() int {
	b.t.Helper()
	return len(queuedIDs(b.t, asynq.NewInspectorFromRedisClient(b.rdb), tasks.QueueSend))
}

// queuedIDs is the set of job ids the pending and scheduled tasks of queue
// carry (a batch task carries many; a replayed request adds a job's own
// task). The API enqueues new jobs in batches a little after it answers
// (sendq.go), so it waits until the set has held still for 100 ms.
func queuedIDs(t *testing.T, insp *asynq.Inspector, queue string) map[string]bool {
	t.Helper()
	read := func() map[string]bool {
		seen := map[string]bool{}
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListScheduledTasks} {
			ts, err := list(queue, asynq.PageSize(100000))
			if err != nil { // no queue yet: nothing was ever enqueued
				continue
			}
			for _, ti := range ts {
				p, err := tasks.ParseSendPayload(ti.Payload)
				require.NoError(t, err)
				for _, id := range p.IDs() {
					seen[id] = true
				}
			}
		}
		return seen
	}
	last, same := read(), 0
	for deadline := time.Now().Add(5 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if now := read(); len(now) == len(last) {
			same++
		} else {
			last, same = now, 0
		}
	}
	return last
}

// A dry run that reverts is 422 reverted with the decoded reason, and
// nothing is stored or enqueued; one that succeeds queues the job as
// usual; one that would run out of its gas_limit is 422 call_failed.
func TestSimulateRefusesCallsThatWouldFail(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	c := cb.counter.Hex()
	for _, tc := range []struct{ name, body, code, reason string }{
		{"custom error", `{"to":"` + c + `","function":"add(uint256)","args":[2000],"simulate":true}`, CodeReverted, "TooLarge(given: 2000, max: 1000)"},
		{"Error(string)", `{"to":"` + c + `","function":"fail(string)","args":["closed"],"simulate":true}`, CodeReverted, "closed"},
		{"panic", `{"to":"` + c + `","function":"divide(uint256,uint256)","args":[1,0],"simulate":true}`, CodeReverted, "panic 0x12: division or modulo by zero"},
		{"from a chosen signer", `{"to":"` + c + `","function":"fail(string)","args":["no"],"from":"` + cb.signer.Hex() + `","simulate":true}`, CodeReverted, "no"},
		{"gas_limit too low", `{"to":"` + c + `","function":"add(uint256)","args":[5],"gas_limit":22000,"simulate":true}`, CodeCallFailed, ""},
	} {
		r := cb.do(http.MethodPost, "/v1/jobs", tc.body)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: %s", tc.name, r.Body)
		e := revertErr(t, r)
		require.Equal(t, tc.code, e.Code, tc.name)
		require.Equal(t, tc.reason, e.RevertReason, tc.name)
		if tc.code == CodeReverted {
			require.Equal(t, "execution reverted: "+tc.reason, e.Message)
			require.NotEmpty(t, e.RevertData)
		}
	}
	require.Zero(t, cb.jobCount(), "refused dry runs store nothing")
	require.Zero(t, cb.queued(), "and enqueue nothing")

	estimates := cb.proxy.Calls("eth_estimateGas")
	r := cb.do(http.MethodPost, "/v1/jobs", `{"to":"`+c+`","function":"add(uint256)","args":[5],"simulate":true}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Equal(t, estimates+1, cb.proxy.Calls("eth_estimateGas"))
	require.Equal(t, 1, cb.queued())
	// Without simulate the chain is not asked.
	r = cb.do(http.MethodPost, "/v1/jobs", `{"to":"`+c+`","function":"add(uint256)","args":[2000]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Equal(t, estimates+1, cb.proxy.Calls("eth_estimateGas"))
	require.Equal(t, int64(2), cb.jobCount())
}

// A dry run when the node is unreachable or failing is 503 (try again) and
// stores nothing; a node error that is not about the call is 502.
func TestSimulateNodeFaults(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	body := `{"to":"` + cb.counter.Hex() + `","function":"add(uint256)","args":[5],"simulate":true}`
	cb.proxy.Inject(testenv.Fault{Methods: []string{"eth_estimateGas"}, Status: 503})
	r := cb.do(http.MethodPost, "/v1/jobs", body)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.Equal(t, CodeUnavailable, r.err(t).Code)
	cb.proxy.Clear()
	cb.proxy.Inject(testenv.Fault{Methods: []string{"eth_estimateGas"}, RPCError: &testenv.RPCErrorSpec{Code: -32601, Message: "the method eth_estimateGas does not exist/is not available"}})
	r = cb.do(http.MethodPost, "/v1/jobs", body)
	require.Equal(t, http.StatusBadGateway, r.Status, string(r.Body))
	require.Equal(t, CodeNodeError, r.err(t).Code)
	cb.proxy.Clear()
	cb.proxy.Down()
	r = cb.do(http.MethodPost, "/v1/jobs", body)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.Contains(t, r.err(t).Message, "node is unavailable")
	require.Zero(t, cb.jobCount())
	require.Zero(t, cb.queued())

	cb.proxy.Up()
	r = cb.do(http.MethodPost, "/v1/jobs", body)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
}

// simulate is not part of the request's identity: a retry with the same
// Idempotency-Key gets the job back without a second dry run, with or
// without simulate, even if the call would now revert; a different call
// with the key is still 409.
func TestSimulateAndIdempotency(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	c := cb.counter.Hex()
	body := `{"to":"` + c + `","function":"add(uint256)","args":[5],"simulate":true}`
	first := cb.do(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusAccepted, first.Status, string(first.Body))
	estimates := cb.proxy.Calls("eth_estimateGas")

	// The node now refuses every estimate: a replay does not ask it.
	cb.proxy.Inject(testenv.Fault{Methods: []string{"eth_estimateGas"}, RPCError: &testenv.RPCErrorSpec{Code: 3, Message: "execution reverted"}})
	for _, b := range []string{body, `{"to":"` + c + `","function":"add(uint256)","args":[5]}`} {
		r := cb.do(http.MethodPost, "/v1/jobs", b, "Idempotency-Key", "k1")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		require.Equal(t, first.job(t).ID, r.job(t).ID)
	}
	r := cb.do(http.MethodPost, "/v1/jobs", `{"to":"`+c+`","function":"add(uint256)","args":[6],"simulate":true}`, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Equal(t, estimates, cb.proxy.Calls("eth_estimateGas"))
	// A new key is a new job, dry run and all.
	r = cb.do(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "k2")
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	require.Equal(t, "reverted without a reason", revertErr(t, r).RevertReason)
	require.Equal(t, int64(1), cb.jobCount())
}

// Without from, the dry run assumes the first configured signer: a value
// transfer it cannot pay is refused, one it can is not.
func TestSimulateSender(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	to := "0x0000000000000000000000000000000000000bad"
	r := cb.do(http.MethodPost, "/v1/jobs", `{"to":"`+to+`","value":"1000000000000000000","simulate":true}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	r = cb.do(http.MethodPost, "/v1/jobs", `{"to":"`+to+`","value":"1000000000000000000000000","simulate":true}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	require.Equal(t, CodeCallFailed, r.err(t).Code)
	require.Contains(t, r.err(t).Message, "insufficient funds")

	got, e := cb.srv.simulationSender(context.Background(), &call{})
	require.Nil(t, e)
	require.Equal(t, cb.signer, got)
}

// Redis down while a dry run checks its Idempotency-Key: 503, and the node
// is not asked.
func TestSimulateRedisDown(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	estimates := cb.proxy.Calls("eth_estimateGas")
	cb.redis.Kill()
	for _, path := range []string{"/v1/jobs", "/v1/jobs/batch"} {
		body := `{"to":"` + cb.counter.Hex() + `","simulate":true}`
		if path == "/v1/jobs/batch" {
			body = `{"jobs":[` + body + `]}`
		}
		r := cb.do(http.MethodPost, path, body, "Idempotency-Key", "k")
		require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
		require.Contains(t, []string{CodeUnavailable, CodeTimeout}, r.err(t).Code)
	}
	require.Equal(t, estimates, cb.proxy.Calls("eth_estimateGas"))
}
