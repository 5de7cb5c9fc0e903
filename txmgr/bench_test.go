package txmgr_test

import (
	"context"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/txmgr"
)

// BenchmarkSign is one job's signing: build the EIP-1559 transaction, sign
// it, encode the bytes that are persisted before broadcast.
func BenchmarkSign(b *testing.B) {
	key, err := signer.ParseHexKey("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
	if err != nil {
		b.Fatal(err)
	}
	chainID := big.NewInt(31337)
	s := signer.NewKey(key, chainID)
	fees := txmgr.Fees{TipCap: big.NewInt(1e9), FeeCap: big.NewInt(3e9)}
	call := txmgr.Call{From: s.Address(), To: common.HexToAddress("0xbeef"), Data: []byte{0xd0, 0x9d, 0xe0, 0x8a}, Value: new(big.Int)}
	b.ReportAllocs()
	var n uint64
	for b.Loop() {
		if _, _, err := txmgr.Sign(context.Background(), s, chainID, n, 50_000, fees, call); err != nil {
			b.Fatal(err)
		}
		n++
	}
}
