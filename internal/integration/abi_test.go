package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/worker"
)

// JSON ABIs and registered contracts on the full stack: a job by a method
// of an inline ABI runs and is confirmed; so do a job and a batch by a
// registered contract's method (no "to"); a read by the contract's name
// sees what they did; a dry run's custom error is decoded by the
// contract's ABI, though this stack's API has no ErrorABI of its own.
func TestABIMethodsOnTheStack(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.counter.Hex()

	j := s.submit(`{"to":"` + c + `","abi":` + contract.ABIJSON + `,"method":"add","args":[3]}`)
	require.Equal(t, "add(uint256)", j.Function)
	s.wait(j.ID, jobs.Confirmed)
	require.Equal(t, uint64(3), s.count())

	r := s.do(http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":"counter","address":%q,"abi":%s}`, c, contract.ABIJSON))
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	j = s.submit(`{"contract":"counter","method":"increment"}`)
	require.Equal(t, c, j.To)
	s.wait(j.ID, jobs.Confirmed)

	r = s.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[{"contract":"counter","method":"add(uint256)","args":[10]},{"contract":"counter","method":"add","args":["20"],"simulate":true}]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	var batch struct {
		Jobs []struct {
			ID string `json:"id"`
		} `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &batch))
	require.Len(t, batch.Jobs, 2)
	for _, b := range batch.Jobs {
		s.wait(b.ID, jobs.Confirmed)
	}
	require.Equal(t, uint64(34), s.count())

	// The API's head may lag the chain by up to 200 ms: poll, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.do(http.MethodPost, "/v1/calls", `{"contract":"counter","method":"count"}`)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var ans struct {
			Result []any `json:"result"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &ans))
		if len(ans.Result) == 1 && ans.Result[0] == "34" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the read still says %v", ans.Result)
		time.Sleep(50 * time.Millisecond)
	}

	r = s.do(http.MethodPost, "/v1/jobs", `{"contract":"counter","method":"add","args":[5000],"simulate":true}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	var e struct {
		Error struct {
			Code         string `json:"code"`
			RevertReason string `json:"revert_reason"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &e))
	require.Equal(t, "reverted", e.Error.Code)
	require.Equal(t, "TooLarge(given: 5000, max: 1000)", e.Error.RevertReason)
	require.Equal(t, uint64(34), s.count())
}

// The worker decodes a job's custom error with the ABI registered for the
// address it called, both when the call reverts at its estimate and when
// it reverts on chain (gas_limit given, so no estimate): this worker has
// no ErrorABI, and before the registration the error is only a selector.
func TestWorkerDecodesRevertsWithTheRegisteredABI(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{worker: func(c *worker.Config) { c.ErrorABI = nil }})
	c := s.counter.Hex()
	const reason = "TooLarge(given: 5000, max: 1000)"

	j := s.submit(`{"to":"` + c + `","function":"add(uint256)","args":[5000]}`)
	j = s.wait(j.ID, jobs.Failed)
	require.Equal(t, jobs.ErrCodeRevertedAtEstimate, j.Error.Code)
	require.True(t, strings.HasPrefix(j.Error.RevertReason, "custom error 0x"), j.Error.RevertReason)

	r := s.do(http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":"counter","address":%q,"abi":%s}`, strings.ToLower(c), contract.ABIJSON))
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))

	j = s.submit(`{"to":"` + c + `","function":"add(uint256)","args":[5000]}`)
	j = s.wait(j.ID, jobs.Failed)
	require.Equal(t, jobs.ErrCodeRevertedAtEstimate, j.Error.Code)
	require.Equal(t, reason, j.Error.RevertReason)

	j = s.submit(`{"contract":"counter","method":"add","args":[5000],"gas_limit":200000}`)
	j = s.wait(j.ID, jobs.Failed)
	require.Equal(t, jobs.ErrCodeRevertedOnChain, j.Error.Code)
	require.Equal(t, reason, j.Error.RevertReason)
	require.NotEmpty(t, j.TxHash)
}
