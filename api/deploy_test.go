package api

import (
	"context"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
)

var (
	tallyCode   = hexutil.Encode(contract.TallyBytecode)
	counterCode = hexutil.Encode(contract.Bytecode)
)

// tallyBody is a deployment of Tally with these constructor args.
func tallyBody(args string, extra ...string) string {
	return `{"bytecode":"` + tallyCode + `","abi":` + contract.TallyABIJSON + `,"args":` + args + strings.Join(extra, "") + `}`
}

// A deployment is a job without to: its data is the initcode (bytecode
// and the constructor's encoded args), "to" is null, and the function
// names the constructor.
func TestDeploymentRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	packed, err := contract.TallyABI.Pack("", big.NewInt(5), "five")
	require.NoError(t, err)

	for _, tc := range []struct {
		name, body, data, function string
	}{
		{"data", `{"data":"` + counterCode + `"}`, counterCode, ""},
		{"bytecode alone", `{"bytecode":"` + counterCode + `"}`, counterCode, ""},
		{"bytecode with an ABI without constructor", `{"bytecode":"` + counterCode + `","abi":` + contract.ABIJSON + `}`, counterCode, "constructor()"},
		{"bytecode, abi and args", tallyBody(`["5","five"]`), tallyCode + hexutil.Encode(packed)[2:], "constructor(uint256,string)"},
		{"value for a payable constructor", tallyBody(`["5","five"]`, `,"value":"7"`), tallyCode + hexutil.Encode(packed)[2:], "constructor(uint256,string)"},
	} {
		r := b.do(http.MethodPost, "/v1/jobs", tc.body)
		require.Equal(t, http.StatusAccepted, r.Status, "%s: %s", tc.name, r.Body)
		var m map[string]any
		require.NoError(t, json.Unmarshal(r.Body, &m))
		require.Contains(t, m, "to", tc.name)
		require.Nil(t, m["to"], "%s: a deployment's to is null", tc.name)
		require.NotContains(t, m, "contract_address", "%s: no nonce bound yet", tc.name)
		j := r.job(t)
		require.Equal(t, tc.data, j.Data, tc.name)
		require.Equal(t, tc.function, j.Function, tc.name)
		require.True(t, j.Deployment(), tc.name)

		got := b.do(http.MethodGet, "/v1/jobs/"+j.ID, "")
		require.Equal(t, http.StatusOK, got.Status)
		gj := got.job(t)
		require.True(t, gj.Deployment(), tc.name)
	}
	require.Equal(t, int64(5), b.jobCount())
	require.Equal(t, 5, b.queued())

	// A batch takes deployments beside calls.
	r := b.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+tallyBody(`["1","one"]`)+`,{"to":"`+testCounter+`","function":"increment()"}]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Equal(t, int64(7), b.jobCount())
}

// Every malformed deployment is a 400 naming its field, and stores and
// enqueues nothing.
func TestDeploymentBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t)
	abiJSON := contract.TallyABIJSON
	// Mostly zeros, so the creation's own cost, not the calldata floor,
	// decides: enough gas for a call with that data is too little for it.
	zeros := "0x60" + strings.Repeat("00", 999)
	callGas := big.NewInt(int64(intrinsicGasOf(hexutil.MustDecode(zeros), false))).String()
	huge := "0x" + strings.Repeat("60", maxInitcode+1)
	nearly := "0x" + strings.Repeat("60", maxInitcode-40) // under the limit until its args are appended
	for _, tc := range []struct{ name, body, code, field string }{
		{"neither to nor initcode", `{}`, "missing_field", "to"},
		{"value alone", `{"value":"1"}`, "missing_field", "to"},
		{"data and bytecode", `{"data":"` + counterCode + `","bytecode":"` + counterCode + `"}`, "conflicting_fields", "data"},
		{"to and bytecode", `{"to":"` + testCounter + `","bytecode":"` + counterCode + `"}`, "conflicting_fields", "to"},
		{"bytecode and function", `{"bytecode":"` + counterCode + `","function":"f()"}`, "conflicting_fields", "function"},
		{"bytecode and method", `{"bytecode":"` + counterCode + `","abi":` + abiJSON + `,"method":"increment"}`, "conflicting_fields", "method"},
		{"bytecode and contract", `{"bytecode":"` + counterCode + `","contract":"c"}`, "conflicting_fields", "contract"},
		{"data with args", `{"data":"` + counterCode + `","args":[1]}`, "conflicting_fields", "data"},
		{"data with abi", `{"data":"` + counterCode + `","abi":` + abiJSON + `}`, "conflicting_fields", "data"},
		{"args without abi", `{"bytecode":"` + tallyCode + `","args":["5","x"]}`, "missing_field", "abi"},
		{"args without constructor", `{"bytecode":"` + counterCode + `","abi":` + contract.ABIJSON + `,"args":[1]}`, calldata.CodeWrongArgCount, "args"},
		{"too few args", tallyBody(`["5"]`), calldata.CodeWrongArgCount, "args"},
		{"no args", tallyBody(`[]`), calldata.CodeWrongArgCount, "args"},
		{"wrong type", tallyBody(`[{"a":1},"x"]`), calldata.CodeInvalidArgument, "args[0]"},
		{"negative", tallyBody(`["-5","x"]`), calldata.CodeOutOfRange, "args[0]"},
		{"not hex", `{"bytecode":"0xzz"}`, "invalid_data", "bytecode"},
		{"odd hex", `{"bytecode":"0x123"}`, "invalid_data", "bytecode"},
		{"empty bytecode", `{"bytecode":"0x"}`, "invalid_data", "bytecode"},
		{"empty data", `{"data":"0x"}`, "invalid_data", "data"},
		{"data over EIP-3860", `{"data":"` + huge + `"}`, "too_large", "data"},
		{"bytecode over EIP-3860", `{"bytecode":"` + huge + `"}`, "too_large", "bytecode"},
		{"initcode over EIP-3860 with its args", `{"bytecode":"` + nearly + `","abi":` + abiJSON + `,"args":["1","` + strings.Repeat("a", 100) + `"]}`, "too_large", "bytecode"},
		{"hostile abi", `{"bytecode":"` + counterCode + `","abi":[{"type":"constructor","inputs":[{"type":"uint256[100000000000][10]"}]}],"args":[[]]}`, calldata.CodeInvalidABI, "abi"},
		{"abi not an array", `{"bytecode":"` + counterCode + `","abi":"[]"}`, calldata.CodeInvalidABI, "abi"},
		{"gas_limit under a creation's intrinsic gas", `{"data":"` + zeros + `","gas_limit":` + callGas + `}`, "out_of_range", "gas_limit"},
	} {
		r := b.do(http.MethodPost, "/v1/jobs", tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %s", tc.name, r.Body)
		require.Equal(t, tc.code, r.err(t).Code, "%s: %s", tc.name, r.Body)
		require.Equal(t, tc.field, r.err(t).Field, "%s: %s", tc.name, r.Body)
	}
	// The intrinsic gas of a creation is what the limit is held to: a
	// call with the same data needs 32,000 less and more per word.
	r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","data":"`+zeros+`","gas_limit":`+callGas+`}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Equal(t, uint64(21000+32000+2), intrinsicGasOf([]byte{0}, true)-4, "base, creation and one word of initcode, plus a zero byte")

	// In a batch the error names the item, and no job of it is stored.
	r = b.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+tallyBody(`["1","one"]`)+`,`+tallyBody(`["1"]`)+`]}`)
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "jobs[1].args", r.err(t).Field)

	// A read has a to.
	r = b.do(http.MethodPost, "/v1/calls", `{"data":"`+counterCode+`"}`)
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Equal(t, "to", r.err(t).Field)

	require.Equal(t, int64(1), b.jobCount(), "only the call")
	require.Equal(t, 1, b.queued())
}

// An Idempotency-Key returns the first deployment for the same request,
// and is a 409 for other constructor args; a call of the zero address
// with the same data is another request.
func TestDeploymentIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(http.MethodPost, "/v1/jobs", tallyBody(`["5","five"]`), "Idempotency-Key", "d1")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	id := r.job(t).ID
	r = b.do(http.MethodPost, "/v1/jobs", tallyBody(`[5, "five"]`), "Idempotency-Key", "d1")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, id, r.job(t).ID)
	// The same initcode given as data is the same deployment.
	r = b.do(http.MethodPost, "/v1/jobs", `{"data":"`+r.job(t).Data+`"}`, "Idempotency-Key", "d1")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, id, r.job(t).ID)
	r = b.do(http.MethodPost, "/v1/jobs", tallyBody(`["6","five"]`), "Idempotency-Key", "d1")
	require.Equal(t, http.StatusConflict, r.Status, string(r.Body))
	r = b.do(http.MethodPost, "/v1/jobs", `{"to":"0x0000000000000000000000000000000000000000","data":"`+counterCode+`"}`, "Idempotency-Key", "d2")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	r = b.do(http.MethodPost, "/v1/jobs", `{"data":"`+counterCode+`"}`, "Idempotency-Key", "d2")
	require.Equal(t, http.StatusConflict, r.Status, "a deployment is not a call of the zero address: %s", r.Body)
	require.Equal(t, int64(2), b.jobCount())
}

// A dry run of a deployment runs its constructor: one that reverts is 422
// with the reason decoded by the request's ABI, and is not stored.
func TestDeploymentDryRun(t *testing.T) {
	t.Parallel()
	cb := setupChain(t, func(c *Config) { c.ErrorABI = nil })
	for _, tc := range []struct{ name, args, reason string }{
		{"custom error of the request's ABI", `["2000","big"]`, "TooLarge(given: 2000, max: 1000)"},
		{"Error(string)", `["5",""]`, "empty label"},
	} {
		r := cb.do(http.MethodPost, "/v1/jobs", tallyBody(tc.args, `,"simulate":true`))
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s: %s", tc.name, r.Body)
		e := revertErr(t, r)
		require.Equal(t, CodeReverted, e.Code, tc.name)
		require.Equal(t, tc.reason, e.RevertReason, tc.name)
	}
	// In a batch, the dry run names the deployment that would fail.
	r := cb.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+tallyBody(`["5","five"]`, `,"simulate":true`)+`,`+tallyBody(`["2000","big"]`, `,"simulate":true`)+`]}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, string(r.Body))
	require.Equal(t, "TooLarge(given: 2000, max: 1000)", revertErr(t, r).RevertReason)
	require.Contains(t, string(r.Body), "jobs[1]")
	require.Zero(t, cb.jobCount())
	estimates := cb.proxy.Calls("eth_estimateGas")
	r = cb.do(http.MethodPost, "/v1/jobs", tallyBody(`["5","five"]`, `,"simulate":true`))
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.Equal(t, estimates+1, cb.proxy.Calls("eth_estimateGas"))
	require.Equal(t, 1, cb.queued())
}

