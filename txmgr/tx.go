package txmgr

import (
	"context"
	"errors"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/relayq/relayq/signer"
)

// Call is a transaction before it has a nonce, fees and a signature.
type Call struct {
	From  common.Address
	To    common.Address
	Data  []byte
	Value *big.Int
	// Create makes the call a contract creation: the transaction has no
	// recipient (To is ignored) and Data is the initcode.
	Create bool
}

// Target is the transaction's recipient: nil for a contract creation.
func (c Call) Target() *common.Address {
	if c.Create {
		return nil
	}
	to := c.To
	return &to
}

func (c Call) msg() ethereum.CallMsg {
	return ethereum.CallMsg{From: c.From, To: c.Target(), Data: c.Data, Value: c.Value}
}

// GasHeadroom is the share added to an estimate: state can change between
// the estimate and inclusion, and unused gas is not paid for.
const GasHeadroom = 0.2

// Estimate returns the gas limit to sign with: the node's estimate plus
// headroom. A revert comes back as an error that Classify calls permanent
// and RevertData can decode.
func Estimate(ctx context.Context, b Backend, c Call) (uint64, error) {
	g, err := b.EstimateGas(ctx, c.msg())
	if err != nil {
		return 0, fmt.Errorf("estimate gas: %w", err)
	}
	return g + uint64(float64(g)*GasHeadroom), nil
}

// Sign builds and signs the EIP-1559 transaction for c and returns it with
// its binary encoding (what is persisted before broadcast).
//
// A signer other than a local signer.Key (a remote one) is not trusted
// with the content: what it returns must be signed by its address and
// carry exactly the fields asked for, or it is refused.
func Sign(ctx context.Context, s signer.Signer, chainID *big.Int, nonce, gas uint64, fees Fees, c Call) (*types.Transaction, []byte, error) {
	value := c.Value
	if value == nil {
		value = new(big.Int)
	}
	tx := types.NewTx(&types.DynamicFeeTx{
		ChainID:   chainID,
		Nonce:     nonce,
		GasTipCap: fees.TipCap,
		GasFeeCap: fees.FeeCap,
		Gas:       gas,
		To:        c.Target(),
		Value:     value,
		Data:      c.Data,
	})
	signed, err := s.SignTx(ctx, tx)
	if err != nil {
		return nil, nil, fmt.Errorf("sign tx: %w", err)
	}
	if _, local := s.(*signer.Key); !local {
		if err := checkSigned(tx, signed, s.Address(), chainID); err != nil {
			return nil, nil, fmt.Errorf("sign tx: signer %s: %w", s.Address().Hex(), err)
		}
	}
	raw, err := signed.MarshalBinary()
	if err != nil {
		return nil, nil, fmt.Errorf("encode tx: %w", err)
	}
	return signed, raw, nil
}

// ReplayRevert finds why a mined transaction reverted by running the same
// call on the state before its block. It returns the raw revert data ("" if
// the replay did not revert, e.g. the revert depended on earlier txs in the
// block) and the error of the call.
func ReplayRevert(ctx context.Context, b Backend, tx *types.Transaction, from common.Address, block *big.Int) ([]byte, error) {
	msg := ethereum.CallMsg{From: from, To: tx.To(), Gas: tx.Gas(), Value: tx.Value(), Data: tx.Data()}
	at := new(big.Int).Sub(block, big.NewInt(1))
	if at.Sign() < 0 {
		at.SetInt64(0)
	}
	_, err := b.CallContract(ctx, msg, at)
	if err == nil {
		return nil, nil
	}
	data, _ := RevertData(err)
	return data, err
}

// NoopGas is the gas of a 0-value transfer to an account without code: the
// cancellations and gap fills relayq sends to its own signer.
const NoopGas = 21000

// checkSigned requires signed to be want, signed by from on chainID: the
// same signing hash (which covers every field but the signature) and the
// sender recovered from the signature.
func checkSigned(want, signed *types.Transaction, from common.Address, chainID *big.Int) error {
	if signed == nil {
		return errors.New("returned no transaction")
	}
	ls := types.LatestSignerForChainID(chainID)
	if signed.Type() != want.Type() || ls.Hash(signed) != ls.Hash(want) {
		return errors.New("returned a different transaction than it was asked to sign")
	}
	sender, err := types.Sender(ls, signed)
	if err != nil {
		return fmt.Errorf("returned a bad signature: %w", err)
	}
	if sender != from {
		return fmt.Errorf("returned a transaction signed by %s", sender.Hex())
	}
	return nil
}
