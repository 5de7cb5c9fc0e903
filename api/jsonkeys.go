package api

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// checkKeys is the strict half of decodeJSON, one pass over the body's
// bytes before encoding/json binds it, which would keep the last of
// duplicate keys and match field names case-insensitively:
//   - a key that appears twice in one object, at any depth (metadata and
//     abi included: a receiver or parser could read either), is
//     invalid_json: {"to":A,"to":B} is ambiguous, not a job to B;
//   - in an object that binds to a struct, a key that is not exactly one of
//     its fields' JSON names is unknown_field ("To" is not "to").
//
// It stops silently at anything malformed, which the decoder then reports.
func checkKeys(body []byte, v any) *Error {
	s := &keyScanner{src: body}
	e, _ := s.value(reflect.TypeOf(v), "")
	return e
}

// keyScanner walks JSON text; ok false from a method means the text is
// malformed (the pass ends and the decoder reports it).
type keyScanner struct {
	src   []byte
	pos   int
	depth int
}

// maxKeyDepth stops the pass where encoding/json stops nesting (10000),
// so a body of brackets cannot grow the stack.
const maxKeyDepth = 10000

var rawMessageType = reflect.TypeFor[json.RawMessage]()

func (s *keyScanner) skipSpace() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value walks one value; t is the Go type it binds to (nil: free-form).
func (s *keyScanner) value(t reflect.Type, path string) (*Error, bool) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType || t != nil && t.Kind() == reflect.Interface {
		t = nil
	}
	s.skipSpace()
	if s.pos >= len(s.src) || s.depth >= maxKeyDepth {
		return nil, false
	}
	switch s.src[s.pos] {
	case '{':
		s.depth++
		defer func() { s.depth-- }()
		return s.object(t, path)
	case '[':
		s.depth++
		defer func() { s.depth-- }()
		s.pos++
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		s.skipSpace()
		if s.pos < len(s.src) && s.src[s.pos] == ']' {
			s.pos++
			return nil, true
		}
		for i := 0; ; i++ {
			if e, ok := s.value(elem, path+"["+strconv.Itoa(i)+"]"); e != nil || !ok {
				return e, ok
			}
			if more, ok := s.next(']'); !more {
				return nil, ok
			}
		}
	case '"':
		_, ok := s.str()
		return nil, ok
	default: // a number, true, false or null
		for s.pos < len(s.src) && !strings.ContainsRune(",]} \t\n\r", rune(s.src[s.pos])) {
			s.pos++
		}
		return nil, true
	}
}

// next consumes the ',' before another element (more) or the closing
// delimiter close (ok); anything else is malformed.
func (s *keyScanner) next(close byte) (more, ok bool) {
	s.skipSpace()
	if s.pos >= len(s.src) {
		return false, false
	}
	c := s.src[s.pos]
	s.pos++
	return c == ',', c == close
}

func (s *keyScanner) object(t reflect.Type, path string) (*Error, bool) {
	s.pos++ // '{'
	var fields map[string]reflect.Type
	var mapElem reflect.Type
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = jsonFields(t)
		case reflect.Map:
			mapElem = t.Elem()
		}
	}
	s.skipSpace()
	if s.pos < len(s.src) && s.src[s.pos] == '}' {
		s.pos++
		return nil, true
	}
	var seen []string // objects are small; a map past a few dozen keys
	var seenMap map[string]bool
	for {
		s.skipSpace()
		if s.pos >= len(s.src) || s.src[s.pos] != '"' {
			return nil, false
		}
		key, ok := s.str()
		if !ok {
			return nil, false
		}
		at := joinPath(path, key)
		dup := false
		if seenMap != nil {
			dup = seenMap[key]
			seenMap[key] = true
		} else {
			for _, k := range seen {
				dup = dup || k == key
			}
			if seen = append(seen, key); len(seen) > 32 {
				seenMap = make(map[string]bool, 64)
				for _, k := range seen {
					seenMap[k] = true
				}
			}
		}
		if dup {
			return invalid("invalid_json", at, "duplicate key %q in %s: each key may appear only once", clip(key), orBody(path)), true
		}
		elem := mapElem
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				return unknownField(at, key, fields), true
			}
			elem = ft
		}
		s.skipSpace()
		if s.pos >= len(s.src) || s.src[s.pos] != ':' {
			return nil, false
		}
		s.pos++
		if e, ok := s.value(elem, at); e != nil || !ok {
			return e, ok
		}
		if more, ok := s.next('}'); !more {
			return nil, ok
		}
	}
}

// str consumes a string and returns its decoded value (escapes resolved,
// so "\u0074o" is the key "to", as encoding/json reads it).
func (s *keyScanner) str() (string, bool) {
	start := s.pos
	s.pos++ // '"'
	escaped := false
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case '\\':
			escaped = true
			s.pos += 2
			continue
		case '"':
			s.pos++
			raw := s.src[start:s.pos]
			if !escaped {
				return string(raw[1 : len(raw)-1]), true
			}
			var out string
			if json.Unmarshal(raw, &out) != nil {
				return "", false
			}
			return out, true
		}
		s.pos++
	}
	return "", false
}

// unknownField is the error for a key no field of the struct has, naming
// the field it matches but for case, if any.
func unknownField(at, key string, fields map[string]reflect.Type) *Error {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return invalid("unknown_field", at, "unknown field %q: field names are case-sensitive, did you mean %q?", clip(key), name)
		}
	}
	return invalid("unknown_field", at, "unknown field %q", clip(key))
}

// jsonFields maps the JSON names of t's exported fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
