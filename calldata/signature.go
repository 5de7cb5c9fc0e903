package calldata

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
)

// Limits on signatures. They bound the work and memory one request can cause:
// accounts/abi turns every type into a reflect type (reflect.ArrayOf panics on
// absurd sizes), and the converter recurses once per nesting level.
const (
	maxSignatureLen = 4096
	maxNesting      = 32
	// maxStaticElems caps the number of values a single fixed-size type
	// holds, counting nested fixed arrays and tuple components, so
	// uint8[65536][65536] is rejected before any reflect type is built.
	maxStaticElems = 1 << 16
)

// ParseSignature parses a human-readable signature such as
// "transfer(address,uint256)" or "balanceOf(address)(uint256)" into an
// abi.Method built with abi.NewMethod: Method.Sig is the canonical signature,
// Method.ID the 4-byte selector, Method.Inputs the parameter types and
// Method.Outputs the optional return types (empty when absent), ready for
// Method.Outputs.Unpack. Every error is an *Error with Code
// CodeInvalidFunction and Field "function".
//
// It deliberately does not use abi.ParseSelector: in go-ethereum v1.17.10 that
// function panics on a name without parentheses ("transfer"), accepts any
// character as a separator ("f(uint256 uint8)" parses as two parameters),
// cannot express tuple arrays other than (...)[], and leaves type validation to
// abi.NewType, which accepts "uint7", "uint08" (hashing the wrong selector),
// "bytes0" (as bytes) and "uint256abc" (as uint256).
func ParseSignature(signature string) (abi.Method, error) {
	if len(signature) > maxSignatureLen {
		return abi.Method{}, sigError("signature is %d bytes long; at most %d are allowed", len(signature), maxSignatureLen)
	}
	p := &sigParser{src: signature}
	p.skipSpace()
	name := p.identifier()
	if name == "" {
		if p.eof() || p.peek() == '(' {
			return abi.Method{}, sigError("function name is empty in %s", quote(signature))
		}
		return abi.Method{}, sigError("invalid function name at offset %d in %s: a name starts with a letter, '_' or '$'", p.pos, quote(signature))
	}
	p.skipSpace()
	if p.eof() || p.peek() != '(' {
		return abi.Method{}, p.expected("'(' after function name "+quote(name), "")
	}
	inputs, err := p.typeList(0)
	if err != nil {
		return abi.Method{}, err
	}
	p.skipSpace()
	var outputs []parsedType
	if !p.eof() && p.peek() == '(' {
		if outputs, err = p.typeList(0); err != nil {
			return abi.Method{}, err
		}
		p.skipSpace()
	}
	if !p.eof() {
		return abi.Method{}, p.failAt("unexpected "+quote(p.rest())+" after the parameter list", "")
	}
	in, err := newArguments(inputs)
	if err != nil {
		return abi.Method{}, err
	}
	out, err := newArguments(outputs)
	if err != nil {
		return abi.Method{}, err
	}
	return abi.NewMethod(name, name, abi.Function, "", false, false, in, out), nil
}

// newArguments builds abi types from the parsed marshalings. The parser has
// already validated and canonicalised every type string, so neither check
// below is expected to fire; they catch the parser and abi.NewType
// disagreeing (say after a go-ethereum upgrade), since abi.NewMethod hashes
// the selector from Type.String() rather than from what the parser accepted.
func newArguments(args []parsedType) (abi.Arguments, error) {
	out := make(abi.Arguments, len(args))
	for i, a := range args {
		t, err := abi.NewType(a.m.Type, "", a.m.Components)
		if err != nil {
			return nil, sigError("unsupported type %s: %v", quote(a.m.Type), err)
		}
		if canonical := canonicalString(a.m); t.String() != canonical {
			return nil, sigError("type %s was read as %s", quote(canonical), quote(t.String()))
		}
		out[i] = abi.Argument{Type: t}
	}
	return out, nil
}

// canonicalString spells a parsed type the way the ABI spec hashes it, with
// tuples written out as (T1,...,Tn).
func canonicalString(m abi.ArgumentMarshaling) string {
	suffix, isTuple := strings.CutPrefix(m.Type, "tuple")
	if !isTuple {
		return m.Type
	}
	parts := make([]string, len(m.Components))
	for i, c := range m.Components {
		parts[i] = canonicalString(c)
	}
	return "(" + strings.Join(parts, ",") + ")" + suffix
}

