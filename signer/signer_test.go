package signer

import (
	"context"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"
)

const devKey = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"

func TestFromHexKeys(t *testing.T) {
	t.Parallel()
	chain := big.NewInt(31337)
	ss, err := FromHexKeys([]string{"0x" + devKey}, chain)
	require.NoError(t, err)
	require.Equal(t, common.HexToAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), ss[0].Address())

	tx, err := ss[0].SignTx(context.Background(), types.NewTx(&types.DynamicFeeTx{ChainID: chain, Nonce: 3, Gas: 21000, GasTipCap: big.NewInt(1), GasFeeCap: big.NewInt(2)}))
	require.NoError(t, err)
	from, err := types.Sender(types.LatestSignerForChainID(chain), tx)
	require.NoError(t, err)
	require.Equal(t, ss[0].Address(), from, "the signature recovers to the signer")

	_, err = FromHexKeys([]string{devKey, "0x" + devKey}, chain)
	require.ErrorContains(t, err, "key 2 repeats account")
	_, err = FromHexKeys([]string{devKey[:60] + "zzzz"}, chain)
	require.ErrorContains(t, err, "key 1")
	require.NotContains(t, err.Error(), devKey[:60], "a bad key is never echoed")
}
