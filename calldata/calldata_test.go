package calldata

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
)

// args splits a JSON array literal into the per-argument raw values Encode
// takes, the way the HTTP layer will after decoding a request.
func args(t testing.TB, jsonArray string) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(jsonArray), &out))
	return out
}

// selector computes keccak256(canonical)[:4] directly, independently of the
// signature parser under test.
func selector(canonical string) string {
	return hex.EncodeToString(crypto.Keccak256([]byte(canonical))[:4])
}

// left and right pad a hex string to one 32-byte ABI word.
func left(h string) string  { return strings.Repeat("0", 64-len(h)) + h }
func right(h string) string { return h + strings.Repeat("0", 64-len(h)) }

// Vectors are either copied from the Solidity ABI specification (with its
// selectors) or written out by hand from the spec's encoding rules.
func TestEncodeKnownVectors(t *testing.T) {
	const (
		addrLower   = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
		addrEIP55   = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed" // from EIP-55's test list
		addrWord    = "0000000000000000000000005aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
		uint256Max  = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
		int256MinHx = "8000000000000000000000000000000000000000000000000000000000000000"
		int256MaxHx = "7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
	)
	tests := []struct {
		name string
		sig  string
		args string
		want []string // selector, then 32-byte words
	}{
		{
			name: "erc20 transfer",
			sig:  "transfer(address,uint256)",
			args: `["` + addrLower + `", "1000"]`,
			want: []string{"a9059cbb", addrWord, left("3e8")},
		},
		{
			name: "address with valid checksum and number amount",
			sig:  "transfer(address,uint256)",
			args: `["` + addrEIP55 + `", 1000]`,
			want: []string{"a9059cbb", addrWord, left("3e8")},
		},
		{
			name: "spec baz(uint32,bool)",
			sig:  "baz(uint32,bool)",
			args: `[69, true]`,
			want: []string{"cdcd77c0", left("45"), left("1")},
		},
		{
			name: "spec bar(bytes3[2])",
			sig:  "bar(bytes3[2])",
			args: `[["0x616263", "0x646566"]]`,
			want: []string{"fce353f6", right("616263"), right("646566")},
		},
		{
			name: "spec sam(bytes,bool,uint256[])",
			sig:  "sam(bytes,bool,uint256[])",
			args: `["0x64617665", true, [1, 2, 3]]`,
			want: []string{"a5643bf2",
				left("60"), left("1"), left("a0"),
				left("4"), right("64617665"),
				left("3"), left("1"), left("2"), left("3")},
		},
		{
			name: "spec f(uint256,uint32[],bytes10,bytes)",
			sig:  "f(uint256,uint32[],bytes10,bytes)",
			args: `["0x123", ["0x456", "0x789"], "0x31323334353637383930", "0x48656c6c6f2c20776f726c6421"]`,
			want: []string{"8be65246",
				left("123"), left("80"), right("31323334353637383930"), left("e0"),
				left("2"), left("456"), left("789"),
				left("d"), right("48656c6c6f2c20776f726c6421")},
		},
		{
			name: "spec g(uint[][],string[]) nested dynamic arrays, uint alias",
			sig:  "g(uint[][],string[])",
			args: `[[[1, 2], [3]], ["one", "two", "three"]]`,
			want: []string{"2289b18c",
				left("40"), left("140"),
				left("2"), left("40"), left("a0"),
				left("2"), left("1"), left("2"),
				left("1"), left("3"),
				left("3"), left("60"), left("a0"), left("e0"),
				left("3"), right("6f6e65"),
				left("3"), right("74776f"),
				left("5"), right("7468726565")},
		},
		{
			name: "uint8 max",
			sig:  "f(uint8)",
			args: `[255]`,
			want: []string{selector("f(uint8)"), left("ff")},
		},
		{
			name: "uint256 max as hex string",
			sig:  "f(uint256)",
			args: `["0x` + uint256Max + `"]`,
			want: []string{selector("f(uint256)"), uint256Max},
		},
		{
			name: "uint256 max as decimal string",
			sig:  "f(uint256)",
			args: `["115792089237316195423570985008687907853269984665640564039457584007913129639935"]`,
			want: []string{selector("f(uint256)"), uint256Max},
		},
		{
			name: "integral exponent and fraction forms",
			sig:  "f(uint256,uint256,uint256,int16)",
			args: `[1e3, 2.50e1, 1000e-3, -1.0E2]`,
			want: []string{selector("f(uint256,uint256,uint256,int16)"),
				left("3e8"), left("19"), left("1"), strings.Repeat("f", 62) + "9c"},
		},
		{
			name: "int8 negative is two's complement",
			sig:  "f(int8,int8)",
			args: `[-1, "-128"]`,
			want: []string{selector("f(int8,int8)"), strings.Repeat("f", 64), strings.Repeat("f", 62) + "80"},
		},
		{
			name: "int256 min and max",
			sig:  "f(int256,int256)",
			args: `["-0x` + int256MinHx + `", "0x` + int256MaxHx + `"]`,
			want: []string{selector("f(int256,int256)"), int256MinHx, int256MaxHx},
		},
		{
			name: "int24 uses big.Int path",
			sig:  "f(int24,uint24)",
			args: `[-8388608, 16777215]`,
			want: []string{selector("f(int24,uint24)"), strings.Repeat("f", 58) + "800000", left("ffffff")},
		},
		{
			name: "bool false and string",
			sig:  "f(bool,string)",
			args: `[false, "Hello, world!"]`,
			want: []string{selector("f(bool,string)"), left("0"), left("40"), left("d"), right("48656c6c6f2c20776f726c6421")},
		},
		{
			name: "empty bytes and empty string",
			sig:  "f(bytes,string)",
			args: `["0x", ""]`,
			want: []string{selector("f(bytes,string)"), left("40"), left("60"), left("0"), left("0")},
		},
		{
			name: "bytes1 and bytes32",
			sig:  "f(bytes1,bytes32)",
			args: `["0xAB", "0x` + strings.Repeat("11", 32) + `"]`,
			want: []string{selector("f(bytes1,bytes32)"), right("ab"), strings.Repeat("11", 32)},
		},
		{
			name: "nested fixed array uint8[2][3]",
			sig:  "f(uint8[2][3])",
			args: `[[[1, 2], [3, 4], [5, 6]]]`,
			want: []string{selector("f(uint8[2][3])"), left("1"), left("2"), left("3"), left("4"), left("5"), left("6")},
		},
		{
			name: "empty dynamic array",
			sig:  "f(address[])",
			args: `[[]]`,
			want: []string{selector("f(address[])"), left("20"), left("0")},
		},
		{
			name: "static tuple is encoded in place",
			sig:  "f((uint256,bool))",
			args: `[[7, true]]`,
			want: []string{selector("f((uint256,bool))"), left("7"), left("1")},
		},
		{
			name: "tuple containing a dynamic type",
			sig:  "f((uint256,string))",
			args: `[[1, "a"]]`,
			want: []string{selector("f((uint256,string))"), left("20"), left("1"), left("40"), left("1"), right("61")},
		},
		{
			name: "static tuple array",
			sig:  "f((uint8,bool)[])",
			args: `[[[1, true], [2, false]]]`,
			want: []string{selector("f((uint8,bool)[])"), left("20"), left("2"), left("1"), left("1"), left("2"), left("0")},
		},
		{
			name: "dynamic tuple array next to bytes32",
			sig:  "set((uint256,string)[],bytes32)",
			args: `[[[1, "a"], [2, "bc"]], "0x` + strings.Repeat("22", 32) + `"]`,
			want: []string{selector("set((uint256,string)[],bytes32)"),
				left("40"), strings.Repeat("22", 32),
				left("2"), left("40"), left("c0"),
				left("1"), left("40"), left("1"), right("61"),
				left("2"), left("40"), left("2"), right("6263")},
		},
		{
			name: "fixed array of static tuples is inline",
			sig:  "f((uint8,uint8)[2])",
			args: `[[[1, 2], [3, 4]]]`,
			want: []string{selector("f((uint8,uint8)[2])"), left("1"), left("2"), left("3"), left("4")},
		},
		{
			name: "no arguments",
			sig:  "totalSupply()",
			args: `[]`,
			want: []string{"18160ddd"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(tt.sig, args(t, tt.args))
			require.NoError(t, err)
			require.Equal(t, strings.Join(tt.want, ""), hex.EncodeToString(got))
		})
	}
}

