package calldata

import (
	"encoding/hex"
	"fmt"
	"math/big"
	"reflect"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
)

// DecodeOutputs decodes what a call of method returned into JSON-ready
// values, one per output: integers as decimal strings (they may exceed what
// a JSON number holds exactly), addresses checksummed, bytes and fixed bytes
// as 0x hex, booleans and strings as themselves, arrays and tuples as JSON
// arrays in declaration order. The decode is bounded by UnpackValues: an
// error wrapping ErrDecodeTooLarge means the data was not decoded at all.
func DecodeOutputs(method abi.Method, data []byte) ([]any, error) {
	if len(method.Outputs) == 0 {
		return []any{}, nil
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("the call returned no data (is there a contract at this address?)")
	}
	vals, err := UnpackValues(method.Outputs, data)
	if err != nil {
		return nil, fmt.Errorf("cannot decode the result as %s: %w", typeList(method.Outputs), err)
	}
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = jsonValue(&method.Outputs[i].Type, reflect.ValueOf(v))
	}
	return out, nil
}

func typeList(args abi.Arguments) string {
	s := "("
	for i, a := range args {
		if i > 0 {
			s += ","
		}
		s += a.Type.String()
	}
	return s + ")"
}

// jsonValue turns one unpacked value of type t into its JSON form.
func jsonValue(t *abi.Type, v reflect.Value) any {
	for v.Kind() == reflect.Pointer && t.T != abi.IntTy && t.T != abi.UintTy {
		v = v.Elem()
	}
	switch t.T {
	case abi.IntTy, abi.UintTy:
		switch n := v.Interface().(type) {
		case *big.Int:
			return n.String()
		default:
			return fmt.Sprint(n) // int8…uint64 come back as Go integers
		}
	case abi.BoolTy:
		return v.Bool()
	case abi.StringTy:
		return v.String()
	case abi.AddressTy:
		return v.Interface().(common.Address).Hex()
	case abi.BytesTy:
		return "0x" + hex.EncodeToString(v.Bytes())
	case abi.FixedBytesTy, abi.HashTy:
		b := make([]byte, v.Len())
		reflect.Copy(reflect.ValueOf(b), v)
		return "0x" + hex.EncodeToString(b)
	case abi.SliceTy, abi.ArrayTy:
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonValue(t.Elem, v.Index(i))
		}
		return out
	case abi.TupleTy:
		out := make([]any, len(t.TupleElems))
		for i, et := range t.TupleElems {
			out[i] = jsonValue(et, v.Field(i))
		}
		return out
	default:
		return fmt.Sprint(v.Interface())
	}
}
