package api

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeJSON: every body the API reads goes through decodeJSON; on
// any input it either binds a valid JSON object or answers with a coded
// 400 error, never panics, and a job request it binds validates without
// panicking. Run in CI for a few seconds (make fuzz).
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"to":"` + testCounter + `","function":"add(uint256)","args":[1]}`,
		`{"to":"` + testCounter + `","to":"0x0000000000000000000000000000000000000001"}`,
		`{"To":"` + testCounter + `"}`,
		`{"to":"` + testCounter + `","metadata":{"a":{"b":1,"b":2}},"value":"1"}`,
		`{"to":"` + testCounter + `","method":"add","args":[1],"abi":[{"type":"function","name":"add","inputs":[{"name":"n","type":"uint256"}],"outputs":[]}]}`,
		`{"jobs":[{"to":"` + testCounter + `"},{"to":"` + testCounter + `","value":1,"value":2}]}`,
		`{"name":"c","address":"` + testCounter + `","abi":[]}`,
		`{"to":"` + testCounter + `","function":"count()(uint256)","block":"latest"}`,
		`{"to":`, ``, `[]`, `{} {}`, `{"a":[[[[[[{"b":1,"b":1}]]]]]]}`, `{"data":"0x","gas_limit":"21000","confirmations":3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&jobRequest{}, &callRequest{}, &contractRequest{}, &batchRequest{}} {
			e := decodeJSON(body, v)
			if e != nil {
				if e.Code == "" || e.Message == "" {
					t.Fatalf("error without a code or message: %+v", e)
				}
				continue
			}
			if !json.Valid(body) {
				t.Fatalf("decodeJSON accepted invalid JSON %q", body)
			}
			if r, ok := v.(*jobRequest); ok && r.Contract == nil {
				_, _ = r.validate() // must not panic
			}
		}
	})
}
