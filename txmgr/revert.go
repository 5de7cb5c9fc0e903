package txmgr

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/relayq/relayq/calldata"
)

// The kinds of revert DecodeRevert tells apart.
const (
	RevertKindError   = "error"   // Error(string): require(cond, "msg") or revert("msg")
	RevertKindPanic   = "panic"   // Panic(uint256): assert, overflow, division by zero, ...
	RevertKindCustom  = "custom"  // a Solidity custom error, decoded when the ABI has it
	RevertKindUnknown = "unknown" // data that is none of the above, or malformed
	RevertKindEmpty   = "empty"   // no data: revert() or require(cond) without a message
)

// Revert is a decoded revert.
type Revert struct {
	// Reason is the human-readable cause: the Error(string) message, the
	// panic's meaning, or the custom error with its arguments.
	Reason string
	// Data is the raw revert data as the contract returned it.
	Data []byte
	// Kind is one of the RevertKind constants.
	Kind string
}

var (
	errorSelector = crypto.Keccak256([]byte("Error(string)"))[:4]
	panicSelector = crypto.Keccak256([]byte("Panic(uint256)"))[:4]
)

// DecodeRevert decodes revert data. Error(string) and Panic(uint256) are
// decoded with abi.UnpackRevert; a panic's reason also names its code, as in
// "panic 0x12: division or modulo by zero". A custom error is decoded with
// contractABI when it is given and declares the error, as in
// "TooLarge(given: 1001, max: 1000)"; otherwise it is reported by its
// selector, as in "custom error 0x12345678". Decoding is bounded by the
// data's length (calldata.UnpackValues): arguments that would take more
// memory than that allows are not decoded, and the reason shows the raw
// data instead.
func DecodeRevert(data []byte, contractABI *abi.ABI) Revert {
	r := Revert{Data: append([]byte(nil), data...)}
	switch {
	case len(data) == 0:
		r.Kind, r.Reason = RevertKindEmpty, "reverted without a reason"
	case len(data) < 4:
		r.Kind, r.Reason = RevertKindUnknown, "unrecognised revert data "+hexutil.Encode(data)
	case string(data[:4]) == string(errorSelector):
		msg, err := abi.UnpackRevert(data)
		if err != nil {
			r.Kind, r.Reason = RevertKindUnknown, "malformed Error(string) revert "+hexutil.Encode(data)
			break
		}
		r.Kind, r.Reason = RevertKindError, msg
	case string(data[:4]) == string(panicSelector):
		msg, err := abi.UnpackRevert(data)
		if err != nil || len(data) < 36 {
			r.Kind, r.Reason = RevertKindUnknown, "malformed Panic(uint256) revert "+hexutil.Encode(data)
			break
		}
		code := new(big.Int).SetBytes(data[4:36])
		r.Kind = RevertKindPanic
		// UnpackRevert already says "unknown panic code: 0x…" for codes
		// Solidity does not define; don't say the code twice.
		if strings.HasPrefix(msg, "unknown panic code") {
			r.Reason = "panic: " + msg
		} else {
			r.Reason = fmt.Sprintf("panic 0x%02x: %s", code, msg)
		}
	default:
		r.Kind = RevertKindCustom
		r.Reason = decodeCustomError(data, contractABI)
	}
	return r
}

// decodeCustomError formats a custom error from the ABI, or by its selector
// when the ABI is missing, does not declare it, or the arguments do not fit.
func decodeCustomError(data []byte, contractABI *abi.ABI) string {
	fallback := "custom error " + hexutil.Encode(data[:4])
	if contractABI == nil {
		return fallback
	}
	var id [4]byte
	copy(id[:], data[:4])
	abiErr, err := contractABI.ErrorByID(id)
	if err != nil {
		return fallback
	}
	// The ABI may be a stored one from before ParseABI's limits, and data
	// comes from the node: calldata.UnpackValues bounds the decode by the
	// data's length, and the reason then carries the raw data instead.
	args, err := calldata.UnpackValues(abiErr.Inputs, data[4:])
	if errors.Is(err, calldata.ErrDecodeTooLarge) {
		return fallback + " (" + abiErr.Name + ", arguments too large to decode safely: " + hexutil.Encode(data) + ")"
	}
	if err != nil {
		return fallback + " (" + abiErr.Name + ", undecodable arguments)"
	}
	parts := make([]string, 0, len(args))
	if len(args) != len(abiErr.Inputs) {
		return fallback + " (" + abiErr.Name + ", undecodable arguments)"
	}
	for i, v := range args {
		in := abiErr.Inputs[i]
		s := formatABIValue(in.Type, v)
		if in.Name != "" {
			s = in.Name + ": " + s
		}
		parts = append(parts, s)
	}
	return abiErr.Name + "(" + strings.Join(parts, ", ") + ")"
}

