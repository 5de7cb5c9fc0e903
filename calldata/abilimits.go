package calldata

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
)

// abiEntry is the part of one JSON ABI entry whose types the limits cover:
// every function's inputs and outputs, every error's and event's inputs,
// the constructor's inputs.
type abiEntry struct {
	Type    string                   `json:"type"`
	Name    string                   `json:"name"`
	Inputs  []abi.ArgumentMarshaling `json:"inputs"`
	Outputs []abi.ArgumentMarshaling `json:"outputs"`
}

// checkABITypes holds every type of a JSON ABI to the limits ParseSignature
// enforces (nesting depth, fixed array sizes and the values one fixed-size
// type holds, known elementary types), before abi.JSON builds a reflect type
// for any of them. An error names the entry, the argument and the type.
func checkABITypes(raw []byte) error {
	var entries []abiEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return newError(CodeInvalidABI, "abi", "cannot parse the ABI: %v", err)
	}
	for i, e := range entries {
		for _, list := range []struct {
			what string
			args []abi.ArgumentMarshaling
		}{{"input", e.Inputs}, {"output", e.Outputs}} {
			for j, a := range list.args {
				if msg := checkArgumentType(a); msg != "" {
					return newError(CodeInvalidABI, "abi", "%s %s %d%s has type %s: %s",
						describeEntry(i, e), list.what, j, argName(a.Name), quote(spellType(a)), msg)
				}
			}
		}
	}
	return nil
}

// describeEntry names ABI entry i for an error message: `error "E"`,
// `function "transfer"`, `constructor`.
func describeEntry(i int, e abiEntry) string {
	kind := e.Type
	if kind == "" {
		kind = "function" // abi.JSON's default
	}
	if e.Name == "" {
		return fmt.Sprintf("%s (entry %d)", truncate(kind), i)
	}
	return fmt.Sprintf("%s %s (entry %d)", truncate(kind), quote(e.Name), i)
}

func argName(name string) string {
	if name == "" {
		return ""
	}
	return " (" + quote(name) + ")"
}

// checkArgumentType runs the signature parser over the type a marshaling
// spells, so an ABI's types get exactly the signature's limits; it returns
// "" when the type is within them, else why not.
func checkArgumentType(a abi.ArgumentMarshaling) string {
	src, ok := sigTypeString(a, 0)
	if !ok {
		return fmt.Sprintf("tuples are nested more than %d levels deep or a tuple has no components", maxNesting)
	}
	p := &sigParser{src: src}
	if _, err := p.parseType(0); err != nil {
		// The parser speaks of the signature; here it is a type of the ABI.
		return strings.TrimPrefix(err.Error(), "function: ")
	}
	if !p.eof() {
		return "malformed type"
	}
	return ""
}

// sigTypeString writes a marshaling the way a signature spells it, tuples
// as (T1,...,Tn). The function type, which the signature parser refuses
// because it cannot encode it from JSON, takes the place of the bytes24 it
// is encoded as: an ABI may declare it. ok is false for a tuple without
// components or tuples nested past maxNesting, which the parser would
// otherwise only see after this recursion.
func sigTypeString(a abi.ArgumentMarshaling, depth int) (string, bool) {
	base, suffix := a.Type, ""
	if i := strings.IndexByte(a.Type, '['); i >= 0 {
		base, suffix = a.Type[:i], a.Type[i:]
	}
	switch base {
	case "tuple":
		if depth >= maxNesting || len(a.Components) == 0 {
			return "", false
		}
		parts := make([]string, len(a.Components))
		for i, c := range a.Components {
			s, ok := sigTypeString(c, depth+1)
			if !ok {
				return "", false
			}
			parts[i] = s
		}
		return "(" + strings.Join(parts, ",") + ")" + suffix, true
	case "function":
		return "bytes24" + suffix, true
	}
	return a.Type, true
}

// spellType is a marshaling's type for an error message.
func spellType(a abi.ArgumentMarshaling) string {
	if s, ok := sigTypeString(a, 0); ok {
		return s
	}
	return a.Type
}
