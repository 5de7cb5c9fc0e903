package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
)

// Three principals: two client keys and an admin.
const (
	aliceKey = "alice-key-0123456789abcdef"
	bobKey   = "bob-key-0123456789abcdef"
	opsKey   = "ops-key-0123456789abcdef"
	addrA    = "0x00000000000000000000000000000000000000aa"
	addrB    = "0x00000000000000000000000000000000000000bb"
	addrS    = "0x00000000000000000000000000000000000000cc"
)

func tenants(t *testing.T, opts ...func(*Config)) *bundle {
	t.Helper()
	return setup(t, append([]func(*Config){func(c *Config) {
		c.APIKeys = []string{"alice:" + aliceKey, "bob:" + bobKey, "ops:" + opsKey + ":admin"}
	}}, opts...)...)
}

// as sends a request with key.
func (b *bundle) as(key, method, path, body string, headers ...string) response {
	b.t.Helper()
	return b.do(method, path, body, append([]string{"Authorization", "Bearer " + key}, headers...)...)
}

func listIDs(t *testing.T, r response) []string {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var l struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &l))
	ids := []string{}
	for _, j := range l.Jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

// A key that is not an admin cannot read, cancel or list another key's
// job: it is 404, with the same error as an id that does not exist, and
// nothing changes. The job records its key's name, never the key.
func TestTenancyJobsAreTheirKeys(t *testing.T) {
	t.Parallel()
	b := tenants(t)
	r := b.as(aliceKey, http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","metadata":{"order":"alice-secret-order"}}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	job := r.job(t)
	require.Equal(t, "alice", job.APIKey)
	require.NotContains(t, string(r.Body), aliceKey)
	batch := b.as(bobKey, http.MethodPost, "/v1/jobs/batch", `{"jobs":[{"to":"`+testCounter+`"}]}`)
	require.Equal(t, http.StatusAccepted, batch.Status, string(batch.Body))

	unknown := b.as(bobKey, http.MethodGet, "/v1/jobs/"+jobs.NewID(), "").err(t)
	for _, rq := range []struct{ method, path string }{
		{http.MethodGet, "/v1/jobs/" + job.ID},
		{http.MethodPost, "/v1/jobs/" + job.ID + "/cancel"},
	} {
		r := b.as(bobKey, rq.method, rq.path, "")
		require.Equal(t, http.StatusNotFound, r.Status, "%s %s: %s", rq.method, rq.path, r.Body)
		e := r.err(t)
		require.Equal(t, unknown.Code, e.Code)
		require.Equal(t, strings.Replace(unknown.Message, unknown.Message[8:44], job.ID, 1), e.Message, "as for an unknown id")
		require.NotContains(t, string(r.Body), "alice-secret-order")
	}
	got, err := b.store.Get(t.Context(), job.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.Queued, got.Status, "bob's cancel changed nothing")
	require.False(t, got.CancelRequested)

	bobs := listIDs(t, b.as(bobKey, http.MethodGet, "/v1/jobs", ""))
	require.Len(t, bobs, 1)
	require.NotContains(t, bobs, job.ID)
	require.NotContains(t, listIDs(t, b.as(bobKey, http.MethodGet, "/v1/jobs?status=queued", "")), job.ID)
	require.Equal(t, []string{job.ID}, listIDs(t, b.as(aliceKey, http.MethodGet, "/v1/jobs", "")))

	// The admin sees everything, and may list one key's jobs; a client key
	// naming another key gets nothing.
	require.Len(t, listIDs(t, b.as(opsKey, http.MethodGet, "/v1/jobs", "")), 2)
	require.Equal(t, []string{job.ID}, listIDs(t, b.as(opsKey, http.MethodGet, "/v1/jobs?api_key=alice", "")))
	require.Equal(t, bobs, listIDs(t, b.as(opsKey, http.MethodGet, "/v1/jobs?api_key=bob&status=queued", "")))
	require.Empty(t, listIDs(t, b.as(bobKey, http.MethodGet, "/v1/jobs?api_key=alice", "")))
	require.Equal(t, bobs, listIDs(t, b.as(bobKey, http.MethodGet, "/v1/jobs?api_key=bob", "")))
	require.Equal(t, http.StatusOK, b.as(opsKey, http.MethodGet, "/v1/jobs/"+job.ID, "").Status)
	require.Equal(t, http.StatusOK, b.as(aliceKey, http.MethodGet, "/v1/jobs/"+job.ID, "").Status)
	r = b.as(aliceKey, http.MethodPost, "/v1/jobs/"+job.ID+"/cancel", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, jobs.Cancelled, r.job(t).Status)
	require.Contains(t, b.logs.String(), `"api_key":"alice"`)
	require.NotContains(t, b.logs.String(), aliceKey)
}

// Admin routes: reconcile and the monitor are 403 for a key that is not an
// admin (its key is valid: the role is what is missing), open to an admin.
func TestTenancyAdminRoutes(t *testing.T) {
	t.Parallel()
	b := tenants(t)
	reconcile := "/v1/signers/" + b.signer.Hex() + "/reconcile"
	for _, rq := range []struct {
		method, path string
	}{
		{http.MethodPost, reconcile},
		{http.MethodGet, "/monitor"},
		{http.MethodGet, "/monitor/"},
		{http.MethodGet, "/monitor/api/queues"},
	} {
		r := b.as(bobKey, rq.method, rq.path, "")
		require.Equal(t, http.StatusForbidden, r.Status, "%s %s: %s", rq.method, rq.path, r.Body)
		require.Equal(t, CodeForbidden, r.err(t).Code)
		r = b.as(opsKey, rq.method, rq.path, "")
		require.Equal(t, http.StatusOK, r.Status, "admin %s %s: %s", rq.method, rq.path, r.Body)
	}
	r := b.as("", http.MethodGet, "/monitor/api/queues", "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
}

// A bare key (as configured before keys had names) is an admin named
// "default": it reaches the monitor and its jobs say so.
func TestTenancyBareKeyIsDefaultAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.APIKeys = []string{testKey, "bob:" + bobKey} })
	r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`"}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Equal(t, "default", r.job(t).APIKey)
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/monitor/api/queues", "").Status)
	require.Equal(t, http.StatusOK, b.do(http.MethodPost, "/v1/signers/"+b.signer.Hex()+"/reconcile", "").Status)
	require.NotEmpty(t, listIDs(t, b.do(http.MethodGet, "/v1/jobs", "")))
	require.Empty(t, listIDs(t, b.as(bobKey, http.MethodGet, "/v1/jobs", "")))
}

// Without keys (RELAYQ_INSECURE_NO_AUTH) every caller is an admin and jobs
// carry no api_key.
func TestTenancyWithoutKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.APIKeys = nil })
	r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`"}`, "Authorization", "")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Empty(t, r.job(t).APIKey)
	require.NotContains(t, string(r.Body), `"api_key"`)
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/monitor/api/queues", "", "Authorization", "").Status)
}

