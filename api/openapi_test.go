package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// docURL names the document for the schema compiler; nothing is fetched.
const docURL = "https://relayq.test/openapi.json"

// notDocumented are served paths the document leaves out, with why.
var notDocumented = map[string]string{
	"/monitor/*": "asynqmon's own UI and JSON API; its routes are asynqmon's, and /monitor stands for them",
	// The UI's HTML pages and forms (ui.go, docs/ui.md): not API.
	"/ui": "ui", "/ui/": "ui", "/ui/static/*": "ui", "/ui/login": "ui", "/ui/logout": "ui",
	"/ui/jobs/{id}": "ui", "/ui/jobs/{id}/cancel": "ui", "/ui/signers": "ui", "/ui/overview": "ui",
}

// anyMethod are paths registered for every method (e.Any) whose document
// entry is GET: the handler behind them decides what else it answers.
var anyMethod = map[string]string{
	"/monitor": "asynqmon answers every method itself (405 for changes while read-only)",
}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// spec is the OpenAPI document, parsed, with a schema compiler over it.
type spec struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

// loadSpec parses the served document. Response schemas are made strict
// for the test (no properties beyond those documented), so a field the
// server sends that the document lacks fails the test; the document itself
// leaves them open, since adding a field does not break a client.
func loadSpec(t *testing.T) *spec {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(OpenAPI()))
	require.NoError(t, err, "openapi.json is not JSON")
	s := &spec{doc: doc.(map[string]any), compiled: map[string]*jsonschema.Schema{}}
	strict, err := jsonschema.UnmarshalJSON(bytes.NewReader(OpenAPI()))
	require.NoError(t, err)
	for _, sch := range strict.(map[string]any)["components"].(map[string]any)["schemas"].(map[string]any) {
		closeObjects(sch)
	}
	s.compiler = jsonschema.NewCompiler()
	s.compiler.DefaultDraft(jsonschema.Draft2020)
	s.compiler.AssertFormat()
	require.NoError(t, s.compiler.AddResource(docURL, strict))
	return s
}

// closeObjects sets additionalProperties false on every object schema
// with properties that says nothing about others.
func closeObjects(v any) {
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["properties"]; ok {
			if _, set := v["additionalProperties"]; !set {
				v["additionalProperties"] = false
			}
		}
		for _, c := range v {
			closeObjects(c)
		}
	case []any:
		for _, c := range v {
			closeObjects(c)
		}
	}
}

// at returns the value at a JSON pointer into the document.
func (s *spec) at(ptr string) (any, bool) {
	var v any = s.doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if ptr == "" {
			break
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return v, true
}

// resolve follows $ref from the object at ptr and returns where it lands.
func (s *spec) resolve(t *testing.T, ptr string) (map[string]any, string) {
	t.Helper()
	for range 10 {
		v, ok := s.at(ptr)
		require.True(t, ok, "no %s in the document", ptr)
		m, ok := v.(map[string]any)
		require.True(t, ok, "%s is not an object", ptr)
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr
		}
		require.True(t, strings.HasPrefix(ref, "#/"), "%s: only local $refs, got %s", ptr, ref)
		ptr = ref[1:]
	}
	t.Fatalf("%s: $ref chain too long", ptr)
	return nil, ""
}

// schema compiles the schema at ptr (once).
func (s *spec) schema(t *testing.T, ptr string) *jsonschema.Schema {
	t.Helper()
	if sch, ok := s.compiled[ptr]; ok {
		return sch
	}
	sch, err := s.compiler.Compile(docURL + "#" + ptr)
	require.NoError(t, err, "schema at %s", ptr)
	s.compiled[ptr] = sch
	return sch
}

// validate checks a JSON body against the schema at ptr.
func (s *spec) validate(t *testing.T, ptr string, body []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	require.NoError(t, err, "not JSON: %s", body)
	if err := s.schema(t, ptr).Validate(v); err != nil {
		t.Errorf("does not match the schema at %s: %v\n%s", ptr, err, body)
	}
}

