package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
)

// AnvilChainID is the chain id anvil uses unless told otherwise (--chain-id).
const AnvilChainID = 31337

// anvilPackagePath is where scripts/install-test-deps.sh puts the binary,
// relative to the repo root.
var anvilPackagePath = filepath.Join(".tools", "node_modules", "@foundry-rs", "anvil-linux-amd64", "bin", "anvil")

// anvilDevKeys are the private keys of the 10 accounts anvil funds (10,000
// ETH each) from its default mnemonic "test test test test test test test
// test test test test junk" (m/44'/60'/0'/0/i).
var anvilDevKeys = [...]string{
	"ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", // 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
	"59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d", // 0x70997970C51812dc3A010C7d01b50e0d17dc79C8
	"5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a", // 0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC
	"7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6", // 0x90F79bf6EB2c4f870365E785982E1f101E93b906
	"47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a", // 0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65
	"8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba", // 0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc
	"92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e", // 0x976EA74026E726554dB657fA54763abd0C3a0aa9
	"4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356", // 0x14dC79964da2C08b23698B3D3cc7Ca32193d9955
	"dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97", // 0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f
	"2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6", // 0xa0Ee7A142d267C1f36714E4a8F75612F20a79720
}

// AnvilNode is an anvil dev chain started by Anvil.
type AnvilNode struct {
	t      testing.TB
	port   int
	proc   *process
	extra  []string
	client *http.Client
	nextID atomic.Int64
}

// Anvil starts anvil on a free 127.0.0.1 port with the given extra arguments
// (e.g. "--block-time", "1", or "--no-mining"; not --port or --host) and
// waits until it answers eth_chainId. t.Cleanup kills it.
//
// The binary is $ANVIL_BIN if set, else the one scripts/install-test-deps.sh
// put under <repo>/.tools, else anvil on PATH. A missing binary fails the
// test (it does not skip).
func Anvil(t testing.TB, args ...string) *AnvilNode {
	SkipShort(t, "starts anvil")
	t.Helper()
	bin, err := anvilBinary()
	if err != nil {
		t.Fatalf("testenv: %v; %s", err, installHint)
	}
	dir := t.TempDir() // before the cleanup below, so it is removed after it
	n := &AnvilNode{
		t:      t,
		extra:  args,
		proc:   &process{name: "anvil", bin: bin, logPath: filepath.Join(dir, "anvil.log")},
		client: &http.Client{Timeout: 30 * time.Second},
	}
	t.Cleanup(func() {
		if err := n.proc.kill(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		n.proc.logOnFailure(t)
		n.client.CloseIdleConnections()
	})

	n.setPort(FreePort(t))
	if err := n.proc.startReady(n.ready, func() error {
		port, err := freePort()
		n.setPort(port)
		return err
	}); err != nil {
		t.Fatalf("testenv: start anvil: %v", err)
	}
	return n
}

// anvilBinary finds anvil: $ANVIL_BIN, then <repo>/.tools, then PATH.
func anvilBinary() (string, error) {
	if bin := os.Getenv("ANVIL_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("ANVIL_BIN=%s: %w", bin, err)
		}
		return bin, nil
	}
	if root, err := repoRoot(); err == nil {
		bin := filepath.Join(root, anvilPackagePath)
		if _, err := os.Stat(bin); err == nil {
			return bin, nil
		}
	}
	if bin, ok := findProgram("anvil"); ok {
		return bin, nil
	}
	return "", fmt.Errorf("anvil not found (not in $ANVIL_BIN, <repo>/%s, or PATH)", anvilPackagePath)
}

func (n *AnvilNode) setPort(port int) {
	n.port = port
	n.proc.args = append([]string{"--port", strconv.Itoa(port), "--host", "127.0.0.1"}, n.extra...)
}

// ready succeeds when our child owns the port and answers eth_chainId.
func (n *AnvilNode) ready() error {
	if err := n.proc.listening(n.port); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := n.call(ctx, "eth_chainId")
	return err
}