// Contracts are namespaced: bob's registration of alice's name, even with
// ?replace=true, is bob's own and changes nothing for alice; a shared
// (admin) name can only be replaced by an admin.
func TestTenancyContractNamespaces(t *testing.T) {
	t.Parallel()
	b := tenants(t)
	reg := func(key, name, addr, query string) response {
		t.Helper()
		return b.as(key, http.MethodPost, "/v1/contracts"+query, fmt.Sprintf(`{"name":%q,"address":%q,"abi":%s}`, name, addr, contract.ABIJSON))
	}
	target := func(key, name string) string {
		t.Helper()
		r := b.as(key, http.MethodPost, "/v1/jobs", `{"contract":"`+name+`","method":"add","args":[1]}`)
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		return r.job(t).To
	}
	r := reg(aliceKey, "vault", addrA, "")
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	require.Contains(t, string(r.Body), `"owner":"alice"`)
	r = reg(bobKey, "vault", addrB, "?replace=true")
	require.Equal(t, http.StatusCreated, r.Status, "bob's vault is a new name in bob's namespace: %s", r.Body)
	require.True(t, strings.EqualFold(addrA, target(aliceKey, "vault")), "alice's jobs still go to alice's address")
	require.True(t, strings.EqualFold(addrB, target(bobKey, "vault")))
	r = b.as(aliceKey, http.MethodGet, "/v1/contracts/vault", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, strings.ToLower(string(r.Body)), strings.ToLower(addrA))
	require.Equal(t, http.StatusNotFound, b.as(opsKey, http.MethodGet, "/v1/contracts/vault", "").Status, "the admin's namespace is the shared one")

	// A shared name: every key resolves it; a key's "replace" shadows it
	// for that key only; only an admin replaces it.
	require.Equal(t, http.StatusCreated, reg(opsKey, "token", addrS, "").Status)
	require.True(t, strings.EqualFold(addrS, target(aliceKey, "token")))
	require.Equal(t, http.StatusCreated, reg(bobKey, "token", addrB, "?replace=true").Status)
	require.True(t, strings.EqualFold(addrS, target(aliceKey, "token")), "bob cannot re-point a shared name for others")
	require.True(t, strings.EqualFold(addrS, target(opsKey, "token")))
	require.True(t, strings.EqualFold(addrB, target(bobKey, "token")))
	require.Equal(t, http.StatusConflict, reg(opsKey, "token", addrA, "").Status)
	require.Equal(t, http.StatusOK, reg(opsKey, "token", addrA, "?replace=true").Status)
}

