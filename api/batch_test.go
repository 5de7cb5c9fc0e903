package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// batchAnswer is a 200/202 answer of POST /v1/jobs/batch.
type batchAnswer struct {
	Jobs []batchItem `json:"jobs"`
}

func (r response) batch(t *testing.T) batchAnswer {
	t.Helper()
	var a batchAnswer
	require.NoError(t, json.Unmarshal(r.Body, &a), string(r.Body))
	return a
}

// addJobs is a batch of n add(i) calls, each item padded with pad bytes of
// metadata.
func addJobs(n, pad int) string {
	items := make([]string, n)
	for i := range items {
		meta := ""
		if pad > 0 {
			meta = `,"metadata":{"pad":"` + strings.Repeat("p", pad) + `"}`
		}
		items[i] = fmt.Sprintf(`{"to":"%s","function":"add(uint256)","args":[%d]%s}`, testCounter, i, meta)
	}
	return `{"jobs":[` + strings.Join(items, ",") + `]}`
}

// A batch of the largest size, over the 1 MiB of other routes, is stored
// and enqueued whole: 202 with the ids in the order of the request.
func TestBatchCreatesEveryJobInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := addJobs(maxBatchJobs, 1100)
	require.Greater(t, len(body), 1<<20)
	r := b.do(http.MethodPost, "/v1/jobs/batch", body)
	require.Equal(t, http.StatusAccepted, r.Status, clip(string(r.Body)))
	a := r.batch(t)
	require.Len(t, a.Jobs, maxBatchJobs)
	ids := make([]string, len(a.Jobs))
	for i, it := range a.Jobs {
		require.Equal(t, jobs.Queued, it.Status)
		ids[i] = it.ID
	}
	got, err := b.store.GetMany(context.Background(), ids)
	require.NoError(t, err)
	for i, j := range got {
		require.NotNil(t, j, "job %d", i)
		require.JSONEq(t, fmt.Sprintf("[%d]", i), string(j.Args), "job %d is item %d", i, i)
		require.Equal(t, testCounter, j.To)
	}
	require.Equal(t, int64(maxBatchJobs), b.jobCount())
	require.Equal(t, maxBatchJobs, b.queued())

	// Past the batch route's own limit: 413, and nothing more stored.
	r = b.do(http.MethodPost, "/v1/jobs/batch", addJobs(maxBatchJobs, 9000))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
	require.Equal(t, CodeTooLarge, r.err(t).Code)
	require.Equal(t, int64(maxBatchJobs), b.jobCount())
	// The other routes keep theirs.
	r = b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","metadata":{"x":"`+strings.Repeat("a", 2<<20)+`"}}`)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
}

// One bad job refuses the whole batch with a 400 that names it; nothing is
// stored or enqueued.
func TestBatchAllOrNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	good := `{"to":"` + testCounter + `","function":"add(uint256)","args":[1]}`
	for _, tc := range []struct{ name, body, code, field string }{
		{"bad argument", `{"jobs":[` + good + `,` + good + `,{"to":"` + testCounter + `","function":"add(uint256)","args":["x"]},` + good + `]}`, "invalid_argument", "jobs[2].args[0]"},
		{"unknown field in a job", `{"jobs":[` + good + `,{"to":"` + testCounter + `","gas":1}]}`, "unknown_field", "jobs[1].gas"},
		{"missing to", `{"jobs":[{"function":"increment()"}]}`, "missing_field", "jobs[0].to"},
		{"not an object", `{"jobs":[` + good + `,5]}`, "invalid_type", "jobs[1]"},
		{"null job", `{"jobs":[null]}`, "invalid_type", "jobs[0]"},
		{"bad JSON type", `{"jobs":[{"to":7}]}`, "invalid_type", "jobs[0].to"},
		{"unknown signer", `{"jobs":[{"to":"` + testCounter + `","from":"0x0000000000000000000000000000000000000001"}]}`, "unknown_signer", "jobs[0].from"},
		{"webhook without a secret", `{"jobs":[{"to":"` + testCounter + `","webhook_url":"https://example.com/h"}]}`, "webhooks_disabled", "jobs[0].webhook_url"},
		{"last of many", addJobs(maxBatchJobs-1, 0)[:len(addJobs(maxBatchJobs-1, 0))-2] + `,{"to":"0x12"}]}`, "invalid_address", "jobs[999].to"},
		{"no jobs field", `{}`, "missing_field", "jobs"},
		{"empty", `{"jobs":[]}`, "out_of_range", "jobs"},
		{"too many", addJobs(maxBatchJobs+1, 0), "out_of_range", "jobs"},
		{"jobs not an array", `{"jobs":{}}`, "invalid_type", "jobs"},
		{"unknown top-level field", `{"jobs":[` + good + `],"simulate":true}`, "unknown_field", "simulate"},
		{"malformed", `{"jobs":[`, "malformed_json", ""},
	} {
		r := b.do(http.MethodPost, "/v1/jobs/batch", tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", tc.name, clip(string(r.Body)))
		e := r.err(t)
		require.Equal(t, tc.code, e.Code, "%s: %s", tc.name, e.Message)
		require.Equal(t, tc.field, e.Field, tc.name)
		if strings.HasPrefix(tc.field, "jobs[") {
			require.True(t, strings.HasPrefix(e.Message, strings.SplitN(tc.field, ".", 2)[0]+": "), e.Message)
		}
	}
	require.Zero(t, b.jobCount(), "no refused batch stored anything")
	require.Zero(t, b.queued(), "or enqueued anything")
	r := b.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+good+`]}`, "Content-Type", "text/plain")
	require.Equal(t, "unsupported_media_type", r.err(t).Code)
	r = b.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+good+`]}`, "Idempotency-Key", strings.Repeat("k", 300))
	require.Equal(t, "Idempotency-Key", r.err(t).Field)
	r = b.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+good+`]}`, "Authorization", "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	require.Zero(t, b.jobCount())
}

