package calldata

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"

	"github.com/ethereum/go-ethereum/accounts/abi"
)

// Error codes carried by Error.Code. They are stable strings meant to be
// passed through to API clients.
const (
	// CodeInvalidFunction: the signature is malformed or uses a type this
	// package cannot encode (e.g. uint7, foo, function).
	CodeInvalidFunction = "invalid_function"
	// CodeWrongArgCount: the number of arguments differs from the number of
	// parameters in the signature.
	CodeWrongArgCount = "wrong_arg_count"
	// CodeInvalidArgument: a value has the wrong JSON kind or cannot be
	// parsed as the parameter's type (including wrong array/bytesN lengths).
	CodeInvalidArgument = "invalid_argument"
	// CodeOutOfRange: an integer parsed fine but does not fit the type.
	CodeOutOfRange = "out_of_range"
)

// Error describes why a signature or argument was rejected. Encode and
// ParseSignature return it as *Error; use errors.As to get at the fields.
type Error struct {
	// Code is one of the Code constants.
	Code string
	// Field is "function" for signature problems, "args" for problems with
	// the argument list as a whole, or a path such as args[1], args[2][0] or
	// args[0][1] pointing at the offending value.
	Field string
	// Message is a lower-case, human-readable explanation that starts with
	// Field, says what was expected and shows what was given.
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Message }

// newError builds an *Error whose message is prefixed with its field, so the
// message stands on its own in logs and API responses.
func newError(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// Encode parses a human-readable function signature such as
// "transfer(address,uint256)" or "set((uint256,string)[],bytes32)" and encodes
// args (JSON values, see the package documentation for the accepted forms)
// into calldata: the 4-byte selector followed by abi.Arguments.Pack of the
// arguments. A trailing return-type list ("balanceOf(address)(uint256)") is
// accepted and ignored. Every error is an *Error.
func Encode(signature string, args []json.RawMessage) ([]byte, error) {
	method, err := ParseSignature(signature)
	if err != nil {
		return nil, err
	}
	return pack(method, args, false)
}

// pack is Encode and EncodeMethod after the method is known. fromABI says
// the method came from a JSON ABI, which may hold types no JSON value
// converts to (ParseSignature refuses those up front): such an error names
// the method rather than the function.
func pack(method abi.Method, args []json.RawMessage, fromABI bool) ([]byte, error) {
	packed, err := packArgs(method, method.Sig, args, fromABI)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(method.ID)+len(packed))
	out = append(out, method.ID...)
	return append(out, packed...), nil
}

// packArgs converts and packs args as method's inputs, without a
// selector; sig names the method in errors.
func packArgs(method abi.Method, sig string, args []json.RawMessage, fromABI bool) ([]byte, error) {
	if len(args) != len(method.Inputs) {
		return nil, newError(CodeWrongArgCount, "args", "%s takes %s, got %d",
			sig, plural(len(method.Inputs), "argument"), len(args))
	}
	values := make([]any, len(args))
	for i := range args {
		v, cerr := convert(&method.Inputs[i].Type, args[i], "args["+strconv.Itoa(i)+"]")
		if cerr != nil {
			if fromABI && cerr.Field == "function" { // a type no JSON value converts to
				return nil, newError(CodeInvalidArgument, "method", "%s takes a %s parameter, which relayq cannot encode", sig, method.Inputs[i].Type)
			}
			return nil, cerr
		}
		values[i] = v.Interface()
	}
	packed, err := method.Inputs.Pack(values...)
	if err != nil {
		// convert builds values of exactly the Go types Pack asks for and
		// range-checks them, so this is not expected; report it rather
		// than emit calldata we cannot vouch for.
		return nil, newError(CodeInvalidArgument, "args", "cannot encode arguments for %s: %v", sig, err)
	}
	return packed, nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// assign sets dst to v if that is allowed, instead of letting reflect panic
// on a type mismatch or an unexported field.
func assign(dst, v reflect.Value) bool {
	if !dst.CanSet() || !v.IsValid() || !v.Type().AssignableTo(dst.Type()) {
		return false
	}
	dst.Set(v)
	return true
}