// Idempotency-Keys are scoped per key name: the same key from two clients
// makes two jobs.
func TestTenancyIdempotencyPerKey(t *testing.T) {
	t.Parallel()
	b := tenants(t)
	body := `{"to":"` + testCounter + `"}`
	a := b.as(aliceKey, http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusAccepted, a.Status, string(a.Body))
	bb := b.as(bobKey, http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusAccepted, bb.Status, string(bb.Body))
	require.NotEqual(t, a.job(t).ID, bb.job(t).ID)
	again := b.as(aliceKey, http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "order-1")
	require.Equal(t, http.StatusOK, again.Status)
	require.Equal(t, a.job(t).ID, again.job(t).ID)
}

// With per-key webhook secrets and no deployment-wide one, only a key with
// a secret may give webhook_url.
func TestTenancyWebhookSecretPerKey(t *testing.T) {
	t.Parallel()
	b := tenants(t, func(c *Config) {
		c.WebhookSecrets = map[string]string{"alice": strings.Repeat("a", 40)}
	})
	body := `{"to":"` + testCounter + `","webhook_url":"https://hooks.example.com/x"}`
	r := b.as(aliceKey, http.MethodPost, "/v1/jobs", body)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	r = b.as(bobKey, http.MethodPost, "/v1/jobs", body)
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "webhooks_disabled", r.err(t).Code)
}

// A bare key's Idempotency-Keys keep the scope they had before keys had
// names (the key's short hash), so a retry across the upgrade still finds
// its job; a named key's are scoped by its name.
func TestTenancyIdempotencyScopeKeptForBareKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.APIKeys = []string{testKey, "alice:" + aliceKey} })
	body := `{"to":"` + testCounter + `"}`
	for _, tc := range []struct{ key, scope string }{
		{testKey, hex.EncodeToString(sha256Of(testKey)[:8])},
		{aliceKey, "key:alice"},
	} {
		r := b.as(tc.key, http.MethodPost, "/v1/jobs", body, "Idempotency-Key", "retry-me")
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		idem := sha256Of(tc.scope + "\x00retry-me")
		n, err := b.rdb.Exists(t.Context(), "relayq:idem:"+hex.EncodeToString(idem)).Result()
		require.NoError(t, err)
		require.EqualValues(t, 1, n, "scope %q", tc.scope)
	}
}

// Bad RELAYQ_API_KEYS entries stop the API at start, without the key in
// the error.
func TestTenancyBadKeysRefused(t *testing.T) {
	t.Parallel()
	for _, keys := range [][]string{
		{"alice:" + aliceKey, "alice:" + bobKey},
		{"alice:" + aliceKey, "bob:" + aliceKey},
		{"alice:" + aliceKey + ":root"},
	} {
		_, err := New(t.Context(), Config{APIKeys: keys, Chains: []Chain{{Name: "x", ChainID: 1}}})
		require.ErrorContains(t, err, "api: API keys: entry")
		require.NotContains(t, err.Error(), aliceKey)
		require.NotContains(t, err.Error(), bobKey)
	}
}

func sha256Of(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}
