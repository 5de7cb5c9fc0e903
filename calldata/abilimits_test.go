package calldata_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/calldata"
)

// Every type of a client's ABI, not only the called function's inputs, is
// held to the signature limits; the error names the entry and the type.
func TestParseABILimits(t *testing.T) {
	t.Parallel()
	fn := `{"type":"function","name":"f","inputs":[],"outputs":[]}`
	tests := []struct {
		name    string
		abi     string
		message string // "" when the ABI is accepted
	}{
		{"ordinary", `[` + fn + `,{"type":"error","name":"E","inputs":[{"name":"x","type":"uint256[3]"}]}]`, ""},
		{"function type in an event", `[{"type":"event","name":"Ev","inputs":[{"name":"cb","type":"function","indexed":false}]}]`, ""},
		{"at the element limit", `[{"type":"error","name":"E","inputs":[{"name":"x","type":"uint8[256][256]"}]}]`, ""},
		{"huge error", `[` + fn + `,{"type":"error","name":"E","inputs":[{"name":"","type":"uint256[100000000000][10]"}]}]`,
			`error "E" (entry 1) input 0 has type "uint256[100000000000][10]": invalid array length "100000000000"`},
		{"product over the limit", `[{"type":"error","name":"E","inputs":[{"name":"a","type":"uint8[65536][2]"}]}]`,
			`error "E" (entry 0) input 0 ("a") has type "uint8[65536][2]": invalid array length "2"`},
		{"function output", `[{"type":"function","name":"g","inputs":[],"outputs":[{"name":"","type":"bytes32[70000]"}]}]`,
			`function "g" (entry 0) output 0 has type "bytes32[70000]"`},
		{"event input", `[{"type":"event","name":"Ev","inputs":[{"name":"v","type":"uint256[1000][1000]","indexed":false}]}]`,
			`event "Ev" (entry 0) input 0 ("v") has type "uint256[1000][1000]"`},
		{"constructor", `[{"type":"constructor","inputs":[{"name":"v","type":"uint256[0]"}]}]`,
			`constructor (entry 0) input 0 ("v") has type "uint256[0]"`},
		{"tuple holding too much", `[{"type":"error","name":"T","inputs":[{"name":"t","type":"tuple[2]","components":[
			{"name":"a","type":"uint256[40000]"},{"name":"b","type":"uint256[40000]"}]}]}]`,
			`error "T" (entry 0) input 0 ("t") has type "(uint256[40000],uint256[40000])[2]": tuple holds more than 65536 values`},
		{"nested too deep", `[{"type":"error","name":"D","inputs":[{"name":"d","type":"uint256` + strings.Repeat("[]", 40) + `"}]}]`,
			`types are nested more than 32 levels deep`},
		{"tuples nested too deep", `[{"type":"error","name":"D","inputs":[` + nestedTuple(40) + `]}]`,
			`tuples are nested more than 32 levels deep`},
		{"unknown type", `[{"type":"error","name":"U","inputs":[{"name":"u","type":"uint7"}]}]`,
			`error "U" (entry 0) input 0 ("u") has type "uint7": unknown type "uint7"`},
		{"not an ABI", `[{"type":"error","name":"E","inputs":{}}]`, `cannot parse the ABI`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := calldata.ParseABI([]byte(tc.abi))
			if tc.message == "" {
				require.NoError(t, err)
				return
			}
			var ce *calldata.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, calldata.CodeInvalidABI, ce.Code)
			require.Equal(t, "abi", ce.Field)
			require.Contains(t, ce.Message, tc.message)

			// A stored record from before the limits still parses.
			if tc.name != "not an ABI" && tc.name != "unknown type" && !strings.Contains(tc.name, "deep") {
				_, err = calldata.ParseStoredABI([]byte(tc.abi))
				require.NoError(t, err)
			}
		})
	}
}

func nestedTuple(depth int) string {
	s := `{"name":"x","type":"uint256"}`
	for i := 0; i < depth; i++ {
		s = `{"name":"x","type":"tuple","components":[` + s + `]}`
	}
	return s
}

// The decode of node data against a type is bounded by the data's length:
// a fixed array bigger than the data, a dynamic array of large static
// elements, and offsets that point many strings at the same bytes are
// refused before anything is allocated; honest data of the same types
// decodes.
func TestUnpackValuesBounded(t *testing.T) {
	t.Parallel()
	word := func(v uint64) []byte {
		b := make([]byte, 32)
		for i := 0; i < 8; i++ {
			b[31-i] = byte(v >> (8 * i))
		}
		return b
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	// string[] of n elements, every offset pointing at one string of l bytes.
	overlap := func(n, l uint64) []byte {
		out := cat(word(32), word(n))
		for i := uint64(0); i < n; i++ {
			out = append(out, word(n*32)...) // relative to the array's content
		}
		return cat(out, word(l), make([]byte, (l+31)/32*32))
	}
	tests := []struct {
		name    string
		types   string
		data    []byte
		tooBig  bool // ErrDecodeTooLarge
		decodes bool
	}{
		{"terabyte fixed array", "uint256[100000000000][10]", make([]byte, 320), false, false},
		{"slice of big static arrays", "uint256[65536][]", cat(word(32), word(1000), make([]byte, 32000)), true, false},
		{"overlapping strings", "string[]", overlap(2000, 30000), true, false},
		{"one big string", "string", cat(word(32), word(30000), make([]byte, 30016)), false, true},
		{"honest slice", "uint256[]", cat(word(32), word(1000), make([]byte, 32000)), false, true},
		{"honest fixed array", "uint256[10]", make([]byte, 320), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			typ, err := abi.NewType(tc.types, "", nil)
			require.NoError(t, err)
			args := abi.Arguments{{Type: typ}}
			vals, err := calldata.UnpackValues(args, tc.data)
			if tc.decodes {
				require.NoError(t, err)
				require.Len(t, vals, 1)
				return
			}
			require.Error(t, err)
			require.Equal(t, tc.tooBig, errors.Is(err, calldata.ErrDecodeTooLarge), "error: %v", err)
		})
	}
}

// DecodeOutputs on a stored ABI's function whose output type is huge
// reports an error instead of allocating.
func TestDecodeOutputsHostileStoredABI(t *testing.T) {
	t.Parallel()
	a, err := calldata.ParseStoredABI([]byte(`[{"type":"function","name":"g","inputs":[],"outputs":[{"name":"","type":"uint256[100000000000][10]"}]}]`))
	require.NoError(t, err)
	_, err = calldata.DecodeOutputs(a.Methods["g"], make([]byte, 320))
	require.ErrorContains(t, err, "cannot decode the result")
	require.Equal(t, crypto.Keccak256([]byte("g()"))[:4], a.Methods["g"].ID)
}