func sigError(format string, args ...any) *Error {
	return newError(CodeInvalidFunction, "function", format, args...)
}

// sigParser is a small recursive-descent parser for
//
//	signature = ws name ws list [ws list] ws
//	list      = "(" ws [type ws {"," ws type ws}] ")"
//	type      = (elementary | "(" ws type ws {"," ws type ws} ")") {"[" [digits] "]"}
//
// It produces abi.ArgumentMarshaling values whose Type is already canonical
// ("uint" becomes "uint256", "[007]" becomes "[7]").
type sigParser struct {
	src string
	pos int
}

func (p *sigParser) eof() bool    { return p.pos >= len(p.src) }
func (p *sigParser) peek() byte   { return p.src[p.pos] }
func (p *sigParser) rest() string { return p.src[p.pos:] }

func (p *sigParser) skipSpace() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t' || p.peek() == '\n' || p.peek() == '\r') {
		p.pos++
	}
}

// expected reports that what was expected at the current position is not
// there, showing what is; hint, if any, is appended as advice.
func (p *sigParser) expected(what, hint string) *Error {
	got := "end of input"
	if !p.eof() {
		got = quote(p.rest())
	}
	msg := fmt.Sprintf("expected %s, got %s at offset %d in %s", what, got, p.pos, quote(p.src))
	if hint != "" {
		msg += "; " + hint
	}
	return sigError("%s", msg)
}

// failAt reports a problem located at the current position, followed by an
// optional hint.
func (p *sigParser) failAt(msg, hint string) *Error {
	msg = fmt.Sprintf("%s at offset %d in %s", msg, p.pos, quote(p.src))
	if hint != "" {
		msg += "; " + hint
	}
	return sigError("%s", msg)
}

// identifier consumes [A-Za-z_$][A-Za-z0-9_$]*, the character set Solidity
// allows in function names.
func (p *sigParser) identifier() string {
	start := p.pos
	for !p.eof() {
		c := p.peek()
		if isLetter(c) || c == '_' || c == '$' || (p.pos > start && isDigit(c)) {
			p.pos++
			continue
		}
		break
	}
	return p.src[start:p.pos]
}

// parsedType is one parsed parameter type together with the numbers the
// limits are checked against.
type parsedType struct {
	m abi.ArgumentMarshaling
	// elems is the number of values one instance holds: fixed arrays
	// multiply, tuples add, dynamic arrays count once because their
	// elements are only allocated as the JSON input supplies them.
	elems uint64
	// height is the nesting depth of the type itself (uint256 is 1,
	// uint256[] is 2, (uint256[])[] is 4).
	height int
}

// typeList parses "(" [type {"," type}] ")"; depth is the number of
// enclosing tuples, which bounds the parser's own recursion.
func (p *sigParser) typeList(depth int) ([]parsedType, error) {
	p.pos++ // the caller checked for '('
	p.skipSpace()
	var types []parsedType
	if !p.eof() && p.peek() == ')' {
		p.pos++
		return types, nil
	}
	for {
		t, err := p.parseType(depth)
		if err != nil {
			return nil, err
		}
		// abi.NewType needs a name for every tuple component (it becomes
		// a struct field); top-level arguments ignore it.
		t.m.Name = "f" + strconv.Itoa(len(types))
		types = append(types, t)
		p.skipSpace()
		if p.eof() {
			return nil, p.expected("',' or ')'", "")
		}
		switch p.peek() {
		case ',':
			p.pos++
			p.skipSpace()
		case ')':
			p.pos++
			return types, nil
		default:
			if isLetter(p.peek()) {
				return nil, p.expected("',' or ')' after "+quote(t.m.Type), "parameter names and data locations are not supported")
			}
			return nil, p.expected("',' or ')' after "+quote(t.m.Type), "")
		}
	}
}

