package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// With RELAYQ_REDIS_MIN_REPLICAS=1 and no replica acknowledging, a job is
// answered 503 not_replicated (documented in the OpenAPI document), names
// the job it stored, and a retry with the same Idempotency-Key gives the
// same job; once a replica is attached the retry answers 200 with it.
func TestCreateJobNotReplicated(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.StoreOptions = []jobs.Option{jobs.WithReplicas(1, 300*time.Millisecond)} })
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, b.signer.Hex())
	r := b.do(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	e := r.err(t)
	require.Equal(t, CodeNotReplicated, e.Code)
	require.Contains(t, e.Message, "same Idempotency-Key")
	spec := loadSpec(t)
	ptr, ok := spec.response(t, spec.op(t, http.MethodPost, "/v1/jobs"), r.Status, "application/json")
	require.True(t, ok, "503 is documented for POST /v1/jobs")
	spec.validate(t, ptr, r.Body)
	require.Contains(t, mustAt(t, spec, "/components/schemas/Error/properties/error/properties/code/description").(string), CodeNotReplicated)

	require.EqualValues(t, 1, b.jobCount(), "the job stands on the primary")
	ids, err := b.store.Oldest(context.Background(), jobs.Queued, 10)
	require.NoError(t, err)
	require.Len(t, ids, 1)
	require.Contains(t, e.Message, ids[0], "the answer names the job")

	r = b.do(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "still no replica: %s", r.Body)
	require.Equal(t, CodeNotReplicated, r.err(t).Code)
	require.EqualValues(t, 1, b.jobCount(), "a retry makes no second job")

	testenv.RedisReplica(t, b.redis, testenv.WithoutAOF())
	r = b.do(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, ids[0], r.job(t).ID)
	r = b.do(http.MethodPost, "/v1/jobs", body)
	require.Equal(t, http.StatusAccepted, r.Status, "with a replica, a new job is accepted: %s", r.Body)
	require.EqualValues(t, 2, b.jobCount())
}