// op is one documented operation.
type op struct {
	method, path string
	ptr          string // JSON pointer of the operation object
}

func escape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

func (s *spec) operations(t *testing.T) []op {
	t.Helper()
	var out []op
	paths := s.doc["paths"].(map[string]any)
	for p, item := range paths {
		for _, m := range methods {
			if _, ok := item.(map[string]any)[m]; ok {
				out = append(out, op{method: strings.ToUpper(m), path: p, ptr: "/paths/" + escape(p) + "/" + m})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path+out[i].method < out[j].path+out[j].method })
	return out
}

// response returns the pointer of the JSON schema the document gives for
// the status of an operation, and whether the status is documented.
func (s *spec) response(t *testing.T, o op, status int, mediaType string) (string, bool) {
	t.Helper()
	ptr := o.ptr + "/responses/" + strconv.Itoa(status)
	if _, ok := s.at(ptr); !ok {
		return "", false
	}
	r, rptr := s.resolve(t, ptr)
	content, ok := r["content"].(map[string]any)
	require.True(t, ok, "%s %s %d documents no content", o.method, o.path, status)
	_, ok = content[mediaType]
	require.True(t, ok, "%s %s %d documents no %s content", o.method, o.path, status, mediaType)
	return rptr + "/content/" + escape(mediaType) + "/schema", true
}

func (s *spec) op(t *testing.T, method, path string) op {
	t.Helper()
	for _, o := range s.operations(t) {
		if o.method == method && o.path == path {
			return o
		}
	}
	t.Fatalf("%s %s is not documented", method, path)
	return op{}
}

// The document is OpenAPI 3.1, every $ref lands, operation ids are unique,
// and every schema compiles (against JSON Schema 2020-12).
func TestOpenAPIDocumentIsWellFormed(t *testing.T) {
	t.Parallel()
	s := loadSpec(t)
	require.Regexp(t, `^3\.1\.\d+$`, s.doc["openapi"])
	var walk func(v any, where string)
	walk = func(v any, where string) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				require.True(t, strings.HasPrefix(ref, "#/"), "%s: %s", where, ref)
				_, ok := s.at(ref[1:])
				require.True(t, ok, "%s: $ref %s lands nowhere", where, ref)
			}
			for k, c := range v {
				walk(c, where+"/"+escape(k))
			}
		case []any:
			for i, c := range v {
				walk(c, where+"/"+strconv.Itoa(i))
			}
		}
	}
	walk(s.doc, "")
	ids := map[string]bool{}
	for _, o := range s.operations(t) {
		m, _ := s.resolve(t, o.ptr)
		id, _ := m["operationId"].(string)
		require.NotEmpty(t, id, "%s %s has no operationId", o.method, o.path)
		require.False(t, ids[id], "operationId %s twice", id)
		ids[id] = true
		require.NotEmpty(t, m["responses"], "%s %s has no responses", o.method, o.path)
	}
	for name := range s.doc["components"].(map[string]any)["schemas"].(map[string]any) {
		s.schema(t, "/components/schemas/"+name)
	}
}

var echoParam = regexp.MustCompile(`:([A-Za-z_]+)`)

// Every route the server registers is documented, and every documented
// route is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := loadSpec(t)
	var served, documented []string
	for _, r := range b.srv.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		p := echoParam.ReplaceAllString(r.Path, "{$1}")
		if _, skip := notDocumented[p]; skip {
			continue
		}
		if _, ok := anyMethod[p]; ok && r.Method != http.MethodGet {
			continue
		}
		served = append(served, r.Method+" "+p)
	}
	for _, o := range s.operations(t) {
		documented = append(documented, o.method+" "+o.path)
	}
	sort.Strings(served)
	served = slices.Compact(served)
	sort.Strings(documented)
	require.Equal(t, documented, served, "the routes and openapi.json disagree")
}

