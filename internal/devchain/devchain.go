// Package devchain runs an Ethereum chain inside the process: go-ethereum's
// simulated backend, served over JSON-RPC on a loopback port, with blocks
// sealed on a ticker (it has no automine). It is the chain of `relayq dev`
// and of fast integration tests.
package devchain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/ethclient/simulated"
	"github.com/ethereum/go-ethereum/node"

	"github.com/relayq/relayq/internal/devchain/contract"
)

// ChainID is the chain id of every simulated chain.
const ChainID = 1337

// DevKeys are the well-known development keys (the same as anvil's and
// hardhat's first accounts). They are public: never fund them on a real
// network.
var DevKeys = []string{
	"ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
	"59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
	"5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
	"7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
	"47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
}

// Options configure a chain.
type Options struct {
	// BlockTime is how often a block is sealed; 0 means only on Commit.
	BlockTime time.Duration
	// Port is the JSON-RPC port on 127.0.0.1; 0 picks a free one.
	Port int
	// BlockGasLimit; 0 keeps go-ethereum's default.
	BlockGasLimit uint64
}

// Chain is a running simulated chain.
type Chain struct {
	sim     *simulated.Backend
	url     string
	keys    []*ecdsa.PrivateKey
	mu      sync.Mutex // Commit is not safe to call concurrently
	stop    chan struct{}
	stopped sync.WaitGroup
	closed  bool
	ticker  bool // blocks are sealed on a ticker
}

// Start starts a chain with every DevKeys account funded with 10,000 ETH.
func Start(opts Options) (*Chain, error) {
	keys := make([]*ecdsa.PrivateKey, len(DevKeys))
	alloc := types.GenesisAlloc{}
	fund, _ := new(big.Int).SetString("10000000000000000000000", 10)
	for i, h := range DevKeys {
		k, err := crypto.HexToECDSA(h)
		if err != nil {
			return nil, fmt.Errorf("dev key %d: %w", i, err)
		}
		keys[i] = k
		alloc[crypto.PubkeyToAddress(k.PublicKey)] = types.Account{Balance: fund}
	}
	port := opts.Port
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("devchain: pick a port: %w", err)
		}
		port = p
	}
	sim := simulated.NewBackend(alloc, func(nc *node.Config, ec *ethconfig.Config) {
		nc.HTTPHost = "127.0.0.1"
		nc.HTTPPort = port
		nc.HTTPModules = []string{"eth", "net", "web3", "txpool"}
		// geth's pool drops future-nonce txs past a small per-account queue;
		// a relayer broadcasting concurrently needs room.
		ec.TxPool.AccountSlots = 8192
		ec.TxPool.AccountQueue = 8192
		ec.TxPool.GlobalSlots = 16384
		ec.TxPool.GlobalQueue = 16384
		if opts.BlockGasLimit > 0 {
			ec.Genesis.GasLimit = opts.BlockGasLimit
			ec.Miner.GasCeil = opts.BlockGasLimit
		}
	})
	c := &Chain{sim: sim, url: "http://127.0.0.1:" + strconv.Itoa(port), keys: keys, stop: make(chan struct{})}
	if err := c.waitHTTP(); err != nil {
		sim.Close()
		return nil, err
	}
	if opts.BlockTime > 0 {
		c.ticker = true
		c.stopped.Add(1)
		go c.mine(opts.BlockTime)
	}
	return c, nil
}

func (c *Chain) waitHTTP() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl, err := ethclient.DialContext(ctx, c.url)
		if err == nil {
			_, err = cl.ChainID(ctx)
			cl.Close()
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("devchain: JSON-RPC at %s did not answer: %w", c.url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *Chain) mine(every time.Duration) {
	defer c.stopped.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.Commit()
		}
	}
}

// URL is the chain's JSON-RPC endpoint.
func (c *Chain) URL() string { return c.url }

// Keys are the funded keys (DevKeys, parsed).
func (c *Chain) Keys() []*ecdsa.PrivateKey { return c.keys }

// Client is an in-process client of the chain.
func (c *Chain) Client() simulated.Client { return c.sim.Client() }

// Commit seals a block now.
func (c *Chain) Commit() common.Hash {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return common.Hash{}
	}
	return c.sim.Commit()
}

// Close stops the block ticker and the chain.
func (c *Chain) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	c.mu.Unlock()
	c.stopped.Wait()
	return c.sim.Close()
}

// DeployCounter deploys the sample contract from key and waits until it is
// mined (sealing blocks itself when the chain has no ticker).
func (c *Chain) DeployCounter(ctx context.Context, key *ecdsa.PrivateKey) (common.Address, error) {
	commit := func() {}
	if !c.ticker {
		commit = func() { c.Commit() }
	}
	return DeployCounter(ctx, c.sim.Client(), key, commit)
}

// Client is what DeployCounter needs from a node.
type Client interface {
	ChainID(ctx context.Context) (*big.Int, error)
	PendingNonceAt(ctx context.Context, account common.Address) (uint64, error)
	SuggestGasTipCap(ctx context.Context) (*big.Int, error)
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	SendTransaction(ctx context.Context, tx *types.Transaction) error
	TransactionReceipt(ctx context.Context, hash common.Hash) (*types.Receipt, error)
}

// DeployCounter deploys the sample contract on any node (the simulated one,
// anvil) from key and waits for its receipt, calling commit between polls
// (to seal a block on a chain that does not mine by itself).
func DeployCounter(ctx context.Context, cl Client, key *ecdsa.PrivateKey, commit func()) (common.Address, error) {
	from := crypto.PubkeyToAddress(key.PublicKey)
	chainID, err := cl.ChainID(ctx)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy counter: chain id: %w", err)
	}
	nonce, err := cl.PendingNonceAt(ctx, from)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy counter: nonce: %w", err)
	}
	tip, err := cl.SuggestGasTipCap(ctx)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy counter: tip: %w", err)
	}
	head, err := cl.HeaderByNumber(ctx, nil)
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy counter: head: %w", err)
	}
	feeCap := new(big.Int).Add(new(big.Int).Mul(head.BaseFee, big.NewInt(2)), tip)
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
		ChainID: chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap, Gas: 3_000_000, Data: contract.Bytecode,
	})
	if err != nil {
		return common.Address{}, fmt.Errorf("deploy counter: sign: %w", err)
	}
	if err := cl.SendTransaction(ctx, tx); err != nil {
		return common.Address{}, fmt.Errorf("deploy counter: send: %w", err)
	}
	for {
		r, err := cl.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			if r.Status != types.ReceiptStatusSuccessful {
				return common.Address{}, errors.New("deploy counter: creation reverted")
			}
			return r.ContractAddress, nil
		}
		select {
		case <-ctx.Done():
			return common.Address{}, fmt.Errorf("deploy counter: wait for receipt: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		commit()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