// URL returns the node's HTTP JSON-RPC endpoint, http://127.0.0.1:<port>.
func (n *AnvilNode) URL() string { return "http://127.0.0.1:" + strconv.Itoa(n.port) }

// WSURL returns the node's WebSocket JSON-RPC endpoint (same port).
func (n *AnvilNode) WSURL() string { return "ws://127.0.0.1:" + strconv.Itoa(n.port) }

// Port returns the TCP port the node listens on.
func (n *AnvilNode) Port() int { return n.port }

// Kill sends SIGKILL and waits until the node is gone. Its chain state is
// lost. It may be called from any goroutine.
func (n *AnvilNode) Kill() {
	if err := n.proc.kill(); err != nil {
		n.t.Errorf("testenv: kill anvil: %v", err)
	}
}

// Keys returns the private keys of anvil's 10 default accounts, each funded
// with 10,000 ETH at genesis; they hold only when anvil runs with its default
// mnemonic and account count. Each call returns fresh copies.
func (n *AnvilNode) Keys() []*ecdsa.PrivateKey { return AnvilKeys() }

// AnvilKeys returns the private keys of anvil's 10 default dev accounts (the
// mnemonic "test test … junk"), for code that needs them without a node.
func AnvilKeys() []*ecdsa.PrivateKey {
	keys := make([]*ecdsa.PrivateKey, len(anvilDevKeys))
	for i, h := range anvilDevKeys {
		key, err := crypto.HexToECDSA(h)
		if err != nil {
			panic(fmt.Sprintf("testenv: anvil dev key %d: %v", i, err))
		}
		keys[i] = key
	}
	return keys
}

// RPC calls a JSON-RPC method on the node (anvil_*, evm_*, eth_*) and returns
// its raw result; any error fails the test, so call it from the test's own
// goroutine. For example:
//
//	node.RPC(t, "evm_mine")
//	node.RPC(t, "anvil_setNonce", addr, "0x10")
//	var chainID hexutil.Uint64
//	json.Unmarshal(node.RPC(t, "eth_chainId"), &chainID)
func (n *AnvilNode) RPC(t testing.TB, method string, params ...any) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	result, err := n.call(ctx, method, params...)
	if err != nil {
		t.Fatalf("testenv: anvil %s: %v", method, err)
	}
	return result
}

// RPCError is a JSON-RPC error answered by the node.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string {
	if len(e.Data) > 0 {
		return fmt.Sprintf("json-rpc error %d: %s (data %s)", e.Code, e.Message, e.Data)
	}
	return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message)
}

// Call is RPC without the test: it returns the node's answer or error (an
// *RPCError when the node answered one), for tests that expect a failure or
// run in other goroutines.
func (n *AnvilNode) Call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	return n.call(ctx, method, params...)
}

func (n *AnvilNode) call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      n.nextID.Add(1),
		"method":  method,
		"params":  params,
	})
	if err != nil {
		return nil, fmt.Errorf("encode params: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	var answer struct {
		Result json.RawMessage `json:"result"`
		Error  *RPCError       `json:"error"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, fmt.Errorf("decode answer (HTTP %s): %w: %.200s", resp.Status, err, raw)
	}
	if answer.Error != nil {
		return nil, answer.Error
	}
	if answer.Result == nil {
		return nil, errors.New("answer has neither result nor error")
	}
	return answer.Result, nil
}

// AnvilBinary returns the path of the anvil binary the tests use ($ANVIL_BIN,
// <repo>/.tools, PATH), failing the test with the install hint when there is
// none: for tests that hand it to a program that starts anvil itself.
func AnvilBinary(t testing.TB) string {
	t.Helper()
	bin, err := anvilBinary()
	if err != nil {
		t.Fatalf("testenv: %v; %s", err, installHint)
	}
	return bin
}
