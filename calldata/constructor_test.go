package calldata_test

import (
	"encoding/json"
	"errors"
	"math/big"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/internal/devchain/contract"
)

func jsonArgs(t *testing.T, s string) []json.RawMessage {
	t.Helper()
	var args []json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(s), &args))
	return args
}

// Constructor arguments are packed as go-ethereum packs them, with no
// selector; the errors name the constructor and the argument at fault.
func TestEncodeConstructor(t *testing.T) {
	t.Parallel()
	tally := contract.TallyABI
	got, err := calldata.EncodeConstructor(&tally, jsonArgs(t, `["5", "hello"]`))
	require.NoError(t, err)
	want, err := tally.Pack("", big.NewInt(5), "hello")
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, "constructor(uint256,string)", calldata.ConstructorSignature(&tally))

	for name, tc := range map[string]struct {
		abi        string
		args       string
		code, part string
	}{
		"too few":           {contract.TallyABIJSON, `["5"]`, "wrong_arg_count", "constructor(uint256,string) takes 2 arguments, got 1"},
		"wrong type":        {contract.TallyABIJSON, `["x", "hello"]`, "invalid_argument", "args[0]"},
		"negative":          {contract.TallyABIJSON, `["-1", "hello"]`, "", "args[0]"},
		"no constructor":    {contract.ABIJSON, `[1]`, "wrong_arg_count", "no constructor"},
		"no args, no ctor":  {contract.ABIJSON, `[]`, "", ""},
		"string not number": {contract.TallyABIJSON, `[5, 6]`, "", "args[1]"},
	} {
		a, err := calldata.ParseABI([]byte(tc.abi))
		require.NoError(t, err, name)
		_, err = calldata.EncodeConstructor(&a, jsonArgs(t, tc.args))
		if tc.part == "" {
			require.NoError(t, err, name)
			continue
		}
		var ce *calldata.Error
		require.True(t, errors.As(err, &ce), "%s: %v", name, err)
		require.Contains(t, ce.Message, tc.part, name)
		if tc.code != "" {
			require.Equal(t, tc.code, ce.Code, name)
		}
	}
}
