package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// Every malformed request gets a 400 that names the problem, and changes
// nothing: no job, no task.
func TestBadRequestsAreRejectedAndChangeNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true})
	c := s.counter.Hex()
	cases := []struct {
		name, body, code, field string
	}{
		{"malformed json", `{"to":`, "malformed_json", ""},
		{"not an object", `[1,2]`, "invalid_type", ""},
		{"empty body", ``, "malformed_json", ""},
		{"two values", `{"to":"` + c + `"} {}`, "malformed_json", ""},
		{"unknown field", `{"to":"` + c + `","gas":1}`, "unknown_field", "gas"},
		{"missing to", `{"function":"increment()"}`, "missing_field", "to"},
		{"bad address", `{"to":"0x1234"}`, "invalid_address", "to"},
		{"address without 0x", `{"to":"` + strings.Repeat("a", 40) + `"}`, "invalid_address", "to"},
		{"bad checksum", `{"to":"0x8464135c8F25Da09e49BC8782676a84730C318Bc"}`, "invalid_address", "to"},
		{"to not a string", `{"to":5}`, "invalid_type", "to"},
		{"bad from", `{"to":"` + c + `","from":"nope"}`, "invalid_address", "from"},
		{"unknown signer", `{"to":"` + c + `","from":"0x0000000000000000000000000000000000000001"}`, "unknown_signer", "from"},
		{"unknown type", `{"to":"` + c + `","function":"f(uint7)","args":[1]}`, "invalid_function", "function"},
		{"malformed signature", `{"to":"` + c + `","function":"transfer(address"}`, "invalid_function", "function"},
		{"wrong arg count", `{"to":"` + c + `","function":"add(uint256)","args":[]}`, "wrong_arg_count", "args"},
		{"unparsable number", `{"to":"` + c + `","function":"add(uint256)","args":["12x"]}`, "invalid_argument", "args[0]"},
		{"out of range", `{"to":"` + c + `","function":"f(uint8)","args":[256]}`, "out_of_range", "args[0]"},
		{"negative uint", `{"to":"` + c + `","function":"add(uint256)","args":["-1"]}`, "out_of_range", "args[0]"},
		{"bad bytes32", `{"to":"` + c + `","function":"f(bytes32)","args":["0x12"]}`, "invalid_argument", "args[0]"},
		{"args without function", `{"to":"` + c + `","args":[1]}`, "missing_field", "function"},
		{"function and data", `{"to":"` + c + `","function":"increment()","data":"0x"}`, "conflicting_fields", "data"},
		{"odd hex data", `{"to":"` + c + `","data":"0x123"}`, "invalid_data", "data"},
		{"value not a number", `{"to":"` + c + `","value":"ten"}`, "invalid_number", "value"},
		{"negative value", `{"to":"` + c + `","value":"-5"}`, "out_of_range", "value"},
		{"fractional value", `{"to":"` + c + `","value":1.5}`, "invalid_number", "value"},
		{"huge value", `{"to":"` + c + `","value":"1` + strings.Repeat("0", 80) + `"}`, "out_of_range", "value"},
		{"gas limit too low", `{"to":"` + c + `","gas_limit":100}`, "out_of_range", "gas_limit"},
		{"gas limit too high", `{"to":"` + c + `","gas_limit":1000000000000}`, "out_of_range", "gas_limit"},
		{"zero confirmations", `{"to":"` + c + `","confirmations":0}`, "out_of_range", "confirmations"},
		{"metadata not an object", `{"to":"` + c + `","metadata":[1]}`, "invalid_type", "metadata"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(http.MethodPost, "/v1/jobs", tc.body)
			require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
			e := r.err(t)
			require.Equal(t, tc.code, e.Error.Code, e.Error.Message)
			require.Equal(t, tc.field, e.Error.Field, e.Error.Message)
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		r := s.do(http.MethodPost, "/v1/jobs", `{"to":"`+c+`"}`, "Content-Type", "text/plain")
		require.Equal(t, http.StatusBadRequest, r.Status)
		require.Equal(t, "unsupported_media_type", r.err(t).Error.Code)
	})
	t.Run("idempotency key too long", func(t *testing.T) {
		r := s.do(http.MethodPost, "/v1/jobs", `{"to":"`+c+`"}`, "Idempotency-Key", strings.Repeat("k", 300))
		require.Equal(t, http.StatusBadRequest, r.Status)
		require.Equal(t, "Idempotency-Key", r.err(t).Error.Field)
	})
	t.Run("body too large", func(t *testing.T) {
		big := `{"to":"` + c + `","metadata":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`
		r := s.do(http.MethodPost, "/v1/jobs", big)
		require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
		require.Equal(t, "body_too_large", r.err(t).Error.Code)
	})

	n, err := s.rdb.ZCard(context.Background(), "relayq:jobs:all").Result()
	require.NoError(t, err)
	require.Zero(t, n, "a rejected request stores no job")
	keys, err := s.rdb.Keys(context.Background(), "asynq:{relayq}:t:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "a rejected request enqueues no task")
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true})
	body := fmt.Sprintf(`{"to":%q}`, s.counter)
	for _, auth := range []string{"", "Bearer wrong-key-0123456789", "Basic " + testAPIKey, testAPIKey} {
		r := s.do(http.MethodPost, "/v1/jobs", body, "Authorization", auth)
		require.Equal(t, http.StatusUnauthorized, r.Status, "Authorization %q", auth)
		require.Equal(t, "unauthorized", r.err(t).Error.Code)
		r = s.do(http.MethodGet, "/monitor/api/queues", "", "Authorization", auth)
		require.Equal(t, http.StatusUnauthorized, r.Status, "monitor with Authorization %q", auth)
	}
	r := s.do(http.MethodGet, "/monitor/api/queues", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = s.do(http.MethodGet, "/monitor/", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, string(r.Body), "<html")
	// Health and readiness need no key.
	require.Equal(t, http.StatusOK, s.do(http.MethodGet, "/healthz", "", "Authorization", "").Status)
	r = s.do(http.MethodGet, "/readyz", "", "Authorization", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, `{"redis":"ok","node":"ok"}`, string(r.Body))
	// The monitor is read-only by default: deleting a queue is refused.
	r = s.do(http.MethodDelete, "/monitor/api/queues/relayq", "")
	require.NotEqual(t, http.StatusOK, r.Status)
	require.NotEqual(t, http.StatusNoContent, r.Status)
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true})
	for _, p := range []string{"/v1/jobs/01939c7e-0000-7000-8000-000000000000", "/v1/jobs/not-a-uuid", "/v1/nothing"} {
		r := s.do(http.MethodGet, p, "")
		require.Equal(t, http.StatusNotFound, r.Status, p)
		require.Equal(t, "not_found", r.err(t).Error.Code)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	body := fmt.Sprintf(`{"to":%q,"function":"increment()","metadata":{"a":1,"b":2}}`, s.counter)
	first := s.submit(body, "Idempotency-Key", "order-1")

	// The same request again, even re-spaced with keys reordered: 200 and
	// the same job.
	same := fmt.Sprintf(`{ "metadata":{"b":2,"a":1}, "function":"increment()", "to":%q }`, s.counter)
	for _, b := range []string{body, same} {
		r := s.do(http.MethodPost, "/v1/jobs", b, "Idempotency-Key", "order-1")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		require.Equal(t, first.ID, r.job(t).ID)
		require.Equal(t, "/v1/jobs/"+first.ID, r.Header.Get("Location"))
	}
	// A different request under the same key: 409, nothing created.
	other := fmt.Sprintf(`{"to":%q,"function":"add(uint256)","args":[5]}`, s.counter)
	r := s.do(http.MethodPost, "/v1/jobs", other, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Equal(t, "idempotency_reuse", r.err(t).Error.Code)
	require.Contains(t, r.err(t).Error.Message, first.ID)

	s.wait(first.ID, jobs.Confirmed)
	list := s.do(http.MethodGet, "/v1/jobs", "")
	require.Equal(t, http.StatusOK, list.Status)
	require.Equal(t, 1, strings.Count(string(list.Body), `"id":`), "one job however often it was posted")
	require.Equal(t, uint64(1), s.count(), "executed once")
	// After completion the key still answers with the job.
	r = s.do(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, jobs.Confirmed, r.job(t).Status)
}

func TestListJobs(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorkerRun: true})
	var ids []string
	for range 5 {
		ids = append(ids, s.submit(fmt.Sprintf(`{"to":%q}`, s.counter)).ID)
	}
	// Pages of two, newest first, until next_cursor is empty.
	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		path := "/v1/jobs?limit=2&status=queued"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := s.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var body struct {
			Jobs []jobs.Job `json:"jobs"`
			Next string     `json:"next_cursor"`
		}
		require.NoError(t, jsonUnmarshal(r.Body, &body))
		for _, j := range body.Jobs {
			got = append(got, j.ID)
		}
		if body.Next == "" {
			break
		}
		cursor = body.Next
	}
	require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, got)

	r := s.do(http.MethodGet, "/v1/jobs?status=confirmed", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, `{"jobs":[],"next_cursor":""}`, string(r.Body))

	for _, q := range []string{"status=done", "limit=0", "limit=501", "limit=x", "cursor=abc", "foo=1"} {
		r := s.do(http.MethodGet, "/v1/jobs?"+q, "")
		require.Equal(t, http.StatusBadRequest, r.Status, q)
		r.err(t)
	}
}
