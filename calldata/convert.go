package calldata

import (
	"encoding/hex"
	"encoding/json"
	"math/big"
	"reflect"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
)

// convert turns one JSON value into a reflect.Value of exactly t.GetType(),
// the Go type abi.Arguments.Pack expects for t. Values are built bottom-up:
// a container is allocated only after all of its elements converted, so
// memory stays proportional to the input that was actually validated.
//
// Pack does not range-check *big.Int values (it silently wraps them mod
// 2^256) and panics on nil *big.Int, so every integer is range-checked here
// and every slot of every array and struct is filled.
func convert(t *abi.Type, raw json.RawMessage, field string) (reflect.Value, *Error) {
	switch t.T {
	case abi.IntTy, abi.UintTy:
		return convertInt(t, raw, field)
	case abi.BoolTy:
		switch string(trimJSONSpace(raw)) {
		case "true":
			return reflect.ValueOf(true), nil
		case "false":
			return reflect.ValueOf(false), nil
		}
		return reflect.Value{}, newError(CodeInvalidArgument, field, "expected true or false for bool, got %s", describe(raw))
	case abi.StringTy:
		s, ok := jsonString(raw)
		if !ok {
			return reflect.Value{}, newError(CodeInvalidArgument, field, "expected a JSON string for string, got %s", describe(raw))
		}
		return reflect.ValueOf(s), nil
	case abi.AddressTy:
		a, err := parseAddress(raw, field)
		if err != nil {
			return reflect.Value{}, err
		}
		return reflect.ValueOf(a), nil
	case abi.BytesTy:
		b, err := parseHexBytes(t, raw, field)
		if err != nil {
			return reflect.Value{}, err
		}
		return reflect.ValueOf(b), nil
	case abi.FixedBytesTy:
		b, err := parseHexBytes(t, raw, field)
		if err != nil {
			return reflect.Value{}, err
		}
		if len(b) != t.Size {
			return reflect.Value{}, newError(CodeInvalidArgument, field, "expected exactly %s for %s, got %d (%s); values are not padded or truncated",
				plural(t.Size, "byte"), t, len(b), describe(raw))
		}
		arr := reflect.New(t.GetType()).Elem() // [N]byte
		reflect.Copy(arr, reflect.ValueOf(b))
		return arr, nil
	case abi.SliceTy, abi.ArrayTy:
		return convertArray(t, raw, field)
	case abi.TupleTy:
		return convertTuple(t, raw, field)
	}
	// ParseSignature never produces other types (function, fixed point).
	return reflect.Value{}, newError(CodeInvalidFunction, "function", "type %s is not supported", t)
}

func convertArray(t *abi.Type, raw json.RawMessage, field string) (reflect.Value, *Error) {
	elems, ok := jsonArray(raw)
	if !ok || t.Elem == nil {
		return reflect.Value{}, newError(CodeInvalidArgument, field, "expected a JSON array for %s, got %s", t, describe(raw))
	}
	if t.T == abi.ArrayTy && len(elems) != t.Size {
		return reflect.Value{}, newError(CodeInvalidArgument, field, "expected %s for %s, got %d",
			plural(t.Size, "element"), t, len(elems))
	}
	values := make([]reflect.Value, len(elems))
	for i, e := range elems {
		v, err := convert(t.Elem, e, field+"["+strconv.Itoa(i)+"]")
		if err != nil {
			return reflect.Value{}, err
		}
		values[i] = v
	}
	var out reflect.Value
	if t.T == abi.ArrayTy {
		out = reflect.New(t.GetType()).Elem()
	} else {
		out = reflect.MakeSlice(t.GetType(), len(values), len(values))
	}
	if out.Len() != len(values) {
		return reflect.Value{}, internalError(t)
	}
	for i, v := range values {
		if !assign(out.Index(i), v) {
			return reflect.Value{}, internalError(t)
		}
	}
	return out, nil
}

