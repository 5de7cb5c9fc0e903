package calldata_test

import (
	"bytes"
	"encoding/json"
	"math/big"
	"runtime"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/internal/devchain/contract"
)

// The fuzz targets run in CI for a few seconds each (make fuzz); seeds are
// below and crashers found so far under testdata/fuzz.

// FuzzParseSignature: any string either parses to a canonical signature
// that parses again to itself, or is refused with an *Error; encoding any
// JSON arguments against it never panics.
func FuzzParseSignature(f *testing.F) {
	for _, s := range []string{
		"transfer(address,uint256)", "balanceOf(address)(uint256)", "set((uint256,string)[],bytes32)",
		"f(uint256[100000000000][10])", "f(uint8[65536][65536])", "f(" + strings.Repeat("(", 40) + "uint256" + strings.Repeat(")", 40) + ")",
		"f(uint256" + strings.Repeat("[]", 40) + ")", " f ( uint , int8 [ 2 ] ) ", "f(uint07)", "f(bytes0)", "transfer", "f()(", "",
	} {
		f.Add(s, `[]`)
	}
	f.Add("f(uint256[],(bool,string))", `[["1","0x2"],[true,"x"]]`)
	f.Add("f(bytes32[2])", `[["0x`+strings.Repeat("00", 32)+`","0x`+strings.Repeat("ff", 32)+`"]]`)
	f.Fuzz(func(t *testing.T, sig, args string) {
		m, err := calldata.ParseSignature(sig)
		if err != nil {
			var ce *calldata.Error
			if !asCalldataError(err, &ce) || ce.Code == "" {
				t.Fatalf("ParseSignature(%q): %v is not an *Error with a code", sig, err)
			}
			return
		}
		again, err := calldata.ParseSignature(calldata.Signature(m))
		if err != nil || again.Sig != m.Sig || !bytes.Equal(again.ID, m.ID) {
			t.Fatalf("%q parsed as %q, which parses as %q (%v)", sig, calldata.Signature(m), again.Sig, err)
		}
		var raw []json.RawMessage
		if json.Unmarshal([]byte(args), &raw) == nil {
			_, _ = calldata.Encode(sig, raw) // must not panic
		}
	})
}

// FuzzParseABI: a client's ABI is parsed and held to the limits, or refused
// with an invalid_abi *Error naming "abi"; every function of an accepted ABI
// can be looked up, and the lenient parse of stored ABIs never panics.
func FuzzParseABI(f *testing.F) {
	for _, s := range []string{
		contract.ABIJSON, `[]`, `{}`, `[1]`,
		`[{"type":"error","name":"E","inputs":[{"name":"","type":"uint256[100000000000][10]"}]}]`,
		`[{"type":"error","name":"Big","inputs":[{"name":"","type":"uint256[65536][]"}]}]`,
		`[{"type":"event","name":"Ev","inputs":[{"name":"cb","type":"function","indexed":true}]}]`,
		`[{"type":"function","name":"f","inputs":[{"name":"t","type":"tuple[2]","components":[{"name":"a","type":"uint256[]"},{"name":"b","type":"string"}]}],"outputs":[{"name":"","type":"bytes"}]}]`,
		`[{"type":"constructor","inputs":[{"name":"v","type":"uint256[0]"}]}]`,
		`[{"type":"function","name":"f","inputs":[{"name":"t","type":"tuple","components":[]}]}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		stored, serr := calldata.ParseStoredABI(raw)
		a, err := calldata.ParseABI(raw)
		if err != nil {
			var ce *calldata.Error
			if !asCalldataError(err, &ce) || ce.Code != calldata.CodeInvalidABI || ce.Field != "abi" {
				t.Fatalf("ParseABI: %v is not an invalid_abi *Error", err)
			}
			return
		}
		if serr != nil {
			t.Fatalf("ParseABI accepted what ParseStoredABI refuses: %v", serr)
		}
		if len(stored.Methods) != len(a.Methods) || len(stored.Errors) != len(a.Errors) {
			t.Fatalf("the two parses differ")
		}
		for name, m := range a.Methods {
			if _, err := calldata.FindMethod(&a, name); err != nil {
				var ce *calldata.Error
				if !asCalldataError(err, &ce) {
					t.Fatalf("FindMethod(%q): %v", name, err)
				}
			}
			_, _ = calldata.EncodeMethod(m, nil)
		}
	})
}

// FuzzDecode: decoding node data (returned or reverted) against the
// outputs of a stored ABI's functions and the inputs of its errors never
// panics and never allocates more than a bound proportional to the data:
// an out-of-memory allocation fails this test instead of crashing it.
func FuzzDecode(f *testing.F) {
	word := func(v uint64) []byte { return common.LeftPadBytes(new(big.Int).SetUint64(v).Bytes(), 32) }
	overlap := bytes.Join([][]byte{word(32), word(64), bytes.Repeat(word(64*32), 64), word(3000), make([]byte, 3008)}, nil)
	for _, s := range []struct {
		abi  string
		data []byte
	}{
		{contract.ABIJSON, nil},
		{`[{"type":"error","name":"E","inputs":[{"name":"","type":"uint256[100000000000][10]"}]}]`, make([]byte, 320)},
		{`[{"type":"error","name":"Big","inputs":[{"name":"","type":"uint256[65536][]"}]}]`, append(append(word(32), word(100)...), make([]byte, 3200)...)},
		{`[{"type":"function","name":"g","inputs":[],"outputs":[{"name":"","type":"string[]"}]}]`, overlap},
		{`[{"type":"function","name":"g","inputs":[],"outputs":[{"name":"","type":"bytes[][]"},{"name":"","type":"uint8"}]}]`, overlap},
		{`[{"type":"function","name":"g","inputs":[],"outputs":[{"name":"t","type":"tuple[]","components":[{"name":"a","type":"uint256[]"},{"name":"b","type":"string"}]}]}]`, overlap},
		{`[{"type":"function","name":"g","inputs":[],"outputs":[{"name":"","type":"bool[4][]"}]}]`, append(append(word(32), word(3)...), make([]byte, 384)...)},
	} {
		f.Add([]byte(s.abi), s.data)
	}
	f.Fuzz(func(t *testing.T, raw, data []byte) {
		a, err := calldata.ParseStoredABI(raw)
		if err != nil {
			return
		}
		limit := 64*uint64(len(data)) + 1<<20
		for _, m := range a.Methods {
			allocs := allocated(func() { _, _ = calldata.DecodeOutputs(m, data) })
			if allocs > limit {
				t.Fatalf("decoding %d bytes as %s allocated %d bytes, over %d", len(data), calldata.Signature(m), allocs, limit)
			}
		}
		for _, e := range a.Errors {
			allocs := allocated(func() { _, _ = calldata.UnpackValues(e.Inputs, data) })
			if allocs > limit {
				t.Fatalf("decoding %d bytes as %s allocated %d bytes, over %d", len(data), e.Sig, allocs, limit)
			}
		}
	})
}

// allocated is how many bytes fn allocates (the whole process's count, so
// it is an upper bound).
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func asCalldataError(err error, target **calldata.Error) bool {
	ce, ok := err.(*calldata.Error)
	*target = ce
	return ok
}
