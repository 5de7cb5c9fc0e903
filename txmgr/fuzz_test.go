package txmgr_test

import (
	"runtime"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/txmgr"
)

// FuzzDecodeRevert: revert data against any stored ABI's custom errors
// (and against none) decodes without a panic and within memory bounded by
// the data's length, so an out-of-memory allocation fails the test instead
// of killing the worker or the API. Run in CI for a few seconds (make fuzz).
func FuzzDecodeRevert(f *testing.F) {
	pad := func(b ...byte) []byte { return common.LeftPadBytes(b, 32) }
	for _, s := range []struct {
		abi  string
		data []byte
	}{
		{contract.ABIJSON, nil},
		{contract.ABIJSON, append(append(errorStringRevert("boom"), 0), pad(1)...)},
		{contract.ABIJSON, panicRevert(0x12)},
		{`[{"type":"error","name":"E","inputs":[{"name":"","type":"uint256[100000000000][10]"}]}]`, make([]byte, 320)},
		{`[{"type":"error","name":"Big","inputs":[{"name":"","type":"uint256[65536][]"}]}]`, append(append(pad(0x20), pad(100)...), make([]byte, 3200)...)},
		{`[{"type":"error","name":"S","inputs":[{"name":"s","type":"string[]"},{"name":"b","type":"bytes"}]}]`, append(append(pad(0x40), pad(0x40)...), pad(0)...)},
	} {
		f.Add([]byte(s.abi), s.data)
	}
	f.Fuzz(func(t *testing.T, raw, data []byte) {
		a, err := calldata.ParseStoredABI(raw)
		if err != nil {
			return
		}
		limit := 64*uint64(len(data)) + 1<<20
		check := func(what string, revert []byte, with *abi.ABI) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			r := txmgr.DecodeRevert(revert, with)
			runtime.ReadMemStats(&after)
			if n := after.TotalAlloc - before.TotalAlloc; n > limit {
				t.Fatalf("decoding %d bytes of revert data as %s allocated %d bytes, over %d", len(revert), what, n, limit)
			}
			if r.Kind == "" || len(r.Data) != len(revert) {
				t.Fatalf("revert %x decoded as %+v", revert, r)
			}
		}
		check("no ABI", data, nil)
		for _, e := range a.Errors {
			check(e.Sig, append(e.ID.Bytes()[:4:4], data...), &a)
		}
	})
}
