package calldata

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
)

// Error codes for JSON ABIs and the methods picked from them.
const (
	// CodeInvalidABI: the ABI is not a JSON array of ABI entries that
	// go-ethereum's abi.JSON accepts.
	CodeInvalidABI = "invalid_abi"
	// CodeUnknownMethod: the ABI has no function of that name or signature.
	CodeUnknownMethod = "unknown_method"
	// CodeAmbiguousMethod: the name is overloaded; give the full signature.
	CodeAmbiguousMethod = "ambiguous_method"
)

// ParseABI parses a JSON ABI (the array solc emits) given by a client with
// abi.JSON, after holding every type in it (functions' inputs and outputs,
// errors, events, the constructor) to the limits ParseSignature enforces:
// an error type such as uint256[100000000000][10] that no call ever uses
// would still be built into a reflect type and, once a revert names it,
// decoded. Every error is an *Error with Code CodeInvalidABI and Field
// "abi".
func ParseABI(raw []byte) (abi.ABI, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return abi.ABI{}, newError(CodeInvalidABI, "abi", "expected a JSON array of ABI entries, got %s", describe(raw))
	}
	if err := checkABITypes(trimmed); err != nil {
		return abi.ABI{}, err
	}
	return ParseStoredABI(trimmed)
}

// ParseStoredABI parses a JSON ABI that was accepted earlier (a registered
// contract, the configured error ABI) without ParseABI's limits, so a record
// stored before them still works; what makes its types safe to use is that
// FindMethod holds a called function to the signature limits and
// UnpackValues bounds every decode by the data's length. Every error is an
// *Error with Code CodeInvalidABI and Field "abi".
func ParseStoredABI(raw []byte) (parsed abi.ABI, err error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return abi.ABI{}, newError(CodeInvalidABI, "abi", "expected a JSON array of ABI entries, got %s", describe(raw))
	}
	// abi.JSON builds reflect types for every tuple: a hostile ABI must not
	// take the process down with it.
	defer func() {
		if r := recover(); r != nil {
			parsed, err = abi.ABI{}, newError(CodeInvalidABI, "abi", "cannot parse the ABI: %v", r)
		}
	}()
	parsed, perr := abi.JSON(bytes.NewReader(trimmed))
	if perr != nil {
		return abi.ABI{}, newError(CodeInvalidABI, "abi", "cannot parse the ABI: %v", perr)
	}
	return parsed, nil
}

// FindMethod picks a function of a: by name ("transfer") when the name is
// not overloaded, or by its full signature ("transfer(address,uint256)"),
// which picks one of several overloads. Every error is an *Error with Field
// "method" that lists what the ABI offers, or says why the function found
// cannot be used.
func FindMethod(a *abi.ABI, name string) (abi.Method, error) {
	m, err := findMethod(a, name)
	if err != nil {
		return abi.Method{}, err
	}
	// abi.JSON takes types that are not Solidity's (uint7, bytes0), whose
	// selectors no contract has: hold the function to what ParseSignature
	// accepts.
	if _, err := ParseSignature(Signature(m)); err != nil {
		msg := err.Error()
		if ce, ok := err.(*Error); ok {
			msg = ce.Message
		}
		return abi.Method{}, newError(CodeInvalidFunction, "method", "%s of the ABI cannot be called: %s", m.Sig, msg)
	}
	return m, nil
}

func findMethod(a *abi.ABI, name string) (abi.Method, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return abi.Method{}, newError(CodeUnknownMethod, "method", "method is empty: name a function of the ABI")
	}
	if strings.Contains(name, "(") {
		want := name
		if m, err := ParseSignature(name); err == nil {
			want = m.Sig // canonical: spaces dropped, uint → uint256
		}
		for _, m := range a.Methods {
			if m.Sig == want {
				return m, nil
			}
		}
		return abi.Method{}, newError(CodeUnknownMethod, "method", "the ABI has no function %s; it has %s", quote(want), methodList(a))
	}
	var found []abi.Method
	for _, m := range a.Methods {
		if m.RawName == name {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return abi.Method{}, newError(CodeUnknownMethod, "method", "the ABI has no function %s; it has %s", quote(name), methodList(a))
	}
	sigs := make([]string, len(found))
	for i, m := range found {
		sigs[i] = m.Sig
	}
	sort.Strings(sigs)
	return abi.Method{}, newError(CodeAmbiguousMethod, "method", "%s is overloaded: give the full signature, one of %s", quote(name), strings.Join(sigs, ", "))
}

// DeclaresError reports whether a declares the custom error whose
// selector starts data (revert data).
func DeclaresError(a *abi.ABI, data []byte) bool {
	if a == nil || len(data) < 4 {
		return false
	}
	var id [4]byte
	copy(id[:], data[:4])
	_, err := a.ErrorByID(id)
	return err == nil
}

// methodList names the functions of a, for error messages.
func methodList(a *abi.ABI) string {
	if len(a.Methods) == 0 {
		return "no functions"
	}
	sigs := make([]string, 0, len(a.Methods))
	for _, m := range a.Methods {
		sigs = append(sigs, m.Sig)
	}
	sort.Strings(sigs)
	s := strings.Join(sigs, ", ")
	if len(s) > 300 {
		s = s[:297] + "..."
	}
	return s
}

// EncodeMethod encodes args (JSON values, converted as Encode converts
// them) as a call of method: its selector followed by the packed
// arguments. Every error is an *Error.
func EncodeMethod(method abi.Method, args []json.RawMessage) ([]byte, error) {
	return pack(method, args, true)
}

// EncodeConstructor encodes args (JSON values, converted as Encode
// converts them) as the arguments of a's constructor: the packed values a
// deployment appends to the creation bytecode, with no selector. An ABI
// without a constructor takes no arguments. Every error is an *Error.
func EncodeConstructor(a *abi.ABI, args []json.RawMessage) ([]byte, error) {
	ctor := a.Constructor
	sig := ConstructorSignature(a)
	if len(ctor.Inputs) == 0 && len(args) > 0 {
		return nil, newError(CodeWrongArgCount, "args", "the ABI has no constructor with parameters, so the deployment takes no arguments; got %d", len(args))
	}
	// As FindMethod does for functions: hold the constructor's types to
	// what ParseSignature accepts.
	if _, err := ParseSignature(sig); err != nil {
		msg := err.Error()
		if ce, ok := err.(*Error); ok {
			msg = ce.Message
		}
		return nil, newError(CodeInvalidArgument, "abi", "%s of the ABI cannot be encoded: %s", sig, msg)
	}
	return packArgs(ctor, sig, args, true)
}

// ConstructorSignature is a's constructor as "constructor(uint256,string)"
// ("constructor()" when it has none).
func ConstructorSignature(a *abi.ABI) string {
	return "constructor" + typeList(a.Constructor.Inputs)
}

// Signature is method's canonical signature with its output types, as
// ParseSignature reads it back: "balanceOf(address)(uint256)".
func Signature(method abi.Method) string {
	if len(method.Outputs) == 0 {
		return method.Sig
	}
	return method.Sig + typeList(method.Outputs)
}
