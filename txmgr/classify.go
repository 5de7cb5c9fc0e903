package txmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/ethereum/go-ethereum/rpc"

	"github.com/relayq/relayq/signer"
)

// Class is what relayq does about a node's answer to a broadcast or estimate.
type Class int

const (
	// ClassNone is the class of a nil error: the call succeeded.
	ClassNone Class = iota
	// ClassAlreadyKnown means the node already has this exact transaction:
	// treat it as sent and track it.
	ClassAlreadyKnown
	// ClassNonceTooLow means the nonce is already used: check whether one of
	// our own hashes for it was mined, then reconcile the allocator.
	ClassNonceTooLow
	// ClassRetryable means try again later, re-priced if the answer was about
	// price: underpriced, txpool full, nonce too high, fee cap below base fee,
	// timeouts, refused connections, HTTP 429/5xx and anything unrecognised.
	ClassRetryable
	// ClassPaused means the signer cannot pay (insufficient funds) or, for a
	// remote signer, cannot sign (signer.ErrUnavailable): the signer waits
	// and the job is not burned.
	ClassPaused
	// ClassPermanent means no retry can succeed: reverts, intrinsic gas too
	// low, gas above the block limit, unsupported type, oversized data, bad
	// signature, tip above fee cap. The job fails and its nonce is filled.
	ClassPermanent
)

// String returns the class's name as it appears in logs and metrics.
func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassAlreadyKnown:
		return "already-known"
	case ClassNonceTooLow:
		return "nonce-too-low"
	case ClassRetryable:
		return "retryable"
	case ClassPaused:
		return "paused"
	case ClassPermanent:
		return "permanent"
	default:
		return fmt.Sprintf("Class(%d)", int(c))
	}
}

// classRule maps a lower-cased substring of a node's error message to a class.
type classRule struct {
	substr string // lower-case; matched where it does not continue a word
	class  Class
	reason string // short, stable, for logs and the job's failure reason
	revert bool   // the message reports an execution revert
}

