// Package contract embeds Counter, the sample contract that relayq's dev mode
// and tests deploy, and Tally, a sample with constructor arguments: their
// Solidity sources, ABIs and creation bytecode.
//
// Counter exercises each path the relayer must handle: a state change with an
// event (increment), a custom error (add with n > MaxAdd reverts with
// TooLarge), an Error(string) revert (fail), a Panic(0x12) (divide by zero),
// and complex ABI encoding (store takes bytes32, address[] and a tuple with a
// string, and emits them back in Stored).
//
// The ABI and bytecode are committed so a build needs no npm. After editing
// Counter.sol, regenerate both with ./regen.sh, which runs (solc 0.8.30 from
// npm, in a scratch directory outside the repo):
//
//	mkdir -p /tmp/solc && cd /tmp/solc && npm init -y
//	npm install --no-audit --no-fund solc@0.8.30
//	cp <repo>/internal/devchain/contract/Counter.sol .
//	npx solcjs --bin --abi --optimize -o out Counter.sol
//
// and then copies out/Counter_sol_Counter.abi (pretty-printed) to
// Counter.abi.json and out/Counter_sol_Counter.bin to Counter.bin (bare hex,
// no 0x prefix, no trailing newline).
package contract

import (
	_ "embed"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
)

// ABIJSON is Counter's ABI as emitted by solc.
//
//go:embed Counter.abi.json
var ABIJSON string

//go:embed Counter.bin
var bytecodeHex string

// Source is Counter's Solidity source, for display and for checking that the
// committed artifacts match it.
//
//go:embed Counter.sol
var Source string

// ABI is Counter's parsed ABI.
var ABI = mustParseABI(ABIJSON)

// Bytecode is Counter's creation bytecode (no constructor arguments): send it
// as the data of a contract-creation transaction to deploy Counter.
var Bytecode = mustDecodeHex(bytecodeHex)

// Tally is the second sample contract: a counter whose constructor takes
// (uint256 start, string label) and reverts with TooLarge when start >
// MaxAdd, or with Error("empty label"). It is what deployments with
// constructor arguments are tested with.
var (
	TallyABIJSON  = tallyABIJSON
	TallyABI      = mustParseABI(tallyABIJSON)
	TallyBytecode = mustDecodeHex(tallyBytecodeHex)
	TallySource   = tallySource
)

//go:embed Tally.abi.json
var tallyABIJSON string

//go:embed Tally.bin
var tallyBytecodeHex string

//go:embed Tally.sol
var tallySource string

// MaxAdd is the largest n that Counter.add accepts; above it add reverts with
// TooLarge(n, MaxAdd).
const MaxAdd = 1000

// Entry mirrors Counter's Entry struct, the tuple argument of store and the
// last field of the Stored event, so it can be passed to ABI.Pack.
type Entry struct {
	Amount *big.Int
	Note   string
}

func mustParseABI(s string) abi.ABI {
	parsed, err := abi.JSON(strings.NewReader(s))
	if err != nil {
		panic(fmt.Sprintf("contract: parse an embedded ABI: %v", err))
	}
	return parsed
}

func mustDecodeHex(s string) []byte {
	s = strings.TrimPrefix(strings.TrimSpace(s), "0x")
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("contract: decode embedded bytecode: %v", err))
	}
	if len(b) == 0 {
		panic("contract: embedded bytecode is empty")
	}
	return b
}
