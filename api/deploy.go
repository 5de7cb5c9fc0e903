package api

import (
	"encoding/json"

	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/relayq/relayq/calldata"
)

// Deployments. A job without "to" that gives "data" (the whole initcode)
// or "bytecode" (with "abi" and "args" to encode the constructor's
// arguments) creates a contract; the job reports its contract_address.

// maxInitcode is EIP-3860's limit on a creation's initcode (2 × the
// 24,576-byte code limit): a node refuses a longer one outright.
const maxInitcode = 49_152

// deploys reports whether the request creates a contract: it gives
// bytecode, or data with no recipient and no function or method.
func (r *jobRequest) deploys() bool {
	return r.Bytecode != nil || r.To == nil && r.Contract == nil && r.Data != nil && r.Function == nil && r.Method == nil
}

func (r *jobRequest) hasABI() bool { return len(r.ABI) > 0 && string(r.ABI) != "null" }

// encodeDeployment checks a deployment's fields and puts its initcode
// (bytecode followed by the encoded constructor arguments) in c.
func (r *jobRequest) encodeDeployment(c *call) *Error {
	const how = "a deployment gives data (the whole initcode) or bytecode (with abi and args for the constructor), and no to"
	switch {
	case r.To != nil:
		return invalid("conflicting_fields", "to", "to and bytecode: %s; leave bytecode out to call to", how)
	case r.Contract != nil:
		return invalid("conflicting_fields", "contract", "contract names a deployed contract to call: %s", how)
	case r.Function != nil:
		return invalid("conflicting_fields", "function", "a deployment runs its constructor, not a function: %s", how)
	case r.Method != nil:
		return invalid("conflicting_fields", "method", "a deployment runs its constructor, not a method: %s", how)
	case r.Data != nil:
		return invalid("conflicting_fields", "data", "data and bytecode both give the initcode: %s", how)
	}
	field, hex := "bytecode", *r.Bytecode
	code, err := hexutil.Decode(hex)
	if err != nil {
		return invalid("invalid_data", field, "%s must be 0x-prefixed hex bytes of even length (the contract's creation bytecode)", field)
	}
	if len(code) == 0 {
		return invalid("invalid_data", field, "%s is empty: a deployment needs the contract's creation bytecode", field)
	}
	if len(code) > maxInitcode { // before any encoding work
		return initcodeTooLarge(field, len(code))
	}
	args := r.Args
	if args == nil {
		args = []json.RawMessage{}
	}
	switch {
	case r.hasABI():
		if len(r.ABI) > maxABIBytes {
			return invalid("too_large", "abi", "abi is %d bytes; at most %d", len(r.ABI), maxABIBytes)
		}
		parsed, err := calldata.ParseABI(r.ABI)
		if err != nil {
			return calldataError(err, "abi")
		}
		packed, err := calldata.EncodeConstructor(&parsed, args)
		if err != nil {
			return calldataError(err, "args")
		}
		code = append(code, packed...)
		c.Function, c.ABI = calldata.ConstructorSignature(&parsed), &parsed
		c.Args, _ = json.Marshal(args)
	case len(args) > 0:
		return invalid("missing_field", "abi", "args are the constructor's arguments: give abi (the contract's JSON ABI) to encode them, or append them to bytecode yourself")
	}
	if len(code) > maxInitcode {
		return initcodeTooLarge(field, len(code))
	}
	c.Data, c.Deploy = code, true
	return nil
}

// deployData checks the initcode a deployment gives as data.
func deployData(c *call, hex string) *Error {
	code, err := hexutil.Decode(hex)
	if err != nil {
		return invalid("invalid_data", "data", "data must be 0x-prefixed hex bytes of even length")
	}
	if len(code) == 0 {
		return invalid("invalid_data", "data", "data is empty: without to, data is the creation bytecode of the contract to deploy")
	}
	if len(code) > maxInitcode {
		return initcodeTooLarge("data", len(code))
	}
	c.Data, c.Deploy = code, true
	return nil
}

func initcodeTooLarge(field string, n int) *Error {
	return invalid("too_large", field, "the initcode is %d bytes; EIP-3860 allows at most %d", n, maxInitcode)
}
