package api

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// A duplicate key anywhere in a body is invalid_json, and a key that names
// a field only case-insensitively is unknown_field, on every route that
// reads a body; neither stores anything. Before, encoding/json kept the
// last duplicate ({"to":A,"to":B} made a job to B) and bound "To" to to.
func TestStrictJSONKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := "0x0000000000000000000000000000000000000001"
	abi := `[{"type":"function","name":"add","inputs":[{"name":"n","type":"uint256"}],"outputs":[]}]`
	for _, tc := range []struct {
		name, path, body, code, field string
	}{
		{"duplicate to", "/v1/jobs", `{"to":"` + testCounter + `","to":"` + other + `"}`, "invalid_json", "to"},
		{"duplicate with other spacing", "/v1/jobs", `{"to":"` + testCounter + `", "data":"0x", "to" :"` + testCounter + `"}`, "invalid_json", "to"},
		{"duplicate spelled with an escape", "/v1/jobs", `{"to":"` + testCounter + `","\u0074o":"` + other + `"}`, "invalid_json", "to"},
		{"duplicate in metadata", "/v1/jobs", `{"to":"` + testCounter + `","metadata":{"a":{"b":1,"b":2}}}`, "invalid_json", "metadata.a.b"},
		{"duplicate in an abi entry", "/v1/jobs", `{"to":"` + testCounter + `","method":"add","args":[1],"abi":[{"type":"function","name":"add","name":"sub","inputs":[{"name":"n","type":"uint256"}],"outputs":[]}]}`, "invalid_json", "abi[0].name"},
		{"case-insensitive field", "/v1/jobs", `{"To":"` + testCounter + `"}`, "unknown_field", "To"},
		{"case-insensitive next to the field", "/v1/jobs", `{"to":"` + testCounter + `","TO":"` + other + `"}`, "unknown_field", "TO"},
		{"call: duplicate", "/v1/calls", `{"to":"` + testCounter + `","function":"count()(uint256)","function":"x()"}`, "invalid_json", "function"},
		{"call: case", "/v1/calls", `{"to":"` + testCounter + `","Function":"count()(uint256)"}`, "unknown_field", "Function"},
		{"contract: duplicate", "/v1/contracts", `{"name":"c","address":"` + testCounter + `","address":"` + other + `","abi":` + abi + `}`, "invalid_json", "address"},
		{"contract: case", "/v1/contracts", `{"Name":"c","address":"` + testCounter + `","abi":` + abi + `}`, "unknown_field", "Name"},
		{"batch: duplicate in a job", "/v1/jobs/batch", `{"jobs":[{"to":"` + testCounter + `"},{"to":"` + testCounter + `","value":1,"value":2}]}`, "invalid_json", "jobs[1].value"},
		{"batch: duplicate top-level", "/v1/jobs/batch", `{"jobs":[{"to":"` + testCounter + `"}],"jobs":[]}`, "invalid_json", "jobs"},
		{"batch: case in a job", "/v1/jobs/batch", `{"jobs":[{"To":"` + testCounter + `"}]}`, "unknown_field", "jobs[0].To"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.do(http.MethodPost, tc.path, tc.body)
			require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
			e := r.err(t)
			require.Equal(t, tc.code, e.Code, e.Message)
			require.Equal(t, tc.field, e.Field, e.Message)
		})
	}
	require.Zero(t, b.jobCount(), "no refused body stored a job")
	r := b.do(http.MethodGet, "/v1/contracts/c", "")
	require.Equal(t, http.StatusNotFound, r.Status, "nor a contract")

	// The same keys once each, in any case the fields use, are accepted:
	// keys that differ only by case are different keys in metadata.
	r = b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","metadata":{"a":1,"A":2}}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.JSONEq(t, `{"a":1,"A":2}`, string(r.job(t).Metadata))
}
