package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// The three ways in of issue 7, end to end on the full stack: a batch is
// accepted whole and every job of it runs; a read through the API sees
// what they did; a dry run refuses a call that would revert before it is
// queued, with the reason.
func TestBatchReadAndDryRunOnTheStack(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.counter.Hex()

	const n = 20
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"to":"%s","function":"add(uint256)","args":[%d],"simulate":%t}`, c, i+1, i%2 == 0)
	}
	r := s.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+strings.Join(items, ",")+`]}`, "Idempotency-Key", "batch-1")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	var batch struct {
		Jobs []struct {
			ID     string      `json:"id"`
			Status jobs.Status `json:"status"`
		} `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &batch))
	require.Len(t, batch.Jobs, n)
	for i, j := range batch.Jobs {
		got := s.wait(j.ID, jobs.Confirmed)
		require.JSONEq(t, fmt.Sprintf("[%d]", i+1), string(got.Args), "job %d is item %d", i, i)
	}
	want := fmt.Sprint(n * (n + 1) / 2)
	require.Equal(t, uint64(n*(n+1)/2), s.count())

	// The API's head may lag the chain by up to 200 ms: poll, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := s.do(http.MethodPost, "/v1/calls", `{"to":"`+c+`","function":"count()(uint256)"}`)
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var ans struct {
			Block  uint64 `json:"block"`
			Result []any  `json:"result"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &ans))
		if ans.Result[0] == want {
			break
		}
		require.True(t, time.Now().Before(deadline), "the read still says %v, not %s", ans.Result, want)
		time.Sleep(50 * time.Millisecond)
	}

	// The same batch again is the same jobs, done.
	r = s.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+strings.Join(items, ",")+`]}`, "Idempotency-Key", "batch-1")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Contains(t, string(r.Body), `"status":"confirmed"`)

	before, err := s.store.Count(t.Context(), jobs.Queued)
	require.NoError(t, err)
	r = s.do(http.MethodPost, "/v1/jobs", `{"to":"`+c+`","function":"fail(string)","args":["not today"],"simulate":true}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	var e struct {
		Error struct {
			Code         string `json:"code"`
			RevertReason string `json:"revert_reason"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &e))
	require.Equal(t, "reverted", e.Error.Code)
	require.Equal(t, "not today", e.Error.RevertReason)
	after, err := s.store.Count(t.Context(), jobs.Queued)
	require.NoError(t, err)
	require.Equal(t, before, after, "the refused dry run stored nothing")
	require.Equal(t, uint64(n*(n+1)/2), s.count())
}
