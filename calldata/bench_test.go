package calldata_test

import (
	"encoding/json"
	"testing"

	"github.com/relayq/relayq/calldata"
)

// BenchmarkEncodeTuple is the API's ABI work for a nested argument: parse
// the signature, convert the JSON, pack.
func BenchmarkEncodeTuple(b *testing.B) {
	args := []json.RawMessage{json.RawMessage(`[["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "7", "0x01ff"], ["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", "8", "0x"]]`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := calldata.Encode("pay((address,uint256,bytes)[])", args); err != nil {
			b.Fatal(err)
		}
	}
}
