package txmgr_test

import (
	"context"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/txmgr"
)

// remoteSigner stands for a KMS: it signs through a local key after
// letting tamper change the transaction, and honours its context.
type remoteSigner struct {
	addr   common.Address
	key    *signer.Key
	tamper func(tx *types.Transaction) *types.Transaction
}

func (r *remoteSigner) Address() common.Address { return r.addr }

func (r *remoteSigner) SignTx(ctx context.Context, tx *types.Transaction) (*types.Transaction, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.tamper != nil {
		tx = r.tamper(tx)
	}
	return r.key.SignTx(ctx, tx)
}

// A remote signer is not trusted with the content: relayq refuses what it
// returns unless it is the asked-for transaction signed by its address.
func TestSignChecksARemoteSigner(t *testing.T) {
	t.Parallel()
	chainID := big.NewInt(testenv.AnvilChainID)
	keys := testenv.AnvilKeys()
	own, other := signer.NewKey(keys[0], chainID), signer.NewKey(keys[1], chainID)
	fees := txmgr.Fees{TipCap: big.NewInt(1e9), FeeCap: big.NewInt(2e9)}
	call := txmgr.Call{From: own.Address(), To: common.HexToAddress("0xbeef"), Value: big.NewInt(1)}
	bumpNonce := func(tx *types.Transaction) *types.Transaction {
		return types.NewTx(&types.DynamicFeeTx{ChainID: chainID, Nonce: tx.Nonce() + 1, GasTipCap: tx.GasTipCap(), GasFeeCap: tx.GasFeeCap(),
			Gas: tx.Gas(), To: tx.To(), Value: tx.Value(), Data: tx.Data()})
	}
	ctx := context.Background()

	tx, raw, err := txmgr.Sign(ctx, &remoteSigner{addr: own.Address(), key: own}, chainID, 7, 21000, fees, call)
	require.NoError(t, err, "an honest remote signer")
	require.Equal(t, uint64(7), tx.Nonce())
	require.NotEmpty(t, raw)

	for name, rs := range map[string]*remoteSigner{
		"signed by another key":    {addr: own.Address(), key: other},
		"changed the nonce":        {addr: own.Address(), key: own, tamper: bumpNonce},
		"claims another's address": {addr: other.Address(), key: own},
	} {
		_, _, err := txmgr.Sign(ctx, rs, chainID, 7, 21000, fees, call)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "sign tx: signer ", name)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = txmgr.Sign(cancelled, &remoteSigner{addr: own.Address(), key: own}, chainID, 7, 21000, fees, call)
	require.ErrorIs(t, err, context.Canceled, "a remote signer's call is bounded by the caller's context")
}

// A creation is signed without a recipient, and a remote signer that gives
// it one (the zero address: a transfer that burns the value) is refused.
func TestSignCreation(t *testing.T) {
	t.Parallel()
	chainID := big.NewInt(testenv.AnvilChainID)
	own := signer.NewKey(testenv.AnvilKeys()[0], chainID)
	fees := txmgr.Fees{TipCap: big.NewInt(1e9), FeeCap: big.NewInt(2e9)}
	call := txmgr.Call{From: own.Address(), To: common.HexToAddress("0xbeef"), Data: []byte{0x60, 0x00}, Value: big.NewInt(0), Create: true}
	require.Nil(t, call.Target())
	ctx := context.Background()

	tx, _, err := txmgr.Sign(ctx, own, chainID, 3, 60000, fees, call)
	require.NoError(t, err)
	require.Nil(t, tx.To(), "a creation has no recipient, whatever Call.To holds")
	require.Equal(t, []byte{0x60, 0x00}, tx.Data())

	toZero := func(tx *types.Transaction) *types.Transaction {
		return types.NewTx(&types.DynamicFeeTx{ChainID: chainID, Nonce: tx.Nonce(), GasTipCap: tx.GasTipCap(), GasFeeCap: tx.GasFeeCap(),
			Gas: tx.Gas(), To: &common.Address{}, Value: tx.Value(), Data: tx.Data()})
	}
	_, _, err = txmgr.Sign(ctx, &remoteSigner{addr: own.Address(), key: own, tamper: toZero}, chainID, 3, 60000, fees, call)
	require.ErrorContains(t, err, "returned a different transaction")
}