func convertTuple(t *abi.Type, raw json.RawMessage, field string) (reflect.Value, *Error) {
	elems, ok := jsonArray(raw)
	if !ok {
		hint := ""
		if kind(raw) == '{' {
			hint = " (tuples are positional: list the components in order)"
		}
		return reflect.Value{}, newError(CodeInvalidArgument, field, "expected a JSON array of %s for %s, got %s%s",
			plural(len(t.TupleElems), "component"), t, describe(raw), hint)
	}
	if len(elems) != len(t.TupleElems) {
		return reflect.Value{}, newError(CodeInvalidArgument, field, "expected %s for %s, got %d",
			plural(len(t.TupleElems), "component"), t, len(elems))
	}
	out := reflect.New(t.TupleType).Elem()
	// abi.NewType adds one struct field per component, in order.
	if out.Kind() != reflect.Struct || out.NumField() != len(t.TupleElems) {
		return reflect.Value{}, internalError(t)
	}
	for i, e := range elems {
		v, err := convert(t.TupleElems[i], e, field+"["+strconv.Itoa(i)+"]")
		if err != nil {
			return reflect.Value{}, err
		}
		if !assign(out.Field(i), v) {
			return reflect.Value{}, internalError(t)
		}
	}
	return out, nil
}

// internalError reports a mismatch between the Go types accounts/abi asks for
// and the ones convert built. It indicates a bug (or an accounts/abi change),
// not bad input, but is still returned as an error rather than a panic.
func internalError(t *abi.Type) *Error {
	return newError(CodeInvalidFunction, "function", "cannot build a value for type %s", t)
}

// intBounds[n/8-1] holds the inclusive ranges of uintN and intN.
var intBounds = func() (b [32]struct{ umax, smin, smax *big.Int }) {
	one := big.NewInt(1)
	for i := range b {
		bits := uint(8 * (i + 1))
		b[i].umax = new(big.Int).Sub(new(big.Int).Lsh(one, bits), one)
		b[i].smax = new(big.Int).Sub(new(big.Int).Lsh(one, bits-1), one)
		b[i].smin = new(big.Int).Neg(new(big.Int).Lsh(one, bits-1))
	}
	return b
}()

func convertInt(t *abi.Type, raw json.RawMessage, field string) (reflect.Value, *Error) {
	if t.Size < 8 || t.Size > 256 || t.Size%8 != 0 {
		return reflect.Value{}, internalError(t)
	}
	var (
		n      *big.Int
		status numStatus
	)
	switch kind(raw) {
	case '"':
		s, ok := jsonString(raw)
		if !ok {
			status = numInvalid
			break
		}
		n, status = parseIntString(s)
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		n, status = parseJSONNumber(string(trimJSONSpace(raw)))
	default:
		return reflect.Value{}, newError(CodeInvalidArgument, field,
			"expected an integer (JSON number, decimal string or 0x-hex string) for %s, got %s", t, describe(raw))
	}
	bounds := intBounds[t.Size/8-1]
	lo, hi, rangeText := new(big.Int), bounds.umax, "0 to "+boundText(bounds.umax, "2^"+strconv.Itoa(t.Size)+"-1")
	if t.T == abi.IntTy {
		lo, hi = bounds.smin, bounds.smax
		rangeText = boundText(lo, "-2^"+strconv.Itoa(t.Size-1)) + " to " + boundText(hi, "2^"+strconv.Itoa(t.Size-1)+"-1")
	}
	switch {
	case status == numNotInteger:
		return reflect.Value{}, newError(CodeInvalidArgument, field, "%s is not an integer for %s", describe(raw), t)
	case status == numInvalid && kind(raw) == '"':
		return reflect.Value{}, newError(CodeInvalidArgument, field,
			"%s is not an integer for %s (integer strings are decimal digits or 0x-hex, optionally preceded by '-')", describe(raw), t)
	case status == numInvalid:
		return reflect.Value{}, newError(CodeInvalidArgument, field, "%s is not a valid JSON number for %s", describe(raw), t)
	case status == numTooLarge || n.Cmp(lo) < 0 || n.Cmp(hi) > 0:
		return reflect.Value{}, newError(CodeOutOfRange, field, "%s is out of range for %s (%s)", describe(raw), t, rangeText)
	}

	// abi uses int8..int64 / uint8..uint64 for those sizes and *big.Int for
	// all others; follow whatever t.GetType() says.
	goType := t.GetType()
	switch goType.Kind() {
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v := reflect.New(goType).Elem()
		if !n.IsInt64() || v.OverflowInt(n.Int64()) {
			return reflect.Value{}, internalError(t)
		}
		v.SetInt(n.Int64())
		return v, nil
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v := reflect.New(goType).Elem()
		if !n.IsUint64() || v.OverflowUint(n.Uint64()) {
			return reflect.Value{}, internalError(t)
		}
		v.SetUint(n.Uint64())
		return v, nil
	}
	if goType != reflect.TypeFor[*big.Int]() {
		return reflect.Value{}, internalError(t)
	}
	return reflect.ValueOf(n), nil
}