// formatABIValue prints a decoded ABI value the way a Solidity developer
// writes it: integers in decimal, addresses checksummed, bytes in hex,
// strings quoted, arrays in brackets and tuples in parentheses. The ABI type
// decides, since Go decodes both bytes and uint8[] to []byte.
func formatABIValue(typ abi.Type, v interface{}) string {
	rv := reflect.ValueOf(v)
	switch typ.T {
	case abi.StringTy:
		return fmt.Sprintf("%q", v)
	case abi.AddressTy:
		if a, ok := v.(common.Address); ok {
			return a.Hex()
		}
	case abi.BytesTy, abi.FixedBytesTy, abi.HashTy, abi.FunctionTy:
		if rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return hexutil.Encode(b)
		}
	case abi.SliceTy, abi.ArrayTy:
		if (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && typ.Elem != nil {
			parts := make([]string, rv.Len())
			for i := range parts {
				parts[i] = formatABIValue(*typ.Elem, rv.Index(i).Interface())
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
	case abi.TupleTy:
		if rv.Kind() == reflect.Struct && rv.NumField() == len(typ.TupleElems) {
			parts := make([]string, rv.NumField())
			for i := range parts {
				parts[i] = formatABIValue(*typ.TupleElems[i], rv.Field(i).Interface())
			}
			return "(" + strings.Join(parts, ", ") + ")"
		}
	}
	return fmt.Sprint(v) // integers (*big.Int and the small Go ints), bools
}

// RevertData extracts revert bytes from an RPC error: the data of an
// rpc.DataError anywhere in err's chain. geth and anvil send it as a hex
// string "0x…"; OpenEthereum-style nodes as "Reverted 0x…"; some proxies
// nest it as {"data": "0x…"}, and wrappers may hold it already decoded.
// ok is false when err carries no revert data. ok with empty data means the
// node reported a revert that returned no data.
func RevertData(err error) ([]byte, bool) {
	var found []byte
	ok := false
	walkErrorChain(err, func(e error) bool {
		de, is := e.(rpc.DataError)
		if !is {
			return false
		}
		found, ok = revertBytes(de.ErrorData(), 0)
		return ok
	})
	return found, ok
}

// RevertFromError returns the decoded revert err reports, and false when err
// is not a revert. When the node sent no data, the reason is what its
// message says after "execution reverted: ", if anything.
func RevertFromError(err error, contractABI *abi.ABI) (Revert, bool) {
	if !IsRevert(err) {
		return Revert{}, false
	}
	if data, ok := RevertData(err); ok && len(data) > 0 {
		return DecodeRevert(data, contractABI), true
	}
	r := DecodeRevert(nil, nil)
	if msg := revertMessage(err); msg != "" {
		r.Kind, r.Reason = RevertKindUnknown, msg
	}
	return r, true
}

// revertMessage returns the text after "execution reverted: " in err's
// message, or "".
func revertMessage(err error) string {
	const marker = "execution reverted: "
	s := err.Error()
	i := strings.Index(strings.ToLower(s), marker)
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(s[i+len(marker):])
}

// walkErrorChain visits err and everything it wraps, depth first, until visit
// returns true.
func walkErrorChain(err error, visit func(error) bool) bool {
	if err == nil {
		return false
	}
	if visit(err) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return walkErrorChain(u.Unwrap(), visit)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if walkErrorChain(e, visit) {
				return true
			}
		}
	}
	return false
}

// revertBytes turns the many shapes of a JSON-RPC error's data into bytes.
func revertBytes(data interface{}, depth int) ([]byte, bool) {
	if depth > 4 { // nested objects from proxies are shallow; stop on cycles
		return nil, false
	}
	switch d := data.(type) {
	case nil:
		return nil, false
	case []byte:
		return append([]byte(nil), d...), true
	case hexutil.Bytes:
		return append([]byte(nil), d...), true
	case string:
		return decodeRevertHex(d)
	case json.RawMessage:
		var v interface{}
		if json.Unmarshal(d, &v) != nil {
			return nil, false
		}
		return revertBytes(v, depth+1)
	case map[string]interface{}:
		if inner, ok := d["data"]; ok {
			return revertBytes(inner, depth+1)
		}
	}
	return nil, false
}

// decodeRevertHex decodes "0x…", bare hex, or "Reverted 0x…".
func decodeRevertHex(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	if len(s) >= 9 && strings.EqualFold(s[:9], "reverted ") {
		s = strings.TrimSpace(s[9:])
	}
	if len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X") {
		s = s[2:]
	} else if s == "" {
		return nil, false // a bare empty string says nothing
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}