// A deployment's answers fit the document's closed schemas at every
// shape: queued with "to" null, with a predicted contract_address, and
// confirmed with the receipt's; in a list too.
func TestOpenAPIDeploymentsMatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := loadSpec(t)
	check := s.checker(t, b.do)
	ctx := context.Background()
	j := check("POST", "/v1/jobs", "/v1/jobs", tallyBody(`["5","five"]`), 202).job(t)
	check("POST", "/v1/jobs", "/v1/jobs", `{"data":"0x","bytecode":"0x60"}`, 400)

	require.NoError(t, b.store.Update(ctx, j.ID, jobs.Queued, jobs.Fields{"from", b.signer.Hex(), "nonce", 3}, nil))
	r := check("GET", "/v1/jobs/{id}", "/v1/jobs/"+j.ID, "", 200)
	require.Equal(t, crypto.CreateAddress(b.signer, 3).Hex(), r.job(t).ContractAddress)

	// The UI shows it as a deployment, at its address.
	br := newBrowser(t, b.http.URL)
	require.Equal(t, http.StatusSeeOther, br.login(testKey).Status)
	p := br.get("/ui/jobs/" + j.ID)
	require.Equal(t, http.StatusOK, p.Status)
	require.Contains(t, p.Body, `deploy, constructor(uint256,string)`)
	require.Contains(t, p.Body, `<code id="job-contract">`+crypto.CreateAddress(b.signer, 3).Hex()+`</code>`)

	require.NoError(t, b.store.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Submitted, "", jobs.Fields{"tx_hash", "0x" + strings.Repeat("ab", 32)}, nil))
	require.NoError(t, b.store.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, "", jobs.Fields{
		"block_number", 9, "block_hash", "0x" + strings.Repeat("cd", 32), "gas_used", 300000, "effective_gas_price", "1000",
		"receipt_status", 1, "contract_address", crypto.CreateAddress(b.signer, 3).Hex()}, nil))
	require.NoError(t, b.store.TransitionIf(ctx, j.ID, jobs.Mined, jobs.Confirmed, "", nil, nil))
	r = check("GET", "/v1/jobs/{id}", "/v1/jobs/"+j.ID, "", 200)
	require.Equal(t, crypto.CreateAddress(b.signer, 3).Hex(), r.job(t).ContractAddress)
	check("GET", "/v1/jobs", "/v1/jobs", "", 200)
}