// Round trips decode the calldata with abi.Arguments.Unpack and compare the
// printed Go values, covering the same families from the decoding side.
func TestEncodeRoundTrip(t *testing.T) {
	tests := []struct {
		sig  string
		args string
		want string // fmt.Sprint of the unpacked values
	}{
		{"f(uint8,uint64,int64)", `[0, "18446744073709551615", "-9223372036854775808"]`, "[0 18446744073709551615 -9223372036854775808]"},
		{"f(uint256,int256)", `["0xff", -5]`, "[255 -5]"},
		{"f(int8,int8)", `[-128, 127]`, "[-128 127]"},
		{"f(address)", `["0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED"]`, "[0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed]"},
		{"f(bool,string)", `[true, "héllo"]`, "[true héllo]"},
		{"f(bytes,bytes2)", `["0x0102", "0x0304"]`, "[[1 2] [3 4]]"},
		{"f(uint16[2],uint16[])", `[[1, 2], [3]]`, "[[1 2] [3]]"},
		{"f(string[][2])", `[[["a"], ["b", "c"]]]`, "[[[a] [b c]]]"},
		{"f((uint8,(string,bool[])))", `[[1, ["x", [true, false]]]]`, "[{1 {x [true false]}}]"},
		{"f((uint256,string)[2][])", `[[[[1, "a"], [2, "b"]]]]`, "[[[{1 a} {2 b}]]]"},
	}
	for _, tt := range tests {
		t.Run(tt.sig, func(t *testing.T) {
			got, err := Encode(tt.sig, args(t, tt.args))
			require.NoError(t, err)
			m, err := ParseSignature(tt.sig)
			require.NoError(t, err)
			require.Equal(t, m.ID, got[:4])
			values, err := m.Inputs.Unpack(got[4:])
			require.NoError(t, err)
			require.Equal(t, tt.want, fmt.Sprint(values))
		})
	}
}