// classRules is the one table. Nodes say the same thing in different words, so
// each entry names the clients known to print it. The first match wins, and
// the order is deliberate:
//
//  1. Reverts come first. A revert message carries the contract's own text
//     ("execution reverted: insufficient funds", "...: nonce too low"), which
//     must not be read as a pool error about the signer.
//  2. Within a family, longer phrases come before the shorter phrases they
//     contain: "replacement transaction underpriced" contains "transaction
//     underpriced", which contains erigon's bare "underpriced"; matching the
//     short one first would give the wrong reason (and, where classes differ,
//     the wrong class).
//  3. Transport wording comes last: it is the vaguest, and by then every
//     node-specific meaning has had its chance.
//
// Sources: go-ethereum core/error.go, core/txpool/errors.go,
// core/txpool/legacypool, core/vm/errors.go, eth/gasestimator; foundry's
// anvil (crates/anvil/src/eth/error/mod.rs: InvalidTransactionError,
// PoolError and their RPC mapping); reth rpc-eth-types error/mod.rs; erigon
// txpoolcfg DiscardReason; Nethermind AcceptTxResult; Besu JsonRpcError;
// OpenEthereum/Parity; and the Arbitrum, zkSync, Klaytn and Celo rows that
// Chainlink's core/chains/evm/client/errors.go collects.
var classRules = []classRule{
	// 1. Execution failures, reported by eth_estimateGas and eth_call.
	{"execution reverted", ClassPermanent, "execution reverted", true}, // geth, anvil, reth, erigon, besu, nethermind
	{"vm execution error", ClassPermanent, "execution reverted", true}, // openethereum, old nethermind ("Reverted 0x…" in data)
	{"evm error outofgas", ClassRetryable, "out of gas", false},        // anvil eth_call with too little gas: re-estimate
	{"evm error", ClassPermanent, "execution halted", false},           // anvil "EVM error InvalidFEOpcode", reth "EVM error: …"
	{"invalid opcode", ClassPermanent, "execution halted", false},      // geth vm
	{"invalid jump destination", ClassPermanent, "execution halted", false},
	{"stack underflow", ClassPermanent, "execution halted", false},
	{"stack limit reached", ClassPermanent, "execution halted", false}, // geth stack overflow
	{"write protection", ClassPermanent, "execution halted", false},    // state change inside staticcall
	{"max call depth exceeded", ClassPermanent, "execution halted", false},
	{"return data out of bounds", ClassPermanent, "execution halted", false},
	{"contract address collision", ClassPermanent, "execution halted", false},
	{"max code size exceeded", ClassPermanent, "execution halted", false},
	{"contract creation code storage out of gas", ClassPermanent, "execution halted", false},

	// 2. The nonce is already taken. Before the funds rows: Arbitrum prints
	// "nonce too low: address …" and that address is not about money.
	{"nonce too low", ClassNonceTooLow, "nonce too low", false},             // geth, anvil, reth, erigon, besu "Nonce too low", arbitrum, avalanche, zksync
	{"nonce is too low", ClassNonceTooLow, "nonce too low", false},          // openethereum "Transaction nonce is too low"
	{"oldnonce", ClassNonceTooLow, "nonce too low", false},                  // nethermind "OldNonce"
	{"invalid transaction nonce", ClassNonceTooLow, "nonce too low", false}, // arbitrum (said for low and high; reconciling is safe either way)
	{"pool(stale)", ClassNonceTooLow, "nonce too low", false},               // substrate EVM (moonbeam)

	// 3. The node has this very transaction. Reconciling would also work, but
	// "treat as sent" is cheaper and exact.
	{"already known", ClassAlreadyKnown, "already known", false},                         // geth, reth, erigon (also "block already known")
	{"alreadyknown", ClassAlreadyKnown, "already known", false},                          // nethermind "AlreadyKnown"
	{"known transaction", ClassAlreadyKnown, "already known", false},                     // besu "Known transaction", old geth, klaytn, zksync; not "unknown transaction" (word start)
	{"transaction already imported", ClassAlreadyKnown, "already known", false},          // anvil
	{"already imported", ClassAlreadyKnown, "already known", false},                      // openethereum "…same hash was already imported", anvil "Tx: [..] already Imported"
	{"alreadyimported", ClassAlreadyKnown, "already known", false},                       // substrate "Pool(AlreadyImported)"
	{"existing tx with same hash", ClassAlreadyKnown, "already known", false},            // erigon
	{"existing txn with same hash", ClassAlreadyKnown, "already known", false},           // erigon (newer)
	{"transaction already finalized", ClassAlreadyKnown, "already known (mined)", false}, // harmony

	// 4. Same nonce, not enough bump: re-price and send again. Before the
	// plain underpriced rows, which are substrings of the first one.
	{"replacement transaction underpriced", ClassRetryable, "replacement underpriced", false},         // geth, anvil, reth, erigon, besu, klaytn
	{"insufficient gas price to replace", ClassRetryable, "replacement underpriced", false},           // anvil PoolError display
	{"could not replace existing tx", ClassRetryable, "replacement underpriced", false},               // erigon
	{"another transaction with same nonce", ClassRetryable, "replacement underpriced", false},         // openethereum
	{"another tx which has the same nonce", ClassRetryable, "replacement underpriced", false},         // klaytn
	{"future transaction tries to replace pending", ClassRetryable, "replacement underpriced", false}, // geth legacypool

	// 5. Fee too low for the pool or the block: re-price and retry. A fee cap
	// under the base fee is here, not in permanent: the next price fixes it.
	{"max fee per gas less than block base fee", ClassRetryable, "fee cap below base fee", false}, // geth, anvil, reth, arbitrum, zksync
	{"fee cap less than base fee", ClassRetryable, "fee cap below base fee", false},               // geth types
	{"gas price less than block base fee", ClassRetryable, "fee cap below base fee", false},       // astar
	{"transaction underpriced", ClassRetryable, "underpriced", false},                             // geth, reth, erigon, klaytn
	{"underpriced", ClassRetryable, "underpriced", false},                                         // erigon DiscardReason "underpriced"
	{"transaction gas price below minimum", ClassRetryable, "underpriced", false},                 // geth txpool (tip below --txpool.pricelimit)
	{"below configured minimum gas price", ClassRetryable, "underpriced", false},                  // besu
	{"gas price is too low", ClassRetryable, "underpriced", false},                                // openethereum
	{"gas price too low", ClassRetryable, "underpriced", false},                                   // arbitrum, metis
	{"priority fee below minimum", ClassRetryable, "underpriced", false},                          // reth
	{"feetoolow", ClassRetryable, "underpriced", false},                                           // nethermind "FeeTooLow", "FeeTooLowToCompete"
	{"fee too low", ClassRetryable, "underpriced", false},                                         // erigon

	// 6. The pool or the account's slots are full, or the account is busy.
	{"txpool is full", ClassRetryable, "txpool full", false},                     // geth, celo, klaytn
	{"sub-pool is full", ClassRetryable, "txpool full", false},                   // erigon pending/baseFee/queued
	{"pool full", ClassRetryable, "txpool full", false},                          // arbitrum "sequencer pending tx pool full"
	{"queue full", ClassRetryable, "txpool full", false},                         // arbitrum
	{"too many transactions in the queue", ClassRetryable, "txpool full", false}, // openethereum
	{"account limit exceeded", ClassRetryable, "txpool full", false},             // geth per-account pool limit
	{"address already reserved", ClassRetryable, "txpool busy", false},           // geth: another subpool holds this sender
	{"authority already reserved", ClassRetryable, "txpool busy", false},         // geth EIP-7702
	{"in-flight transaction limit reached", ClassRetryable, "txpool busy", false},
	{"gapped-nonce tx from delegated", ClassRetryable, "nonce too high", false},

	// 7. Nonce ahead of the chain: an earlier nonce has not arrived yet.
	{"nonce too high", ClassRetryable, "nonce too high", false}, // geth, anvil "Nonce too high", reth, erigon, arbitrum, zksync
	{"nonce is too high", ClassRetryable, "nonce too high", false},
	{"noncegap", ClassRetryable, "nonce too high", false},                    // nethermind "NonceGap"
	{"nonce too far in the future", ClassRetryable, "nonce too high", false}, // besu

	// 8. The signer cannot pay. The signer waits; the job keeps its place.
	{"insufficient funds", ClassPaused, "insufficient funds", false},                   // geth "…for gas * price + value", "…for transfer"; anvil, reth, erigon, klaytn, celo
	{"insufficientfunds", ClassPaused, "insufficient funds", false},                    // nethermind "InsufficientFunds"
	{"insufficient balance", ClassPaused, "insufficient funds", false},                 // openethereum "…for transaction", zksync "…for transfer"
	{"upfront cost exceeds account balance", ClassPaused, "insufficient funds", false}, // besu
	{"not enough funds", ClassPaused, "insufficient funds", false},                     // arbitrum "not enough funds for gas"
	{"would cause overdraft", ClassPaused, "insufficient funds", false},                // old geth

	// 9. The transaction itself is invalid: no price or wait will fix it.
	{"intrinsic gas too low", ClassPermanent, "intrinsic gas too low", false},                                 // geth, anvil, reth, klaytn
	{"intrinsicgas", ClassPermanent, "intrinsic gas too low", false},                                          // erigon "IntrinsicGas"
	{"intrinsic gas exceeds gas limit", ClassPermanent, "intrinsic gas too low", false},                       // besu
	{"transaction gas is too low", ClassPermanent, "intrinsic gas too low", false},                            // openethereum
	{"insufficient gas for floor data gas cost", ClassPermanent, "intrinsic gas too low", false},              // geth EIP-7623
	{"intrinsic gas too high", ClassPermanent, "gas limit too high", false},                                   // anvil, reth: above the block's limit
	{"exceeds block gas limit", ClassPermanent, "gas limit too high", false},                                  // geth, erigon, besu "Transaction gas limit exceeds block gas limit"
	{"greater than the block gas limit", ClassPermanent, "gas limit too high", false},                         // anvil
	{"gas limit too high", ClassPermanent, "gas limit too high", false},                                       // geth EIP-7825 "transaction gas limit too high", reth
	{"gaslimitexceeded", ClassPermanent, "gas limit too high", false},                                         // nethermind
	{"transaction cost exceeds current gas limit", ClassPermanent, "gas limit too high", false},               // openethereum
	{"supplied gas is beyond limit", ClassPermanent, "gas limit too high", false},                             // openethereum
	{"transaction type not supported", ClassPermanent, "tx type not supported", false},                        // geth, reth, anvil "Unknown transaction type not supported"
	{"not supported by the current hardfork", ClassPermanent, "tx type not supported", false},                 // anvil
	{"transaction type is not activated", ClassPermanent, "tx type not supported", false},                     // erigon "fork supporting this transaction type is not activated yet"
	{"oversized data", ClassPermanent, "oversized data", false},                                               // geth, erigon, zksync
	{"rlptoolong", ClassPermanent, "oversized data", false},                                                   // erigon
	{"transaction is too big", ClassPermanent, "oversized data", false},                                       // openethereum
	{"max initcode size exceeded", ClassPermanent, "oversized data", false},                                   // geth, anvil, reth
	{"initcode too large", ClassPermanent, "oversized data", false},                                           // erigon
	{"invalid sender", ClassPermanent, "invalid sender", false},                                               // geth, erigon, mantle
	{"failedtoresolvesender", ClassPermanent, "invalid sender", false},                                        // nethermind
	{"invalid signature", ClassPermanent, "invalid sender", false},                                            // besu, openethereum
	{"invalid chain id", ClassPermanent, "invalid sender", false},                                             // anvil "invalid chain id for signer", reth
	{"signed for another chain", ClassPermanent, "invalid sender", false},                                     // anvil EIP-155
	{"sender not an eoa", ClassPermanent, "sender is a contract", false},                                      // geth, anvil
	{"sender is not an eoa", ClassPermanent, "sender is a contract", false},                                   // reth
	{"senderiscontract", ClassPermanent, "sender is a contract", false},                                       // nethermind
	{"max priority fee per gas higher than max fee per gas", ClassPermanent, "tip above fee cap", false},      // geth, anvil, reth, zksync
	{"`max_priority_fee_per_gas` greater than `max_fee_per_gas`", ClassPermanent, "tip above fee cap", false}, // anvil request check
	{"higher than 2^256-1", ClassPermanent, "fee out of range", false},                                        // geth, reth
	{"higher than 2^64-1", ClassPermanent, "fee out of range", false},                                         // zksync
	{"gas uint64 overflow", ClassPermanent, "gas overflow", false},                                            // geth, anvil
	{"gasuintoverflow", ClassPermanent, "gas overflow", false},                                                // erigon
	{"int256overflow", ClassPermanent, "gas overflow", false},                                                 // nethermind
	{"negative value", ClassPermanent, "negative value", false},                                               // geth, erigon
	{"nonce has max value", ClassPermanent, "nonce overflow", false},                                          // geth, anvil, reth
	{"exceeds the configured cap", ClassPermanent, "fee above node's tx fee cap", false},                      // geth/erigon "tx fee (… ether) exceeds the configured cap (… ether)"
	{"transaction fee cap exceeded", ClassPermanent, "fee above node's tx fee cap", false},                    // besu

	// 10. Retryable in any case; listed for a precise reason in logs.
	{"gas limit reached", ClassRetryable, "block gas pool exhausted", false},                    // geth core: block full while building
	{"gas required exceeds allowance", ClassRetryable, "gas required exceeds allowance", false}, // geth/reth/anvil estimate: runaway call, or capped by balance
	{"out of gas", ClassRetryable, "out of gas", false},                                         // geth eth_call with too little gas: re-estimate
	{"transaction indexing is in progress", ClassRetryable, "node busy", false},                 // geth
	{"header not found", ClassRetryable, "node behind", false},                                  // geth: load-balanced node lagging

	// 11. Transport wording, for errors that lost their type on the way
	// (flattened with %v, or relayed by a proxy).
	{"too many requests", ClassRetryable, "rate limited", false},
	{"rate limit", ClassRetryable, "rate limited", false},
	{"bad gateway", ClassRetryable, "node unavailable", false},
	{"service unavailable", ClassRetryable, "node unavailable", false},
	{"gateway timeout", ClassRetryable, "node unavailable", false}, // before the bare "timeout"
	{"context deadline exceeded", ClassRetryable, "timeout", false},
	{"context canceled", ClassRetryable, "canceled", false},
	{"timeout", ClassRetryable, "timeout", false},
	{"connection refused", ClassRetryable, "connection failed", false},
	{"connection reset", ClassRetryable, "connection failed", false},
	{"broken pipe", ClassRetryable, "connection failed", false},
	{"network is unreachable", ClassRetryable, "connection failed", false},
	{"no such host", ClassRetryable, "connection failed", false},
	{"unexpected eof", ClassRetryable, "connection failed", false},
}