// boundText prints small bounds in decimal and large ones as powers of two,
// which are easier to read than 78-digit numbers.
func boundText(n *big.Int, power string) string {
	if n.BitLen() <= 64 {
		return n.String()
	}
	return power
}

type numStatus int

const (
	numOK numStatus = iota
	numInvalid
	numNotInteger
	numTooLarge // certainly larger in magnitude than any 256-bit value
)

// maxDecimalDigits: 2^256 has 78 decimal digits, so anything longer is out
// of range for every type and is rejected before big.Int parses it.
const (
	maxDecimalDigits = 78
	maxHexDigits     = 64
)

// parseIntString parses the string form of an integer: an optional '-', then
// either decimal digits or "0x"/"0X" and hex digits.
func parseIntString(s string) (*big.Int, numStatus) {
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	base, maxDigits, valid := 10, maxDecimalDigits, isDigit
	if has0xPrefix(s) {
		base, maxDigits, valid, s = 16, maxHexDigits, isHexDigit, s[2:]
	}
	if s == "" {
		return nil, numInvalid
	}
	for i := 0; i < len(s); i++ {
		if !valid(s[i]) {
			// "1.5" and "1e3" get the more specific message.
			if _, status := parseJSONNumber(s); base == 10 && status == numNotInteger {
				return nil, numNotInteger
			}
			return nil, numInvalid
		}
	}
	if s = strings.TrimLeft(s, "0"); s == "" {
		return new(big.Int), numOK
	}
	if len(s) > maxDigits {
		return nil, numTooLarge
	}
	n, ok := new(big.Int).SetString(s, base)
	if !ok {
		return nil, numInvalid
	}
	if neg {
		n.Neg(n)
	}
	return n, numOK
}