func TestParseSignature(t *testing.T) {
	tests := []struct {
		sig      string
		wantSig  string
		wantID   string
		inputs   int
		outputs  int
		outTypes string
	}{
		{"transfer(address,uint256)", "transfer(address,uint256)", "a9059cbb", 2, 0, ""},
		{"  transfer ( address , uint )  ", "transfer(address,uint256)", "a9059cbb", 2, 0, ""},
		{"balanceOf(address)(uint256)", "balanceOf(address)", "70a08231", 1, 1, "uint256"},
		{"getReserves()(uint112,uint112,uint32)", "getReserves()", "0902f1ac", 0, 3, "uint112,uint112,uint32"},
		{"f(uint256[007])", "f(uint256[7])", selector("f(uint256[7])"), 1, 0, ""},
		{"f( ( uint , string )[2][] , int )", "f((uint256,string)[2][],int256)", selector("f((uint256,string)[2][],int256)"), 2, 0, ""},
		{"$_x9(bytes)", "$_x9(bytes)", selector("$_x9(bytes)"), 1, 0, ""},
		{"f()()", "f()", selector("f()"), 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.sig, func(t *testing.T) {
			m, err := ParseSignature(tt.sig)
			require.NoError(t, err)
			require.Equal(t, tt.wantSig, m.Sig)
			require.Equal(t, tt.wantID, hex.EncodeToString(m.ID))
			require.Len(t, m.Inputs, tt.inputs)
			require.Len(t, m.Outputs, tt.outputs)
			var outTypes []string
			for _, o := range m.Outputs {
				outTypes = append(outTypes, o.Type.String())
			}
			require.Equal(t, tt.outTypes, strings.Join(outTypes, ","))
		})
	}
}