// Classify maps an error from an RPC call (a broadcast, an estimate, a call)
// to what relayq should do about it. nil is ClassNone.
//
// Typed errors are checked first (context, network, HTTP status, JSON-RPC
// revert), then the message is matched against the table above. A message
// that matches nothing is ClassRetryable: a relayer must not burn a job on an
// error it does not understand, and the job's retry budget bounds the cost of
// being wrong.
func Classify(err error) Class {
	c, _ := Explain(err)
	return c
}

// Reason returns the short reason Classify based its answer on, such as
// "nonce too low", "execution reverted" or "http 503"; "" for nil.
func Reason(err error) string {
	_, r := Explain(err)
	return r
}

// IsRevert reports whether err says the call's execution reverted, by its
// JSON-RPC code or message or by carrying revert data. A revert's data, when
// the node sent it, is available from RevertData.
func IsRevert(err error) bool {
	_, _, revert := explain(err)
	return revert
}

// Explain returns both Classify's class and Reason's reason with one pass.
func Explain(err error) (Class, string) {
	c, r, _ := explain(err)
	return c, r
}

// jsonRPCExecutionError is the JSON-RPC error code geth and anvil use for a
// revert (EIP-1474's "execution error").
const jsonRPCExecutionError = 3

func explain(err error) (class Class, reason string, revert bool) {
	if err == nil {
		return ClassNone, "", false
	}

	// A remote signer (KMS) that still failed after its own retries: the
	// signer waits, as one that cannot pay does, and no job is burned. First,
	// since its cause may be a timeout or a refused connection too.
	if errors.Is(err, signer.ErrUnavailable) {
		return ClassPaused, "signer unavailable", false
	}

	// Transport failures: the request may or may not have reached the node,
	// so a broadcast is re-sent (the same signed bytes are harmless).
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ClassRetryable, "timeout", false
	case errors.Is(err, context.Canceled):
		return ClassRetryable, "canceled", false
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return ClassRetryable, "connection failed", false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return ClassRetryable, "connection failed", false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		if netErr.Timeout() {
			return ClassRetryable, "timeout", false
		}
		return ClassRetryable, "connection failed", false
	}

	// An HTTP status other than 200: the JSON-RPC layer never answered.
	// 429 and 5xx are load or outage. Other statuses fall through to the
	// table, since some gateways put a JSON-RPC error body in a 4xx answer.
	if code, ok := httpStatus(err); ok {
		if code == 429 {
			return ClassRetryable, "http 429", false
		}
		if code >= 500 {
			return ClassRetryable, fmt.Sprintf("http %d", code), false
		}
	}

	// A revert reported in the JSON-RPC error itself.
	var dataErr rpc.DataError
	if errors.As(err, &dataErr) && isRevertMessage(dataErr.Error()) {
		return ClassPermanent, "execution reverted", true
	}
	var rpcErr rpc.Error
	if errors.As(err, &rpcErr) && rpcErr.ErrorCode() == jsonRPCExecutionError {
		return ClassPermanent, "execution reverted", true
	}

	msg := strings.ToLower(err.Error())
	for _, r := range classRules {
		if containsWord(msg, r.substr) {
			return r.class, r.reason, r.revert
		}
	}

	// Revert data without a message we know (a node that words reverts its
	// own way). Checked after the table so that a pool error carrying some
	// hex in its data (a hash, say) keeps its meaning.
	if data, ok := RevertData(err); ok && len(data) >= 4 {
		return ClassPermanent, "execution reverted", true
	}
	return ClassRetryable, "unknown error", false
}

// httpStatus returns the status of an rpc.HTTPError in err's chain.
func httpStatus(err error) (int, bool) {
	var v rpc.HTTPError
	if errors.As(err, &v) {
		return v.StatusCode, true
	}
	var p *rpc.HTTPError
	if errors.As(err, &p) && p != nil {
		return p.StatusCode, true
	}
	return 0, false
}

func isRevertMessage(msg string) bool {
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "execution reverted") || strings.Contains(msg, "vm execution error")
}

// containsWord reports whether sub occurs in s at a point where it does not
// continue a word, so "known transaction" does not match "unknown
// transaction". Only the left edge is checked: phrases are matched as
// prefixes of what the node says ("insufficient funds for transfer").
func containsWord(s, sub string) bool {
	for from := 0; ; {
		i := strings.Index(s[from:], sub)
		if i < 0 {
			return false
		}
		i += from
		if i == 0 || !isWordByte(s[i-1]) || !isWordByte(sub[0]) {
			return true
		}
		from = i + 1
	}
}

func isWordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_'
}