// parseJSONNumber parses a JSON number exactly. Fractions and exponents are
// allowed as long as the value is an integer (1e3, 2.50e1). The exponent is
// handled arithmetically rather than by big.Rat/big.Float so that inputs like
// 1e999999999 cost nothing.
func parseJSONNumber(s string) (*big.Int, numStatus) {
	i := 0
	neg := false
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart := s[intStart:i]
	if intPart == "" || (len(intPart) > 1 && intPart[0] == '0') {
		return nil, numInvalid
	}
	fracPart := ""
	if i < len(s) && s[i] == '.' {
		i++
		fracStart := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if fracPart = s[fracStart:i]; fracPart == "" {
			return nil, numInvalid
		}
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		expStart := i
		for i < len(s) && isDigit(s[i]) {
			// Saturate: beyond 1e9 the answer (too large or not an
			// integer) no longer changes.
			if exp < 1e9 {
				exp = exp*10 + int64(s[i]-'0')
			}
			i++
		}
		if i == expStart {
			return nil, numInvalid
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(s) {
		return nil, numInvalid
	}

	// value = mantissa * 10^exp10, with trailing zeros moved into the
	// exponent so that 1.000 and 1000e-3 are recognised as integers.
	mantissa := strings.TrimLeft(intPart+fracPart, "0")
	if mantissa == "" {
		return new(big.Int), numOK
	}
	trimmed := strings.TrimRight(mantissa, "0")
	exp10 := exp - int64(len(fracPart)) + int64(len(mantissa)-len(trimmed))
	mantissa = trimmed
	if exp10 < 0 {
		return nil, numNotInteger
	}
	if int64(len(mantissa))+exp10 > maxDecimalDigits {
		return nil, numTooLarge
	}
	n, ok := new(big.Int).SetString(mantissa+strings.Repeat("0", int(exp10)), 10)
	if !ok {
		return nil, numInvalid
	}
	if neg {
		n.Neg(n)
	}
	return n, numOK
}

func parseAddress(raw json.RawMessage, field string) (common.Address, *Error) {
	s, ok := jsonString(raw)
	if !ok {
		return common.Address{}, newError(CodeInvalidArgument, field, "expected a 0x-prefixed hex address string for address, got %s", describe(raw))
	}
	if !has0xPrefix(s) || len(s) != 2+2*common.AddressLength || !isHexString(s[2:]) {
		return common.Address{}, newError(CodeInvalidArgument, field, "%s is not an address: expected 0x followed by 40 hex digits", describe(raw))
	}
	digits := s[2:]
	// EIP-55: mixed case means the sender claims a checksum, so it must be
	// right; single-case addresses carry no checksum.
	if strings.ToLower(digits) != digits && strings.ToUpper(digits) != digits {
		if common.HexToAddress(s).Hex()[2:] != digits {
			return common.Address{}, newError(CodeInvalidArgument, field,
				"%s has an invalid EIP-55 checksum (mixed-case addresses must be checksummed; check for a typo)", describe(raw))
		}
	}
	return common.HexToAddress(s), nil
}

// parseHexBytes decodes the 0x-hex string used for bytes and bytesN.
func parseHexBytes(t *abi.Type, raw json.RawMessage, field string) ([]byte, *Error) {
	s, ok := jsonString(raw)
	if !ok {
		return nil, newError(CodeInvalidArgument, field, "expected a 0x-prefixed hex string for %s, got %s", t, describe(raw))
	}
	if !has0xPrefix(s) {
		return nil, newError(CodeInvalidArgument, field, "%s is not 0x-prefixed hex for %s", describe(raw), t)
	}
	if !isHexString(s[2:]) {
		return nil, newError(CodeInvalidArgument, field, "%s is not valid hex for %s", describe(raw), t)
	}
	if len(s)%2 != 0 {
		return nil, newError(CodeInvalidArgument, field, "%s has an odd number of hex digits for %s", describe(raw), t)
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return nil, newError(CodeInvalidArgument, field, "%s is not valid hex for %s", describe(raw), t)
	}
	return b, nil
}

func has0xPrefix(s string) bool { return len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') }

func isHexDigit(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isHexString(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

// trimJSONSpace strips the four whitespace characters JSON allows around a
// value (bytes.TrimSpace would also strip ones JSON does not allow).
func trimJSONSpace(raw []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(raw) > 0 && isSpace(raw[0]) {
		raw = raw[1:]
	}
	for len(raw) > 0 && isSpace(raw[len(raw)-1]) {
		raw = raw[:len(raw)-1]
	}
	return raw
}

// kind returns the first byte of the value, which identifies its JSON kind,
// or 0 for an empty value.
func kind(raw []byte) byte {
	if raw = trimJSONSpace(raw); len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func jsonString(raw []byte) (string, bool) {
	var s string
	if kind(raw) != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func jsonArray(raw []byte) ([]json.RawMessage, bool) {
	var elems []json.RawMessage
	if kind(raw) != '[' || json.Unmarshal(raw, &elems) != nil {
		return nil, false
	}
	return elems, true
}

// describe shows the given JSON value in an error message: scalars verbatim
// (shortened), containers by kind, so a message never echoes a huge payload.
func describe(raw []byte) string {
	v := trimJSONSpace(raw)
	switch {
	case len(v) == 0:
		return "no value"
	case !json.Valid(v):
		return "invalid JSON " + quote(string(v))
	case v[0] == '{':
		return "a JSON object"
	case v[0] == '[':
		return "a JSON array"
	}
	// Valid JSON scalars contain no raw control characters, so they can be
	// shown as sent (keeping JSON's own quoting), just shortened.
	return truncate(string(v))
}