// The optional return list lets a read endpoint reuse the parser to decode
// results; Encode ignores it.
func TestOutputsDecode(t *testing.T) {
	data, err := Encode("balanceOf(address)(uint256)", args(t, `["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"]`))
	require.NoError(t, err)
	require.Equal(t, "70a08231", hex.EncodeToString(data[:4]))

	m, err := ParseSignature("balanceOf(address)(uint256)")
	require.NoError(t, err)
	ret, err := hex.DecodeString(left("2a"))
	require.NoError(t, err)
	out, err := m.Outputs.Unpack(ret)
	require.NoError(t, err)
	require.Equal(t, []any{big.NewInt(42)}, out)
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		sig     string
		args    string
		code    string
		field   string
		message string // substring of Message
	}{
		// integers
		{"uint8 too big", "f(uint8)", `[256]`, CodeOutOfRange, "args[0]", "args[0]: 256 is out of range for uint8 (0 to 255)"},
		{"uint256 negative", "f(uint256)", `[-1]`, CodeOutOfRange, "args[0]", "-1 is out of range for uint256 (0 to 2^256-1)"},
		{"uint256 negative string", "f(uint256)", `["-1"]`, CodeOutOfRange, "args[0]", `"-1" is out of range for uint256`},
		{"uint256 2^256", "f(uint256)", `["0x1` + strings.Repeat("0", 64) + `"]`, CodeOutOfRange, "args[0]", "out of range for uint256"},
		{"uint256 79 digits", "f(uint256)", `["` + strings.Repeat("9", 79) + `"]`, CodeOutOfRange, "args[0]", "out of range"},
		{"int8 128", "f(int8)", `[128]`, CodeOutOfRange, "args[0]", "128 is out of range for int8 (-128 to 127)"},
		{"int8 -129", "f(int8)", `[-129]`, CodeOutOfRange, "args[0]", "-129 is out of range for int8"},
		{"int256 max+1", "f(int256)", `["0x8` + strings.Repeat("0", 63) + `"]`, CodeOutOfRange, "args[0]", "(-2^255 to 2^255-1)"},
		{"uint64 max+1", "f(uint64)", `["18446744073709551616"]`, CodeOutOfRange, "args[0]", "(0 to 18446744073709551615)"},
		{"huge exponent", "f(uint256)", `[1e999999999999]`, CodeOutOfRange, "args[0]", "1e999999999999 is out of range"},
		{"1e78", "f(uint256)", `[1e78]`, CodeOutOfRange, "args[0]", "out of range"},
		{"fraction number", "f(uint256)", `[1.5]`, CodeInvalidArgument, "args[0]", "args[0]: 1.5 is not an integer for uint256"},
		{"fraction string", "f(uint256)", `["1.5"]`, CodeInvalidArgument, "args[0]", `args[0]: "1.5" is not an integer for uint256`},
		{"negative exponent", "f(uint256)", `[1e-3]`, CodeInvalidArgument, "args[0]", "1e-3 is not an integer"},
		{"exponent in string", "f(uint256)", `["1e3"]`, CodeInvalidArgument, "args[0]", `"1e3" is not an integer for uint256 (integer strings are decimal digits or 0x-hex`},
		{"garbage string", "f(address,uint256)", `["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "12x"]`, CodeInvalidArgument, "args[1]", `args[1]: "12x" is not an integer for uint256`},
		{"empty string", "f(uint256)", `[""]`, CodeInvalidArgument, "args[0]", `"" is not an integer`},
		{"bare 0x", "f(uint256)", `["0x"]`, CodeInvalidArgument, "args[0]", `"0x" is not an integer`},
		{"plus sign", "f(uint256)", `["+1"]`, CodeInvalidArgument, "args[0]", `"+1" is not an integer`},
		{"spaces in string", "f(uint256)", `[" 1"]`, CodeInvalidArgument, "args[0]", "is not an integer"},
		{"bool as integer", "f(uint256)", `[true]`, CodeInvalidArgument, "args[0]", "expected an integer (JSON number, decimal string or 0x-hex string) for uint256, got true"},
		{"null as integer", "f(uint256)", `[null]`, CodeInvalidArgument, "args[0]", "got null"},
		// address
		{"address too short", "f(address)", `["0x1234"]`, CodeInvalidArgument, "args[0]", `"0x1234" is not an address: expected 0x followed by 40 hex digits`},
		{"address no prefix", "f(address)", `["5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"]`, CodeInvalidArgument, "args[0]", "is not an address"},
		{"address not hex", "f(address)", `["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg"]`, CodeInvalidArgument, "args[0]", "is not an address"},
		{"address bad checksum", "f(address)", `["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"]`, CodeInvalidArgument, "args[0]", "invalid EIP-55 checksum"},
		{"address as number", "f(address)", `[1]`, CodeInvalidArgument, "args[0]", "expected a 0x-prefixed hex address string for address, got 1"},
		// bool, string
		{"bool as string", "f(bool)", `["true"]`, CodeInvalidArgument, "args[0]", `expected true or false for bool, got "true"`},
		{"bool as number", "f(bool)", `[1]`, CodeInvalidArgument, "args[0]", "got 1"},
		{"string as number", "f(string)", `[5]`, CodeInvalidArgument, "args[0]", "expected a JSON string for string, got 5"},
		// bytes
		{"bytes32 with 31 bytes", "f(bytes32)", `["0x` + strings.Repeat("ab", 31) + `"]`, CodeInvalidArgument, "args[0]", "expected exactly 32 bytes for bytes32, got 31"},
		{"bytes1 with 2 bytes", "f(bytes1)", `["0xabcd"]`, CodeInvalidArgument, "args[0]", "expected exactly 1 byte for bytes1, got 2"},
		{"odd hex", "f(bytes)", `["0x123"]`, CodeInvalidArgument, "args[0]", `"0x123" has an odd number of hex digits for bytes`},
		{"bytes without 0x", "f(bytes)", `["1234"]`, CodeInvalidArgument, "args[0]", "is not 0x-prefixed hex"},
		{"bytes not hex", "f(bytes)", `["0xzz"]`, CodeInvalidArgument, "args[0]", "is not valid hex"},
		// arrays and tuples
		{"fixed array too short", "f(uint256[3])", `[[1, 2]]`, CodeInvalidArgument, "args[0]", "expected 3 elements for uint256[3], got 2"},
		{"fixed array too long", "f(uint256[1])", `[[1, 2]]`, CodeInvalidArgument, "args[0]", "expected 1 element for uint256[1], got 2"},
		{"array as scalar", "f(uint256[])", `[1]`, CodeInvalidArgument, "args[0]", "expected a JSON array for uint256[], got 1"},
		{"nested element path", "f(uint8[][])", `[[[1], [2, 300]]]`, CodeOutOfRange, "args[0][1][1]", "args[0][1][1]: 300 is out of range for uint8"},
		{"tuple component path", "f(address,(uint256,bool))", `["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", [1, "yes"]]`, CodeInvalidArgument, "args[1][1]", `args[1][1]: expected true or false for bool, got "yes"`},
		{"tuple as object", "f((uint256,bool))", `[{"a": 1, "b": true}]`, CodeInvalidArgument, "args[0]", "expected a JSON array of 2 components for (uint256,bool), got a JSON object (tuples are positional"},
		{"tuple wrong size", "f((uint256,bool))", `[[1]]`, CodeInvalidArgument, "args[0]", "expected 2 components for (uint256,bool), got 1"},
		{"tuple array element path", "f((uint256,string)[])", `[[[1, "a"], [2, 3]]]`, CodeInvalidArgument, "args[0][1][1]", "expected a JSON string for string, got 3"},
		// argument count
		{"too few args", "transfer(address,uint256)", `["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"]`, CodeWrongArgCount, "args", "args: transfer(address,uint256) takes 2 arguments, got 1"},
		{"too many args", "f()", `[1]`, CodeWrongArgCount, "args", "f() takes 0 arguments, got 1"},
		// signatures
		{"uint7", "f(uint7)", `[1]`, CodeInvalidFunction, "function", `function: unknown type "uint7": integer sizes must be a multiple of 8 from 8 to 256`},
		{"uint264", "f(uint264)", `[1]`, CodeInvalidFunction, "function", `unknown type "uint264"`},
		{"int0", "f(int0)", `[1]`, CodeInvalidFunction, "function", `unknown type "int0"`},
		{"uint08 leading zero", "f(uint08)", `[1]`, CodeInvalidFunction, "function", `unknown type "uint08"`},
		{"bytes0", "f(bytes0)", `["0x"]`, CodeInvalidFunction, "function", `unknown type "bytes0": fixed bytes sizes must be from 1 to 32`},
		{"bytes33", "f(bytes33)", `["0x"]`, CodeInvalidFunction, "function", `unknown type "bytes33"`},
		{"foo", "f(foo)", `[1]`, CodeInvalidFunction, "function", `function: unknown type "foo"`},
		{"uppercase type", "f(Uint256)", `[1]`, CodeInvalidFunction, "function", `unknown type "Uint256"`},
		{"suffix after size", "f(uint256abc)", `[1]`, CodeInvalidFunction, "function", `unknown type "uint256abc"`},
		{"function type", "f(function)", `["0x"]`, CodeInvalidFunction, "function", "the function type is not supported"},
		{"fixed point", "f(fixed128x18)", `[1]`, CodeInvalidFunction, "function", `fixed-point type "fixed128x18" is not supported`},
		{"tuple keyword", "f(tuple(uint256))", `[[1]]`, CodeInvalidFunction, "function", "write tuple types as (type1,type2,...)"},
		{"unclosed list", "transfer(address", `[]`, CodeInvalidFunction, "function", `function: expected ',' or ')', got end of input at offset 16 in "transfer(address"`},
		{"empty name", "(address)", `[]`, CodeInvalidFunction, "function", "function name is empty"},
		{"empty signature", "", `[]`, CodeInvalidFunction, "function", "function name is empty"},
		{"name starting with digit", "1f()", `[]`, CodeInvalidFunction, "function", "invalid function name at offset 0"},
		{"no parentheses", "transfer", `[]`, CodeInvalidFunction, "function", `expected '(' after function name "transfer"`},
		{"space separator", "f(uint256 uint8)", `[]`, CodeInvalidFunction, "function", "parameter names and data locations are not supported"},
		{"parameter name", "transfer(address to, uint256 amount)", `[]`, CodeInvalidFunction, "function", `expected ',' or ')' after "address", got "to, uint256 amount)" at offset 17 in "transfer(address to, uint256 amount)"; parameter names and data locations are not supported`},
		{"semicolon separator", "f(uint256;uint8)", `[]`, CodeInvalidFunction, "function", `expected ',' or ')' after "uint256"`},
		{"empty parameter", "f(uint256,)", `[]`, CodeInvalidFunction, "function", "expected a type"},
		{"leading comma", "f(,uint256)", `[]`, CodeInvalidFunction, "function", "expected a type"},
		{"empty tuple", "f(())", `[[]]`, CodeInvalidFunction, "function", "empty tuple () is not a valid parameter type"},
		{"zero length array", "f(uint256[0])", `[[]]`, CodeInvalidFunction, "function", `invalid array length "0" at offset 10 in "f(uint256[0])"; fixed array lengths must be at least 1`},
		{"unclosed array", "f(uint256[2)", `[]`, CodeInvalidFunction, "function", "expected ']' in array type"},
		{"huge fixed array", "f(uint8[99999999999999999999999])", `[[]]`, CodeInvalidFunction, "function", "at most 65536 values"},
		{"nested fixed arrays too big", "f(uint8[65536][2])", `[[]]`, CodeInvalidFunction, "function", "at most 65536 values"},
		{"too deep", "f(uint8" + strings.Repeat("[]", 40) + ")", `[[]]`, CodeInvalidFunction, "function", "nested more than 32 levels"},
		{"too deep tuples", "f(" + strings.Repeat("(", 40) + "uint8" + strings.Repeat(")", 40) + ")", `[[]]`, CodeInvalidFunction, "function", "nested more than 32 levels"},
		{"trailing garbage", "f()x", `[]`, CodeInvalidFunction, "function", `unexpected "x" after the parameter list`},
		{"three lists", "f()()()", `[]`, CodeInvalidFunction, "function", "unexpected"},
		{"bad output type", "balanceOf(address)(uint7)", `[]`, CodeInvalidFunction, "function", `unknown type "uint7"`},
		{"too long", "f(" + strings.Repeat("uint8,", 700) + "uint8)", `[]`, CodeInvalidFunction, "function", "at most 4096 are allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Encode(tt.sig, args(t, tt.args))
			require.Error(t, err)
			require.Nil(t, out)
			var e *Error
			require.True(t, errors.As(err, &e), "error %T is not *Error", err)
			require.Equal(t, tt.code, e.Code, e.Message)
			require.Equal(t, tt.field, e.Field, e.Message)
			require.Contains(t, e.Message, tt.message)
			require.True(t, strings.HasPrefix(e.Message, e.Field+": "), e.Message)
			require.Equal(t, e.Message, err.Error())
			require.Equal(t, strings.ToLower(e.Message[:1]), e.Message[:1])
		})
	}
}

