package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
)

// overloadedABI declares f twice, and the selectors differ.
const overloadedABI = `[
 {"type":"function","name":"f","stateMutability":"nonpayable","inputs":[{"name":"a","type":"uint256"}],"outputs":[]},
 {"type":"function","name":"f","stateMutability":"nonpayable","inputs":[{"name":"a","type":"uint256"},{"name":"b","type":"uint256"}],"outputs":[]}
]`

func registerCounter(t *testing.T, b *bundle, name, addr string) response {
	t.Helper()
	return b.do(http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":%q,"address":%q,"abi":%s}`, name, addr, contract.ABIJSON))
}

func mustEncode(t *testing.T, sig string, args ...string) string {
	t.Helper()
	raw := make([]json.RawMessage, len(args))
	for i, a := range args {
		raw[i] = json.RawMessage(a)
	}
	data, err := calldata.Encode(sig, raw)
	require.NoError(t, err)
	return hexutil.Encode(data)
}

// The registry over HTTP: 201 for a new name, 200 for the same contract
// again (whatever the ABI's spacing), 409 for a different one (which
// changes nothing) unless ?replace=true, 404 for an unknown name, and 400s
// that name the field for bad registrations.
func TestContractRegistration(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := registerCounter(t, b, "counter", testCounter)
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	require.Equal(t, "/v1/contracts/counter", r.Header.Get("Location"))
	var ct jobs.Contract
	require.NoError(t, json.Unmarshal(r.Body, &ct))
	require.Equal(t, "counter", ct.Name)
	require.Equal(t, testCounter, ct.Address)
	require.True(t, strings.HasPrefix(ct.ABIHash, "0x"))

	// The same ABI with other spacing is the same contract.
	spaced := strings.ReplaceAll(contract.ABIJSON, ",", " , ")
	r = b.do(http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":"counter","address":%q,"abi":%s}`, strings.ToLower(testCounter), spaced))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	other := "0x00000000000000000000000000000000000000aa"
	r = registerCounter(t, b, "counter", other)
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	require.Equal(t, "contract_exists", r.err(t).Code)
	require.Equal(t, "name", r.err(t).Field)
	r = b.do(http.MethodGet, "/v1/contracts/counter", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.NoError(t, json.Unmarshal(r.Body, &ct))
	require.Equal(t, testCounter, ct.Address, "a refused registration changes nothing")
	var abiBack []map[string]any
	require.NoError(t, json.Unmarshal(ct.ABI, &abiBack))
	require.NotEmpty(t, abiBack)

	r = b.do(http.MethodPost, "/v1/contracts?replace=true", fmt.Sprintf(`{"name":"counter","address":%q,"abi":%s}`, other, contract.ABIJSON))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = b.do(http.MethodGet, "/v1/contracts/counter", "")
	require.NoError(t, json.Unmarshal(r.Body, &ct))
	require.Equal(t, "0x00000000000000000000000000000000000000AA", ct.Address)

	r = b.do(http.MethodGet, "/v1/contracts/nope", "")
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, CodeNotFound, r.err(t).Code)

	for _, tc := range []struct{ path, body, code, field string }{
		{"/v1/contracts", `{"address":"` + testCounter + `","abi":[]}`, "missing_field", "name"},
		{"/v1/contracts", `{"name":"a b","address":"` + testCounter + `","abi":[]}`, "invalid_name", "name"},
		{"/v1/contracts", `{"name":"` + strings.Repeat("a", 65) + `","address":"` + testCounter + `","abi":[]}`, "invalid_name", "name"},
		{"/v1/contracts", `{"name":"x","abi":[]}`, "missing_field", "address"},
		{"/v1/contracts", `{"name":"x","address":"0x12","abi":[]}`, "invalid_address", "address"},
		{"/v1/contracts", `{"name":"x","address":"` + testCounter + `"}`, "missing_field", "abi"},
		{"/v1/contracts", `{"name":"x","address":"` + testCounter + `","abi":{"type":"function"}}`, calldata.CodeInvalidABI, "abi"},
		{"/v1/contracts", `{"name":"x","address":"` + testCounter + `","abi":[{"type":"function","name":"f","inputs":[{"type":"uint"}]}]}`, calldata.CodeInvalidABI, "abi"},
		{"/v1/contracts", `{"name":"x","address":"` + testCounter + `","abi":[],"extra":1}`, "unknown_field", "extra"},
		{"/v1/contracts?replace=maybe", `{"name":"x","address":"` + testCounter + `","abi":[]}`, "invalid_parameter", "replace"},
		{"/v1/contracts?force=1", `{"name":"x","address":"` + testCounter + `","abi":[]}`, "unknown_parameter", "force"},
	} {
		r := b.do(http.MethodPost, tc.path, tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, tc.body)
		require.Equal(t, tc.code, r.err(t).Code, string(r.Body))
		require.Equal(t, tc.field, r.err(t).Field, string(r.Body))
	}
	r = b.do(http.MethodGet, "/v1/contracts/x", "")
	require.Equal(t, http.StatusNotFound, r.Status, "a refused registration stores nothing")
}

// A job may name its function as a method of an inline ABI or of a
// registered contract (to then defaults to its address); either way its
// calldata is what the signature would give, and an overload is picked by
// its signature.
func TestJobByABIMethod(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := mustEncode(t, "add(uint256)", "5")

	r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","abi":`+contract.ABIJSON+`,"method":"add","args":[5]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	j := r.job(t)
	require.Equal(t, want, j.Data)
	require.Equal(t, "add(uint256)", j.Function)
	require.JSONEq(t, `[5]`, string(j.Args))

	require.Equal(t, http.StatusCreated, registerCounter(t, b, "counter", testCounter).Status)
	r = b.do(http.MethodPost, "/v1/jobs", `{"contract":"counter","method":"add","args":["5"]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	j = r.job(t)
	require.Equal(t, want, j.Data)
	require.Equal(t, testCounter, j.To)
	r = b.do(http.MethodPost, "/v1/jobs", `{"contract":"counter","to":"`+strings.ToLower(testCounter)+`","method":"add(uint256)","args":[5]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))

	// Overloads: the name alone is ambiguous, the signature picks one.
	r = b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","abi":`+overloadedABI+`,"method":"f","args":[1]}`)
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, calldata.CodeAmbiguousMethod, r.err(t).Code)
	require.Equal(t, "method", r.err(t).Field)
	require.Contains(t, r.err(t).Message, "f(uint256,uint256)")
	for sig, args := range map[string][]string{"f(uint256)": {"1"}, "f( uint256 , uint256 )": {"1", "2"}} {
		r = b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","abi":`+overloadedABI+`,"method":"`+sig+`","args":[`+strings.Join(args, ",")+`]}`)
		require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
		require.Equal(t, mustEncode(t, strings.ReplaceAll(sig, " ", ""), args...), r.job(t).Data, sig)
	}
}

// Bad ABI requests are 400s that name the field, and store nothing.
func TestJobByABIMethodBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, http.StatusCreated, registerCounter(t, b, "counter", testCounter).Status)
	abiJSON := contract.ABIJSON
	to := `"to":"` + testCounter + `",`
	for _, tc := range []struct{ body, code, field string }{
		{`{` + to + `"abi":` + abiJSON + `,"method":"nope"}`, calldata.CodeUnknownMethod, "method"},
		{`{` + to + `"abi":` + abiJSON + `,"method":"add(uint8)","args":[1]}`, calldata.CodeUnknownMethod, "method"},
		{`{"contract":"nope","method":"add","args":[1]}`, "unknown_contract", "contract"},
		{`{"contract":"bad name!","method":"add","args":[1]}`, "unknown_contract", "contract"},
		{`{"contract":"counter","to":"0x00000000000000000000000000000000000000aa","method":"add","args":[1]}`, "conflicting_fields", "to"},
		{`{"contract":"counter","method":"add"}`, calldata.CodeWrongArgCount, "args"},
		{`{"contract":"counter","method":"add","args":[-1]}`, calldata.CodeOutOfRange, "args[0]"},
		{`{"contract":"counter","args":[1]}`, "missing_field", "method"},
		{`{` + to + `"method":"add","args":[1]}`, "missing_field", "abi"},
		{`{` + to + `"abi":` + abiJSON + `,"args":[1]}`, "missing_field", "method"},
		{`{"contract":"counter","abi":` + abiJSON + `,"method":"add","args":[1]}`, "conflicting_fields", "abi"},
		{`{"contract":"counter","method":"add","function":"add(uint256)","args":[1]}`, "conflicting_fields", "function"},
		{`{"contract":"counter","method":"add","data":"0x"}`, "conflicting_fields", "data"},
		{`{` + to + `"abi":"[]","method":"add"}`, calldata.CodeInvalidABI, "abi"},
		{`{` + to + `"abi":[{"type":"function","name":"add","inputs":[{"type":"uint7"}]}],"method":"add"}`, calldata.CodeInvalidABI, "abi"}, // every type of the ABI is held to the signature limits
		{`{` + to + `"abi":[` + strings.Repeat(`{"type":"event","name":"E","inputs":[]},`, 7000) + `{"type":"event","name":"E","inputs":[]}],"method":"add"}`, "too_large", "abi"},
	} {
		r := b.do(http.MethodPost, "/v1/jobs", tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", clip(tc.body), r.Body)
		require.Equal(t, tc.code, r.err(t).Code, string(r.Body))
		require.Equal(t, tc.field, r.err(t).Field, string(r.Body))
	}
	// In a batch, the error names the item.
	r := b.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[{"contract":"counter","method":"add","args":[1]},{"contract":"counter","method":"nope"}]}`)
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "jobs[1].method", r.err(t).Field)
	require.Zero(t, b.jobCount())
}

// The idempotency hash is over the resolved target and calldata: the same
// call by signature and by ABI method is the same request, another
// argument is not.
func TestJobByABIMethodIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, http.StatusCreated, registerCounter(t, b, "counter", testCounter).Status)
	r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","function":"add(uint256)","args":[7]}`, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	id := r.job(t).ID
	r = b.do(http.MethodPost, "/v1/jobs", `{"contract":"counter","method":"add","args":[7]}`, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, id, r.job(t).ID)
	r = b.do(http.MethodPost, "/v1/jobs", `{"contract":"counter","method":"add","args":[8]}`, "Idempotency-Key", "k1")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
}