// Every example in the document fits the schema it illustrates: response
// examples their response's schema, and request bodies JobRequest —
// except the refused ones, which the schema must refuse too.
func TestOpenAPIExamplesValidate(t *testing.T) {
	t.Parallel()
	s := loadSpec(t)
	n := 0
	for _, o := range s.operations(t) {
		m, _ := s.resolve(t, o.ptr)
		if rb, ok := m["requestBody"]; ok {
			for mt, media := range rb.(map[string]any)["content"].(map[string]any) {
				base := o.ptr + "/requestBody/content/" + escape(mt)
				for name := range media.(map[string]any)["examples"].(map[string]any) {
					ex, _ := s.resolve(t, base+"/examples/"+escape(name))
					body, err := json.Marshal(ex["value"])
					require.NoError(t, err)
					v, _ := jsonschema.UnmarshalJSON(bytes.NewReader(body))
					err = s.schema(t, base+"/schema").Validate(v)
					if _, refused := ex["x-expected-status"]; refused {
						require.Error(t, err, "%s %s example %s is refused by the server but fits the schema", o.method, o.path, name)
					} else {
						require.NoError(t, err, "%s %s example %s", o.method, o.path, name)
					}
					n++
				}
			}
		}
		for status := range m["responses"].(map[string]any) {
			r, rptr := s.resolve(t, o.ptr+"/responses/"+status)
			for mt, media := range mapOf(r["content"]) {
				base := rptr + "/content/" + escape(mt)
				media := media.(map[string]any)
				if ex, ok := media["example"]; ok && strings.HasSuffix(mt, "json") {
					body, _ := json.Marshal(ex)
					s.validate(t, base+"/schema", body)
					n++
				}
				for name := range mapOf(media["examples"]) {
					ex, _ := s.resolve(t, base+"/examples/"+escape(name))
					body, err := json.Marshal(ex["value"])
					require.NoError(t, err)
					t.Run(fmt.Sprintf("%s %s %s %s", o.method, o.path, status, name), func(t *testing.T) {
						s.validate(t, base+"/schema", body)
					})
					n++
				}
			}
		}
	}
	require.Greater(t, n, 20, "examples checked")
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// Each example body of POST /v1/jobs, sent to a real server, gets the
// status it documents (202 unless it says otherwise), and the answer fits
// the documented schema of that status.
func TestOpenAPIRequestExamplesAgainstServer(t *testing.T) {
	t.Parallel()
	b := setup(t, withWebhookSecret)
	s := loadSpec(t)
	o := s.op(t, http.MethodPost, "/v1/jobs")
	base := o.ptr + "/requestBody/content/application~1json"
	examples := mapOf(mustAt(t, s, base+"/examples"))
	require.NotEmpty(t, examples)
	for name := range examples {
		ex, _ := s.resolve(t, base+"/examples/"+escape(name))
		body, err := json.Marshal(ex["value"])
		require.NoError(t, err)
		want, code := http.StatusAccepted, ""
		if st, ok := ex["x-expected-status"].(json.Number); ok {
			n, _ := st.Int64()
			want, code = int(n), ex["x-expected-code"].(string)
		}
		r := b.do(http.MethodPost, "/v1/jobs", string(body))
		require.Equal(t, want, r.Status, "example %s: %s", name, r.Body)
		if code != "" {
			require.Equal(t, code, r.err(t).Code, "example %s", name)
		}
		ptr, ok := s.response(t, o, r.Status, "application/json")
		require.True(t, ok, "example %s: status %d is not documented", name, r.Status)
		s.validate(t, ptr, r.Body)
	}
}

// withWebhookSecret lets jobs carry webhook_url.
func withWebhookSecret(c *Config) { c.WebhookSecret = strings.Repeat("s", 32) }

func mustAt(t *testing.T, s *spec, ptr string) any {
	t.Helper()
	v, ok := s.at(ptr)
	require.True(t, ok, "no %s in the document", ptr)
	return v
}

// Real answers of a running server — jobs in every shape the store gives
// them, lists, signers, errors of each kind — have documented statuses
// and fit the documented schemas: drift between the code and the document
// fails here.
func TestOpenAPIRealResponsesMatch(t *testing.T) {
	t.Parallel()
	b := setup(t, withWebhookSecret, func(c *Config) { c.BodyLimit = "1K" })
	s := loadSpec(t)
	ctx := context.Background()
	check := func(method, template, path, body string, want int, headers ...string) response {
		t.Helper()
		r := b.do(method, path, body, headers...)
		require.Equal(t, want, r.Status, "%s %s: %s", method, path, r.Body)
		mt := "application/json"
		if ct := r.Header.Get(echo.HeaderContentType); !strings.HasPrefix(ct, mt) {
			mt = strings.TrimSpace(strings.Split(ct, ";")[0])
		}
		ptr, ok := s.response(t, s.op(t, method, template), r.Status, mt)
		require.True(t, ok, "%s %s answered %d, which is not documented", method, template, r.Status)
		if mt == "application/json" {
			s.validate(t, ptr, r.Body)
		}
		return r
	}
	job := `{"to":"` + testCounter + `","function":"add(uint256)","args":[5],"metadata":{"order":1},"webhook_url":"https://example.com/hook"}`
	created := check("POST", "/v1/jobs", "/v1/jobs", job, 202, "Idempotency-Key", "k1").job(t)
	check("POST", "/v1/jobs", "/v1/jobs", job, 200, "Idempotency-Key", "k1")
	check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`"}`, 409, "Idempotency-Key", "k1")
	check("GET", "/v1/jobs/{id}", "/v1/jobs/"+created.ID, "", 200)

	// Walk jobs through the store as a worker would, so every field of a
	// job gets a value: submitted with an attempt, mined, confirmed, bumped;
	// another failed with an error; another cancel-requested.
	nonce := uint64(0)
	attempt := func(kind string) *jobs.Attempt {
		nonce++
		return &jobs.Attempt{Hash: fmt.Sprintf("0x%064x", nonce), Nonce: nonce, Gas: 43512, GasTipCap: "1000000000",
			GasFeeCap: "3000000000", Kind: kind, SentAt: time.Now(), SentBlock: 10}
	}
	submit := func(id string) {
		a := attempt(jobs.KindOriginal)
		require.NoError(t, b.store.TransitionIf(ctx, id, jobs.Queued, jobs.Submitted, "signed", jobs.Fields{
			"from", b.signer.Hex(), "nonce", a.Nonce, "tx_hash", a.Hash, "gas", a.Gas, "raw", "0x02", "warning", "at the fee ceiling"}, a))
	}
	submit(created.ID)
	require.NoError(t, b.store.Update(ctx, created.ID, jobs.Submitted, nil, attempt(jobs.KindBump)))
	require.NoError(t, b.store.TransitionIf(ctx, created.ID, jobs.Submitted, jobs.Mined, "mined", jobs.Fields{
		"block_number", 11, "block_hash", fmt.Sprintf("0x%064x", 99), "gas_used", 43000, "effective_gas_price", "1875000000"}, nil))
	check("GET", "/v1/jobs/{id}", "/v1/jobs/"+created.ID, "", 200)
	require.NoError(t, b.store.TransitionIf(ctx, created.ID, jobs.Mined, jobs.Confirmed, "", nil, nil))
	require.NoError(t, b.store.SetWebhookState(ctx, created.ID, jobs.WebhookState{LastEvent: created.ID + ".3", LastType: "job.confirmed",
		LastStatus: jobs.WebhookFailed, LastError: "receiver answered 500", LastAttemptAt: time.Now()}))
	check("GET", "/v1/jobs/{id}", "/v1/jobs/"+created.ID, "", 200)
	check("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/"+created.ID+"/cancel", "", 409)

	failed := check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`","data":"0x","gas_limit":"30000","confirmations":2}`, 202).job(t)
	require.NoError(t, b.store.TransitionIf(ctx, failed.ID, jobs.Queued, jobs.Failed, "reverted at estimate", jobs.Fields{
		"error", jobs.ErrorField(jobs.Error{Code: jobs.ErrCodeRevertedAtEstimate, Message: "execution reverted: no", RevertReason: "no", RevertData: "0x08c379a0"})}, nil))
	check("GET", "/v1/jobs/{id}", "/v1/jobs/"+failed.ID, "", 200)

	inFlight := check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`","from":"`+b.signer.Hex()+`","value":"1"}`, 202).job(t)
	submit(inFlight.ID)
	check("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/"+inFlight.ID+"/cancel", "", 202)
	queued := check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`"}`, 202).job(t)
	check("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/"+queued.ID+"/cancel", "", 200)

	list := check("GET", "/v1/jobs", "/v1/jobs?limit=2", "", 200)
	require.Contains(t, string(list.Body), `"next_cursor":"0`)
	check("GET", "/v1/jobs", "/v1/jobs?status=confirmed", "", 200)
	check("GET", "/v1/jobs", "/v1/jobs?status=done", "", 400)
	check("GET", "/v1/jobs/{id}", "/v1/jobs/01939c7e-0000-7000-8000-000000000000", "", 404)
	check("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/nope/cancel", "", 404)

	check("POST", "/v1/jobs", "/v1/jobs", `{"to":"0x12"}`, 400)
	check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`","metadata":{"x":"`+strings.Repeat("a", 2<<10)+`"}}`, 413)
	check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`"}`, 401, "Authorization", "")
	check("GET", "/v1/signers", "/v1/signers", "", 401, "Authorization", "Bearer nope")

	check("GET", "/v1/signers", "/v1/signers", "", 200)
	check("POST", "/v1/signers/{address}/reconcile", "/v1/signers/"+b.signer.Hex()+"/reconcile", "", 200)
	check("POST", "/v1/signers/{address}/reconcile", "/v1/signers/0x12/reconcile", "", 400)
	check("POST", "/v1/signers/{address}/reconcile", "/v1/signers/0x0000000000000000000000000000000000000001/reconcile", "", 404)

	check("GET", "/healthz", "/healthz", "", 200)
	check("GET", "/readyz", "/readyz", "", 200)
	served := check("GET", "/openapi.json", "/openapi.json", "", 200)
	require.Equal(t, OpenAPI(), served.Body, "the served document is the embedded one")
	check("GET", "/monitor", "/monitor/", "", 200)
	check("GET", "/metrics", "/metrics", "", 200)

	// 503: Redis stops answering.
	b.redis.Kill()
	check("GET", "/v1/jobs/{id}", "/v1/jobs/"+created.ID, "", 503)
	check("GET", "/readyz", "/readyz", "", 503)
}