// One Idempotency-Key covers a batch: the same batch again is 200 with the
// same jobs, any change to it is 409 and stores nothing, and the key does
// not collide with the same key on POST /v1/jobs.
func TestBatchIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	batch := addJobs(3, 0)
	first := b.do(http.MethodPost, "/v1/jobs/batch", batch, "Idempotency-Key", "b1")
	require.Equal(t, http.StatusAccepted, first.Status, string(first.Body))
	// Spacing and key order do not matter.
	again := b.do(http.MethodPost, "/v1/jobs/batch", strings.ReplaceAll(batch, ",", " , "), "Idempotency-Key", "b1")
	require.Equal(t, http.StatusOK, again.Status, string(again.Body))
	require.Equal(t, first.batch(t), again.batch(t))

	for _, changed := range []string{addJobs(2, 0), addJobs(4, 0), strings.Replace(batch, `"args":[2]`, `"args":[7]`, 1)} {
		r := b.do(http.MethodPost, "/v1/jobs/batch", changed, "Idempotency-Key", "b1")
		require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
		require.Equal(t, CodeIdempotencyReuse, r.err(t).Code)
		require.Equal(t, "Idempotency-Key", r.err(t).Field)
	}
	require.Equal(t, int64(3), b.jobCount())

	r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","function":"add(uint256)","args":[0]}`, "Idempotency-Key", "b1")
	require.Equal(t, http.StatusAccepted, r.Status, "a job's key and a batch's are apart")
	r = b.do(http.MethodPost, "/v1/jobs/batch", batch, "Idempotency-Key", "b1", "Authorization", "Bearer "+otherKey)
	require.Equal(t, http.StatusUnauthorized, r.Status)
	r = b.do(http.MethodPost, "/v1/jobs/batch", batch)
	require.Equal(t, http.StatusAccepted, r.Status, "without a key, the same batch is new jobs")
	require.Equal(t, int64(7), b.jobCount())
	require.Equal(t, 7, b.queued())
}

// Redis down: 503, and the batch can be sent again.
func TestBatchRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.redis.Kill()
	r := b.do(http.MethodPost, "/v1/jobs/batch", addJobs(2, 0), "Idempotency-Key", "b1")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.Contains(t, []string{CodeUnavailable, CodeTimeout}, r.err(t).Code)
}

// A batch whose jobs ask for a dry run: one that would revert refuses the
// batch with 422, naming it and its reason, and nothing is stored; when
// all would succeed the batch is queued.
func TestBatchSimulate(t *testing.T) {
	t.Parallel()
	cb := setupChain(t)
	c := cb.counter.Hex()
	ok := `{"to":"` + c + `","function":"add(uint256)","args":[1],"simulate":true}`
	bad := `{"to":"` + c + `","function":"add(uint256)","args":[5000],"simulate":true}`
	unchecked := `{"to":"` + c + `","function":"add(uint256)","args":[6000]}`
	r := cb.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+ok+`,`+unchecked+`,`+ok+`,`+bad+`,`+bad+`]}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	e := revertErr(t, r)
	require.Equal(t, CodeReverted, e.Code)
	require.Equal(t, "jobs[3]", e.Field, "the first job that would fail")
	require.Equal(t, "TooLarge(given: 5000, max: 1000)", e.RevertReason)
	require.Equal(t, "jobs[3]: execution reverted: TooLarge(given: 5000, max: 1000)", e.Message)
	require.Zero(t, cb.jobCount())
	require.Zero(t, cb.queued())

	estimates := cb.proxy.Calls("eth_estimateGas")
	r = cb.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+ok+`,`+unchecked+`,`+ok+`]}`, "Idempotency-Key", "s1")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Equal(t, estimates+2, cb.proxy.Calls("eth_estimateGas"), "only the jobs that ask are dry run")
	r = cb.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+ok+`,`+unchecked+`,`+ok+`]}`, "Idempotency-Key", "s1")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, estimates+2, cb.proxy.Calls("eth_estimateGas"), "a replay is not dry run again")
	require.Equal(t, int64(3), cb.jobCount())

	cb.proxy.Down()
	r = cb.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+unchecked+`,`+ok+`]}`)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.Equal(t, "jobs[1]", r.err(t).Field)
	require.Equal(t, int64(3), cb.jobCount())
}

// A GET of /v1/jobs/batch is the job route's: no job has that id.
func TestBatchPathIsNotAJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodGet, "/v1/jobs/batch", "")
	require.Equal(t, http.StatusNotFound, r.Status, string(r.Body))
}