// parseType parses one type with its array suffixes into a marshaling with
// the canonical type string ("tuple..." for tuples, with the components in
// Components), enforcing maxNesting and maxStaticElems.
func (p *sigParser) parseType(depth int) (parsedType, error) {
	var t parsedType
	if depth >= maxNesting {
		return t, p.failAt(fmt.Sprintf("types are nested more than %d levels deep", maxNesting), "")
	}
	start := p.pos
	if !p.eof() && p.peek() == '(' {
		components, err := p.typeList(depth + 1)
		if err != nil {
			return t, err
		}
		if len(components) == 0 {
			p.pos = start
			return t, p.failAt("empty tuple () is not a valid parameter type", "")
		}
		t.m.Type = "tuple"
		for _, c := range components {
			t.m.Components = append(t.m.Components, c.m)
			t.elems += c.elems
			t.height = max(t.height, c.height)
		}
		t.height++
		if t.elems > maxStaticElems {
			p.pos = start
			return t, p.failAt(fmt.Sprintf("tuple holds more than %d values", maxStaticElems), "")
		}
	} else {
		for !p.eof() && (isLetter(p.peek()) || isDigit(p.peek())) {
			p.pos++
		}
		if p.pos == start {
			return t, p.expected("a type", "")
		}
		canonical, err := canonicalElementary(p.src[start:p.pos])
		if err != nil {
			return t, err
		}
		t.m.Type, t.elems, t.height = canonical, 1, 1
	}
	for !p.eof() && p.peek() == '[' {
		t.height++
		if depth+t.height > maxNesting {
			return t, p.failAt(fmt.Sprintf("types are nested more than %d levels deep", maxNesting), "")
		}
		p.pos++
		digitsStart := p.pos
		for !p.eof() && isDigit(p.peek()) {
			p.pos++
		}
		digits := p.src[digitsStart:p.pos]
		if p.eof() || p.peek() != ']' {
			return t, p.expected("']' in array type", "")
		}
		p.pos++
		if digits == "" {
			t.m.Type += "[]"
			continue
		}
		// Both factors are at most maxStaticElems, so the product
		// cannot overflow uint64.
		n, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || n == 0 || n > maxStaticElems || t.elems*n > maxStaticElems {
			p.pos = digitsStart
			return t, p.failAt("invalid array length "+quote(digits), fmt.Sprintf("fixed array lengths must be at least 1 and hold at most %d values in total", maxStaticElems))
		}
		t.elems *= n
		// Re-format so "[007]" hashes as "[7]".
		t.m.Type += "[" + strconv.FormatUint(n, 10) + "]"
	}
	return t, nil
}

// canonicalElementary validates an elementary type name and returns its
// canonical spelling, which is what the selector is hashed over.
func canonicalElementary(name string) (string, *Error) {
	switch name {
	case "address", "bool", "string", "bytes":
		return name, nil
	case "uint", "int":
		return name + "256", nil
	case "function":
		return "", sigError("the function type is not supported")
	case "tuple":
		return "", sigError("write tuple types as (type1,type2,...), not tuple(...)")
	case "fixed", "ufixed":
		return "", sigError("fixed-point type %s is not supported", quote(name))
	}
	for _, family := range []struct {
		prefix   string
		min, max int
		step     int
		hint     string
	}{
		{"uint", 8, 256, 8, "integer sizes must be a multiple of 8 from 8 to 256"},
		{"int", 8, 256, 8, "integer sizes must be a multiple of 8 from 8 to 256"},
		{"bytes", 1, 32, 1, "fixed bytes sizes must be from 1 to 32"},
	} {
		digits, ok := strings.CutPrefix(name, family.prefix)
		if !ok || digits == "" || !allDigits(digits) {
			continue
		}
		n, err := strconv.Atoi(digits)
		// Leading zeros would change the canonical string and thus the
		// selector, so "uint08" is as invalid as "uint7".
		if err != nil || digits[0] == '0' || n < family.min || n > family.max || n%family.step != 0 {
			return "", sigError("unknown type %s: %s", quote(name), family.hint)
		}
		return name, nil
	}
	if strings.HasPrefix(name, "fixed") || strings.HasPrefix(name, "ufixed") {
		return "", sigError("fixed-point type %s is not supported", quote(name))
	}
	return "", sigError("unknown type %s", quote(name))
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// quote renders user input for an error message: Go-quoted so control
// characters stay visible, and shortened so one huge value cannot flood a
// response.
func quote(s string) string {
	if short, cut := shorten(s); cut {
		return strconv.Quote(short) + "…"
	}
	return strconv.Quote(s)
}

// truncate shortens s for display, marking a cut with an ellipsis.
func truncate(s string) string {
	if short, cut := shorten(s); cut {
		return short + "…"
	}
	return s
}

// shorten cuts s to at most 64 bytes without splitting a UTF-8 sequence.
func shorten(s string) (string, bool) {
	const max = 64
	if len(s) <= max {
		return s, false
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut], true
}
