package bench

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/relayq/relayq/internal/devchain"
)

// The fast chain is where the block stops being the limit: anvil with
// blocks every 250 ms that hold a billion gas (about 20,000 counter calls),
// as a fast L2 behaves. There relayq's own cost per job shows, so the
// scenario measures its raw limit and relayq against it in the same run,
// with the same payload: a call of the sample contract's increment().

// incrementData is increment()'s calldata.
var incrementData = crypto.Keccak256([]byte("increment()"))[:4]

// deployerKey deploys the sample contract; it is not the one signer of
// the fast scenario, whose nonces start at zero.
var deployerKey = len(devchain.DevKeys) - 1

// runFast measures the fast chain's raw limit and relayq with one signer
// against it. Each row is a fresh anvil (and redis-server).
func (o *Options) runFast(ctx context.Context, dir string) ([]*Result, error) {
	fo := *o
	fo.Jobs = o.FastJobs
	fo.blockTime = o.FastBlockTime
	fo.BlockGasLimit = o.FastGasLimit
	fo.contractCalls = true
	raw, err := fo.runRaw(ctx, dir)
	if err != nil {
		return nil, err
	}
	raw.Name, raw.RawRef = "fast: raw node limit", raw
	fmt.Fprintf(o.Log, "bench: fast raw: %d in %v (%.0f/s)\n", raw.Jobs, raw.Elapsed.Round(time.Millisecond), raw.Rate())
	rq, err := fo.runRelayq(ctx, dir, 1, false)
	if err != nil {
		return nil, err
	}
	rq.Name, rq.RawRef = "fast: relayq, 1 signer", raw
	return []*Result{raw, rq}, nil
}

// deployCounter deploys the sample contract on node.
func deployCounter(ctx context.Context, node *anvilNode) (common.Address, error) {
	return devchain.DeployCounter(ctx, node.client, devKey(deployerKey), func() {})
}

// incrementTx returns the raw sender's signer of increment() calls of
// counter from key, with the gas one costs from a fresh sender plus the
// margin relayq's estimate also gets.
func incrementTx(ctx context.Context, c *ethclient.Client, chainID *big.Int, key *ecdsa.PrivateKey, counter common.Address, tip, feeCap *big.Int) (func(nonce uint64) (*types.Transaction, error), error) {
	from := crypto.PubkeyToAddress(key.PublicKey)
	g, err := c.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &counter, Data: incrementData})
	if err != nil {
		return nil, fmt.Errorf("estimate increment(): %w", err)
	}
	gas := g * 12 / 10
	return func(nonce uint64) (*types.Transaction, error) {
		return types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
			ChainID: chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap, Gas: gas, To: &counter, Data: incrementData,
		})
	}, nil
}