// Callers other than the HTTP layer may build RawMessages by hand; broken or
// missing JSON must be an error, not a panic or a zero value.
func TestEncodeMalformedRawJSON(t *testing.T) {
	tests := []struct {
		sig string
		raw string
	}{
		{"f(uint256)", ``},
		{"f(uint256)", `12 34`},
		{"f(uint256)", `01`},
		{"f(uint256)", `1.`},
		{"f(uint256)", `-`},
		{"f(uint256)", `"12`},
		{"f(string)", `"abc`},
		{"f(bool)", `tru`},
		{"f(uint256[])", `[1,`},
		{"f((uint256))", `[1`},
		{"f(address)", `"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed`},
	}
	for _, tt := range tests {
		t.Run(tt.sig+" "+tt.raw, func(t *testing.T) {
			_, err := Encode(tt.sig, []json.RawMessage{json.RawMessage(tt.raw)})
			var e *Error
			require.True(t, errors.As(err, &e), "got %v", err)
			require.Equal(t, CodeInvalidArgument, e.Code)
			require.Equal(t, "args[0]", e.Field)
		})
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("transfer(address,uint256)", `["0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed","1000"]`)
	f.Add("set((uint256,string)[],bytes32)", `[[[1,"a"]],"0x`+strings.Repeat("00", 32)+`"]`)
	f.Add("f(int8[2][],bool,bytes)", `[[[-1,1e2]],true,"0x00"]`)
	f.Add("f((uint8,(string,address[])[2]))", `[[1,[["x",[]],["y",[]]]]]`)
	f.Add("balanceOf(address)(uint256)", `["0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED"]`)
	f.Add("f(uint256)", `[1.5e1]`)
	f.Add("transfer(address", `{`)
	f.Fuzz(func(t *testing.T, sig, argsJSON string) {
		var raws []json.RawMessage
		if json.Unmarshal([]byte(argsJSON), &raws) != nil {
			// Not a JSON array: feed it as a single raw value to
			// exercise the malformed-input paths too.
			raws = []json.RawMessage{json.RawMessage(argsJSON)}
		}
		out, err := Encode(sig, raws)
		if err != nil {
			var e *Error
			require.True(t, errors.As(err, &e), "error %T is not *Error", err)
			require.Contains(t, []string{CodeInvalidFunction, CodeWrongArgCount, CodeInvalidArgument, CodeOutOfRange}, e.Code)
			require.True(t, strings.HasPrefix(e.Message, e.Field+": "), e.Message)
			return
		}
		m, err := ParseSignature(sig)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(out), 4)
		require.Equal(t, m.ID, out[:4])
		require.Zero(t, (len(out)-4)%32)
		_, err = m.Inputs.Unpack(out[4:])
		require.NoError(t, err)
	})
}

func BenchmarkEncodeTransfer(b *testing.B) {
	raws := args(b, `["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "1000000000000000000"]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode("transfer(address,uint256)", raws); err != nil {
			b.Fatal(err)
		}
	}
}
