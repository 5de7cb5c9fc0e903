package calldata_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/internal/devchain/contract"
)

func rawArgs(args ...string) []json.RawMessage {
	out := make([]json.RawMessage, len(args))
	for i, a := range args {
		out[i] = json.RawMessage(a)
	}
	return out
}

// A method of a JSON ABI encodes as its signature does, tuples with named
// components (solc's structs) included, and names the bad argument.
func TestEncodeMethodMatchesEncode(t *testing.T) {
	t.Parallel()
	a, err := calldata.ParseABI([]byte(contract.ABIJSON))
	require.NoError(t, err)
	for _, tc := range []struct {
		method, sig string
		args        []json.RawMessage
	}{
		{"add", "add(uint256)", rawArgs(`"12345"`)},
		{"increment", "increment()", rawArgs()},
		{"store", "store(bytes32,address[],(uint256,string))", rawArgs(
			`"0x1111111111111111111111111111111111111111111111111111111111111111"`,
			`["0x00000000000000000000000000000000000000aa"]`, `[7,"a note"]`)},
	} {
		m, err := calldata.FindMethod(&a, tc.method)
		require.NoError(t, err, tc.method)
		got, err := calldata.EncodeMethod(m, tc.args)
		require.NoError(t, err, tc.method)
		want, err := calldata.Encode(tc.sig, tc.args)
		require.NoError(t, err, tc.sig)
		require.Equal(t, want, got, tc.method)
	}
	m, err := calldata.FindMethod(&a, "store")
	require.NoError(t, err)
	_, err = calldata.EncodeMethod(m, rawArgs(`"0x11"`, `[]`, `[1,"x"]`))
	var ce *calldata.Error
	require.True(t, errors.As(err, &ce))
	require.Equal(t, "args[0]", ce.Field)

	m, err = calldata.FindMethod(&a, "membersOf")
	require.NoError(t, err)
	require.Equal(t, "membersOf(bytes32)(address[])", calldata.Signature(m), "the signature carries the outputs, for reads")
}

// FindMethod: a name, or a signature in any spacing; an overloaded name
// is ambiguous and an absent one unknown, both naming "method". A stored
// ABI from before ParseABI refused non-Solidity types may still hold one:
// FindMethod refuses to call it.
func TestFindMethod(t *testing.T) {
	t.Parallel()
	a, err := calldata.ParseStoredABI([]byte(`[
	 {"type":"function","name":"f","inputs":[{"type":"uint256"}],"outputs":[]},
	 {"type":"function","name":"f","inputs":[{"type":"uint256"},{"type":"address"}],"outputs":[]},
	 {"type":"function","name":"g","inputs":[{"type":"uint7"}],"outputs":[]}
	]`))
	require.NoError(t, err)
	m, err := calldata.FindMethod(&a, " f( uint , address ) ")
	require.NoError(t, err)
	require.Equal(t, "f(uint256,address)", m.Sig)
	m, err = calldata.FindMethod(&a, "f(uint256)")
	require.NoError(t, err)
	require.Equal(t, "f(uint256)", m.Sig)
	for name, code := range map[string]string{
		"f":          calldata.CodeAmbiguousMethod,
		"h":          calldata.CodeUnknownMethod,
		"f(address)": calldata.CodeUnknownMethod,
		"":           calldata.CodeUnknownMethod,
		"g":          calldata.CodeInvalidFunction, // uint7 is no Solidity type
	} {
		_, err := calldata.FindMethod(&a, name)
		var ce *calldata.Error
		require.True(t, errors.As(err, &ce), name)
		require.Equal(t, code, ce.Code, name)
		require.Equal(t, "method", ce.Field, name)
	}
}

// ParseABI refuses what is not an ABI array, with Field "abi".
func TestParseABIRefuses(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `{}`, `"[]"`, `[{"type":"function","name":"f","inputs":[{"type":"uint"}]}]`, `[1]`, `[`} {
		_, err := calldata.ParseABI([]byte(in))
		var ce *calldata.Error
		require.True(t, errors.As(err, &ce), in)
		require.Equal(t, calldata.CodeInvalidABI, ce.Code, in)
		require.Equal(t, "abi", ce.Field, in)
	}
}

// DeclaresError: by the selector of revert data, nil-safe.
func TestDeclaresError(t *testing.T) {
	t.Parallel()
	a, err := calldata.ParseABI([]byte(contract.ABIJSON))
	require.NoError(t, err)
	id := a.Errors["TooLarge"].ID
	require.True(t, calldata.DeclaresError(&a, append(id[:4:4], make([]byte, 64)...)))
	require.False(t, calldata.DeclaresError(&a, []byte{1, 2, 3, 4}))
	require.False(t, calldata.DeclaresError(nil, id[:4]))
	require.False(t, calldata.DeclaresError(&a, id[:3]))
}