// Reads by a registered contract's method decode its outputs; a revert of
// a read or of a dry run decodes the custom error with the request's ABI,
// not the API's (which is nil here: by signature it stays a selector).
func TestABIReadsAndRevertsDecode(t *testing.T) {
	t.Parallel()
	cb := setupChain(t, func(c *Config) { c.ErrorABI = nil })
	require.Equal(t, http.StatusCreated, registerCounter(t, cb.bundle, "counter", cb.counter.Hex()).Status)

	r, ans := cb.call(`{"contract":"counter","method":"divide","args":[84,2]}`)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, []any{"42"}, ans.Result)
	r, ans = cb.call(`{"to":"` + cb.counter.Hex() + `","abi":` + contract.ABIJSON + `,"method":"MAX_ADD"}`)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, []any{"1000"}, ans.Result)

	const reason = "TooLarge(given: 2000, max: 1000)"
	for _, body := range []string{
		`{"contract":"counter","method":"add","args":[2000]}`,
		`{"to":"` + cb.counter.Hex() + `","abi":` + contract.ABIJSON + `,"method":"add","args":[2000]}`,
	} {
		r, _ = cb.call(body)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
		e := revertErr(t, r)
		require.Equal(t, CodeReverted, e.Code)
		require.Equal(t, reason, e.RevertReason)
		require.Equal(t, "execution reverted: "+reason, e.Message)

		dry := strings.TrimSuffix(body, "}") + `,"simulate":true}`
		r = cb.do(http.MethodPost, "/v1/jobs", dry)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
		require.Equal(t, reason, revertErr(t, r).RevertReason)
	}
	r = cb.do(http.MethodPost, "/v1/jobs", `{"to":"`+cb.counter.Hex()+`","function":"add(uint256)","args":[2000],"simulate":true}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	require.True(t, strings.HasPrefix(revertErr(t, r).RevertReason, "custom error 0x"), string(r.Body))
	// Error(string) is decoded whatever the ABI.
	r, _ = cb.call(`{"contract":"counter","method":"fail","args":["no"]}`)
	require.Equal(t, "no", revertErr(t, r).RevertReason)
	require.Zero(t, cb.jobCount())
}

// The registry's real answers have documented statuses and fit the
// documented schemas, and its request examples get the status they
// document.
func TestOpenAPIContractsMatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := loadSpec(t)
	check := s.checker(t, b.do)
	o := s.op(t, http.MethodPost, "/v1/contracts")
	base := o.ptr + "/requestBody/content/application~1json"
	for name := range mapOf(mustAt(t, s, base+"/examples")) {
		ex, _ := s.resolve(t, base+"/examples/"+escape(name))
		body, err := json.Marshal(ex["value"])
		require.NoError(t, err)
		want := http.StatusCreated
		if st, ok := ex["x-expected-status"].(json.Number); ok {
			n, _ := st.Int64()
			want = int(n)
		}
		check("POST", "/v1/contracts", "/v1/contracts", string(body), want)
	}
	check("POST", "/v1/contracts", "/v1/contracts", `{"name":"c2","address":"`+testCounter+`","abi":`+contract.ABIJSON+`}`, 201)
	check("POST", "/v1/contracts", "/v1/contracts", `{"name":"c2","address":"`+testCounter+`","abi":`+contract.ABIJSON+`}`, 200)
	check("POST", "/v1/contracts", "/v1/contracts", `{"name":"c2","address":"`+testCounter+`","abi":[]}`, 409)
	check("POST", "/v1/contracts", "/v1/contracts?replace=true", `{"name":"c2","address":"`+testCounter+`","abi":[]}`, 200)
	check("POST", "/v1/contracts", "/v1/contracts", `{"name":"c3","address":"`+testCounter+`","abi":{}}`, 400)
	check("GET", "/v1/contracts/{name}", "/v1/contracts/c2", "", 200)
	check("GET", "/v1/contracts/{name}", "/v1/contracts/none", "", 404)
	check("POST", "/v1/jobs", "/v1/jobs", `{"contract":"c2","method":"add","args":[1]}`, 400)
	check("POST", "/v1/jobs", "/v1/jobs", `{"contract":"counter","method":"add","args":[1]}`, 202)
	b.redis.Kill()
	check("GET", "/v1/contracts/{name}", "/v1/contracts/c2", "", 503)
	check("POST", "/v1/contracts", "/v1/contracts", `{"name":"c4","address":"`+testCounter+`","abi":[]}`, 503)
	r := b.do(http.MethodPost, "/v1/jobs", `{"contract":"uncached","method":"add","args":[1]}`)
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "a registry that cannot be read is the API's trouble, not the caller's")
}

// A request's ABI that does not declare the custom error leaves it to the
// API's ErrorABI: the request's ABI adds names, it never hides one.
func TestRequestABIFallsBackToErrorABI(t *testing.T) {
	t.Parallel()
	cb := setupChain(t) // ErrorABI: the sample contract's
	onlyAdd := `[{"type":"function","name":"add","stateMutability":"nonpayable","inputs":[{"name":"n","type":"uint256"}],"outputs":[]}]`
	r, _ := cb.call(`{"to":"` + cb.counter.Hex() + `","abi":` + onlyAdd + `,"method":"add","args":[2000]}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	require.Equal(t, "TooLarge(given: 2000, max: 1000)", revertErr(t, r).RevertReason)
}