// With keys, one more request than the burst is 429, as documented.
func TestOpenAPIRateLimitedResponseMatches(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.RateLimit, c.RateBurst = 0.001, 1 })
	s := loadSpec(t)
	o := s.op(t, http.MethodGet, "/v1/jobs")
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, "/v1/jobs", "").Status)
	r := b.do(http.MethodGet, "/v1/jobs", "")
	require.Equal(t, http.StatusTooManyRequests, r.Status)
	ptr, ok := s.response(t, o, r.Status, "application/json")
	require.True(t, ok)
	s.validate(t, ptr, r.Body)
	rr, _ := s.resolve(t, o.ptr+"/responses/429")
	require.Contains(t, mapOf(rr["headers"]), "Retry-After", "429 documents Retry-After")
}

// checker returns a function that sends a request through do and requires
// the status it is given, a status the document lists for the route
// template, and a body that fits the documented schema.
func (s *spec) checker(t *testing.T, do func(method, path, body string, headers ...string) response) func(method, template, path, body string, want int) response {
	return func(method, template, path, body string, want int) response {
		t.Helper()
		r := do(method, path, body)
		require.Equal(t, want, r.Status, "%s %s: %s", method, path, r.Body)
		ptr, ok := s.response(t, s.op(t, method, template), r.Status, "application/json")
		require.True(t, ok, "%s %s answered %d, which is not documented", method, template, r.Status)
		s.validate(t, ptr, r.Body)
		return r
	}
}
