package calldata_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/calldata"
)

// Every ABI type family decodes to the JSON a caller would have sent to
// encode it: what goes in as arguments comes back out as results.
func TestDecodeOutputsEveryTypeFamily(t *testing.T) {
	t.Parallel()
	types := "uint8,int256,uint64,address,bool,string,bytes,bytes32,bytes4,uint256[],int16[3],(address,uint64)[2],(bool,(string,bytes))"
	a1, a2 := "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
	args := `["255", "-57896044618658097711785492504343953926634992332820282019728792003956564819968", "18446744073709551615",
		"` + a1 + `", true, "héllo, world", "0x0102ff", "0x` + strings.Repeat("ab", 32) + `", "0xdeadbeef",
		["1", "115792089237316195423570985008687907853269984665640564039457584007913129639935"], ["-1", "0", "32767"],
		[["` + a1 + `", "7"], ["` + a2 + `", "8"]], [false, ["nested", "0x"]]]`
	var raw []json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(args), &raw))
	data, err := calldata.Encode("f("+types+")", raw)
	require.NoError(t, err)

	m, err := calldata.ParseSignature("g()(" + types + ")")
	require.NoError(t, err)
	got, err := calldata.DecodeOutputs(m, data[4:])
	require.NoError(t, err)
	gotJSON, err := json.Marshal(got)
	require.NoError(t, err)
	require.JSONEq(t, args, string(gotJSON))
}

func TestDecodeOutputsErrors(t *testing.T) {
	t.Parallel()
	m, err := calldata.ParseSignature("balanceOf(address)(uint256)")
	require.NoError(t, err)
	_, err = calldata.DecodeOutputs(m, nil)
	require.ErrorContains(t, err, "returned no data")
	_, err = calldata.DecodeOutputs(m, []byte{1, 2, 3})
	require.ErrorContains(t, err, "cannot decode the result as (uint256)")

	none, err := calldata.ParseSignature("poke()")
	require.NoError(t, err)
	out, err := calldata.DecodeOutputs(none, nil)
	require.NoError(t, err)
	require.Empty(t, out)
}
