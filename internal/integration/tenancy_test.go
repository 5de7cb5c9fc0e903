package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/webhook"
)

// The tenants of TestTenancyAttacks: two client keys, each with its own
// webhook secret, beside the bare key the cluster's launcher uses (an
// admin named "default", as every key was before keys had names).
const (
	tenantAliceKey    = "alice-key-0123456789abcdef"
	tenantBobKey      = "bob-key-0123456789abcdef"
	tenantAliceSecret = "alice-webhook-secret-0123456789abcdef0123"
	tenantBobSecret   = "bob-webhook-secret-0123456789abcdef012345"
	tenantSharedHook  = "shared-webhook-secret-0123456789abcdef012"
)

// signedBy records, per event, which secrets its signature verifies with:
// the receiver alice runs checks alice's secret only.
type signedBy struct {
	*httptest.Server
	mu     sync.Mutex
	events []hookSeen
}

type hookSeen struct {
	eventID, jobID, apiKey string
	metadata               string
	alice, bob, shared     bool
}

func newSignedBy(t *testing.T) *signedBy {
	r := &signedBy{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		sig := req.Header.Get(webhook.SignatureHeader)
		var ev webhook.Event
		var j jobs.Job
		_ = json.Unmarshal(body, &ev)
		_ = json.Unmarshal(ev.Job, &j)
		seen := hookSeen{eventID: ev.ID, jobID: j.ID, apiKey: j.APIKey, metadata: string(j.Metadata),
			alice:  webhook.Verify(tenantAliceSecret, sig, body, time.Minute) == nil,
			bob:    webhook.Verify(tenantBobSecret, sig, body, time.Minute) == nil,
			shared: webhook.Verify(tenantSharedHook, sig, body, time.Minute) == nil,
		}
		r.mu.Lock()
		r.events = append(r.events, seen)
		r.mu.Unlock()
		if !seen.alice { // alice's receiver check
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *signedBy) seen(jobID string) []hookSeen {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hookSeen
	for _, s := range r.events {
		if s.jobID == jobID {
			out = append(out, s)
		}
	}
	return out
}

// TestTenancyAttacks performs, against relayq api and worker processes on
// redis-server and anvil, each attack one API key could make on another
// before keys were principals, and shows that each fails:
//
//   - bob reads, cancels or lists alice's job (with its webhook_url and
//     metadata): 404 as for an unknown id, absent from his lists, and the
//     job runs on;
//   - bob re-points alice's contract name with ?replace=true: it lands in
//     bob's namespace, and alice's "contract" jobs still call alice's
//     address;
//   - bob sends events with metadata of his choosing to alice's receiver:
//     they are signed with bob's secret, and alice's check refuses them;
//   - bob reaches the task monitor or reconciles a signer: 403;
//   - the bare key still works, as the admin "default", and sees all.
func TestTenancyAttacks(t *testing.T) {
	t.Parallel()
	c, counter := newCluster(t, clusterOptions{workers: 1, anvilArgs: []string{"--block-time", "1"}, env: []string{
		"RELAYQ_API_KEYS=" + testAPIKey + ",alice:" + tenantAliceKey + ",bob:" + tenantBobKey,
		"RELAYQ_WEBHOOK_SECRET=" + tenantSharedHook,
		"RELAYQ_WEBHOOK_SECRETS=alice:" + tenantAliceSecret + ",bob:" + tenantBobSecret,
		"RELAYQ_WEBHOOK_ALLOW_CIDRS=127.0.0.0/8",
		"RELAYQ_RATE_LIMIT=0",
	}})
	as := func(key, method, path, body string) (int, string) {
		t.Helper()
		code, b, err := c.requestWith(method, path, body, "Authorization", "Bearer "+key)
		require.NoError(t, err)
		return code, string(b)
	}
	asJob := func(key, body string) jobs.Job {
		t.Helper()
		code, b := as(key, http.MethodPost, "/v1/jobs", body)
		require.Equal(t, http.StatusAccepted, code, b)
		var j jobs.Job
		require.NoError(t, json.Unmarshal([]byte(b), &j))
		return j
	}
	waitFor := func(key, id string, want jobs.Status) jobs.Job {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			code, b := as(key, http.MethodGet, "/v1/jobs/"+id, "")
			require.Equal(t, http.StatusOK, code, b)
			var j jobs.Job
			require.NoError(t, json.Unmarshal([]byte(b), &j))
			if j.Status.Terminal() {
				require.Equal(t, want, j.Status, b)
				return j
			}
			require.False(t, time.Now().After(deadline), "job %s still %s", id, j.Status)
			time.Sleep(250 * time.Millisecond)
		}
	}
	aliceHook := newSignedBy(t)

	// Alice registers her contract and sends a job through it, with a
	// webhook and metadata of her own.
	code, b := as(tenantAliceKey, http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":"counter","address":%q,"abi":%s}`, counter, contract.ABIJSON))
	require.Equal(t, http.StatusCreated, code, b)
	aliceJob := asJob(tenantAliceKey, `{"contract":"counter","method":"increment","webhook_url":"`+aliceHook.URL+`/hook","metadata":{"order":"alice-order-1"}}`)
	require.Equal(t, "alice", aliceJob.APIKey)
	require.True(t, strings.EqualFold(counter, aliceJob.To))

	// Attack 1: bob reads, cancels and lists alice's job.
	unknownID := jobs.NewID()
	code, unknown := as(tenantBobKey, http.MethodGet, "/v1/jobs/"+unknownID, "")
	require.Equal(t, http.StatusNotFound, code)
	for _, rq := range []struct{ method, path string }{
		{http.MethodGet, "/v1/jobs/" + aliceJob.ID},
		{http.MethodPost, "/v1/jobs/" + aliceJob.ID + "/cancel"},
	} {
		code, b := as(tenantBobKey, rq.method, rq.path, "")
		require.Equal(t, http.StatusNotFound, code, "%s %s: %s", rq.method, rq.path, b)
		require.Contains(t, b, `"code":"not_found"`)
		require.NotContains(t, b, "alice-order-1")
		require.NotContains(t, b, aliceHook.URL)
		require.Equal(t, errMessage(t, unknown)[len(`no job "`):], strings.Replace(errMessage(t, b), aliceJob.ID, unknownID, 1)[len(`no job "`):],
			"the same answer as for an unknown id")
	}
	for _, q := range []string{"", "?status=queued", "?status=submitted", "?limit=500"} {
		code, b := as(tenantBobKey, http.MethodGet, "/v1/jobs"+q, "")
		require.Equal(t, http.StatusOK, code, b)
		require.NotContains(t, b, aliceJob.ID, "bob's list %s", q)
	}

	// Attack 2: bob re-points the name "counter" at an address of his.
	bobAddr := crypto.PubkeyToAddress(c.anvil.Keys()[3].PublicKey).Hex()
	code, b = as(tenantBobKey, http.MethodPost, "/v1/contracts?replace=true", fmt.Sprintf(`{"name":"counter","address":%q,"abi":%s}`, bobAddr, contract.ABIJSON))
	require.Equal(t, http.StatusCreated, code, "a new name in bob's own namespace, not a replacement: %s", b)
	require.Contains(t, b, `"owner":"bob"`)
	code, b = as(tenantAliceKey, http.MethodGet, "/v1/contracts/counter", "")
	require.Equal(t, http.StatusOK, code, b)
	require.Contains(t, strings.ToLower(b), strings.ToLower(counter), "alice's name still means alice's contract")
	aliceJob2 := asJob(tenantAliceKey, `{"contract":"counter","method":"increment"}`)
	require.True(t, strings.EqualFold(counter, aliceJob2.To), "alice's job still goes to alice's address, not %s", bobAddr)

	// Attack 3: bob has events with alice's metadata sent to alice's
	// receiver.
	bobJob := asJob(tenantBobKey, `{"to":"`+counter+`","function":"increment()","webhook_url":"`+aliceHook.URL+`/hook","metadata":{"order":"alice-order-1"}}`)
	require.Equal(t, "bob", bobJob.APIKey)

	for _, id := range []string{aliceJob.ID, aliceJob2.ID} {
		waitFor(tenantAliceKey, id, jobs.Confirmed)
	}
	waitFor(tenantBobKey, bobJob.ID, jobs.Confirmed)
	require.EqualValues(t, 3, counterValue(t, c.node, commonAddr(counter)), "alice's two calls and bob's one all went to the counter")

	deadline := time.Now().Add(60 * time.Second)
	for len(aliceHook.seen(aliceJob.ID)) < 2 || len(aliceHook.seen(bobJob.ID)) == 0 {
		require.False(t, time.Now().After(deadline), "events did not arrive: alice %d, bob %d", len(aliceHook.seen(aliceJob.ID)), len(aliceHook.seen(bobJob.ID)))
		time.Sleep(250 * time.Millisecond)
	}
	for _, s := range aliceHook.seen(aliceJob.ID) {
		require.True(t, s.alice, "alice's own events pass her check: %+v", s)
		require.Equal(t, "alice", s.apiKey)
	}
	for _, s := range aliceHook.seen(bobJob.ID) {
		require.False(t, s.alice, "bob's events must fail alice's check: %+v", s)
		require.True(t, s.bob, "they are signed with bob's secret")
		require.False(t, s.shared, "not with the deployment's")
		require.Equal(t, "bob", s.apiKey, "and say whose job they are")
	}

	// Attack 4: bob opens the monitor or reconciles a signer.
	signer := crypto.PubkeyToAddress(c.anvil.Keys()[0].PublicKey).Hex()
	for _, rq := range []struct{ method, path string }{
		{http.MethodGet, "/monitor/"},
		{http.MethodGet, "/monitor/api/queues"},
		{http.MethodPost, "/v1/signers/" + signer + "/reconcile"},
	} {
		code, b := as(tenantBobKey, rq.method, rq.path, "")
		require.Equal(t, http.StatusForbidden, code, "%s %s: %s", rq.method, rq.path, b)
		require.Contains(t, b, `"code":"forbidden"`)
		code, b = as(testAPIKey, rq.method, rq.path, "")
		require.Equal(t, http.StatusOK, code, "the admin: %s %s: %s", rq.method, rq.path, b)
	}

	// The bare key is the admin "default": it sees every key's jobs, and
	// its own jobs carry its name.
	code, b = as(testAPIKey, http.MethodGet, "/v1/jobs?limit=500", "")
	require.Equal(t, http.StatusOK, code, b)
	for _, id := range []string{aliceJob.ID, aliceJob2.ID, bobJob.ID} {
		require.Contains(t, b, id)
	}
	dj := asJob(testAPIKey, `{"to":"`+counter+`","function":"increment()"}`)
	require.Equal(t, "default", dj.APIKey)
	waitFor(testAPIKey, dj.ID, jobs.Confirmed)
}

// errMessage is the message of an API error body.
func errMessage(t *testing.T, body string) string {
	t.Helper()
	var e apiErr
	require.NoError(t, json.Unmarshal([]byte(body), &e), body)
	require.NotEmpty(t, e.Error.Message, body)
	return e.Error.Message
}
