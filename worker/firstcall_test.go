package worker

import (
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// firstCall decides whether a permanent refusal gives a job up (its only
// call at the nonce) or only warns (a replacement was refused; the earlier
// transaction may still be mined).
func TestFirstCall(t *testing.T) {
	tx := func(nonce uint64, fee int64) *types.Transaction {
		return types.NewTx(&types.DynamicFeeTx{Nonce: nonce, GasFeeCap: big.NewInt(fee), GasTipCap: big.NewInt(1), Gas: 21000})
	}
	orig, bump, noop := tx(5, 10), tx(5, 11), tx(5, 12)
	at := func(t *types.Transaction, kind string) jobs.Attempt {
		return jobs.Attempt{Hash: t.Hash().Hex(), Nonce: t.Nonce(), Kind: kind}
	}
	job := func(txHash string, as ...jobs.Attempt) *jobs.Job { return &jobs.Job{TxHash: txHash, Attempts: as} }
	tests := []struct {
		name string
		j    *jobs.Job
		tx   *types.Transaction
		want bool
	}{
		{"the only call", job(orig.Hash().Hex(), at(orig, jobs.KindOriginal)), orig, true},
		{"a fee bump of it", job(bump.Hash().Hex(), at(orig, jobs.KindOriginal), at(bump, jobs.KindBump)), bump, false},
		{"the original after a bump", job(bump.Hash().Hex(), at(orig, jobs.KindOriginal), at(bump, jobs.KindBump)), orig, false},
		{"the call next to its cancellation", job(orig.Hash().Hex(), at(orig, jobs.KindOriginal), at(noop, jobs.KindCancel)), orig, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, firstCall(tt.j, tt.tx))
		})
	}
}
