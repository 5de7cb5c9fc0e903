package calldata

import (
	"errors"
	"fmt"
	"math"

	"github.com/ethereum/go-ethereum/accounts/abi"
)

// ErrDecodeTooLarge reports that decoding data would allocate far more than
// the data's own size: a fixed array type bigger than the data that holds
// it, or offsets that point many values at the same bytes.
var ErrDecodeTooLarge = errors.New("decoding would take more memory than the data's size allows")

// Budget of one decode, in estimated bytes allocated: decodeBytesPerByte
// per byte of input plus decodeBaseBytes. An honest encoding needs at most
// a few bytes per input byte (an integer word is a 32-byte word in, a
// *big.Int and its decimal text out).
const (
	decodeBytesPerByte = 16
	decodeBaseBytes    = 256 << 10
	// costValue is the estimate for one elementary value: the Go value,
	// its boxing into an interface and its text when the caller prints it.
	costValue = 160
	// costIndirect is the estimate for following one offset or length
	// word (accounts/abi reads each through big.Ints).
	costIndirect = 256
	// costPerByte is the estimate per byte of a string or bytes value:
	// its copy and its hex or quoted text.
	costPerByte = 8
	saturated   = math.MaxInt64 / 4
)

// UnpackValues decodes data as args, as args.UnpackValues does, after
// walking the encoding without allocating to check that the decode stays
// within a budget proportional to len(data). accounts/abi allocates a whole
// fixed array before it checks that the data holds it (uint256[1e11][10]
// asks for 8 TB from 320 bytes) and copies a string once per offset that
// points at it, so neither a stored ABI nor node-provided data can be
// trusted to decode in bounded memory. The error wraps ErrDecodeTooLarge
// when the budget is the reason; a panic in accounts/abi is an error too.
func UnpackValues(args abi.Arguments, data []byte) (vals []any, err error) {
	if err := CheckDecode(args, data); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			vals, err = nil, fmt.Errorf("abi: cannot decode: %v", r)
		}
	}()
	return args.UnpackValues(data)
}

// CheckDecode reports whether args.UnpackValues(data) can run within the
// budget UnpackValues allows, without allocating in proportion to what
// the types or the offsets ask for. It follows the layout accounts/abi
// reads (head words, offsets, lengths) and fails as soon as the estimate
// passes the budget, so it also runs in time bounded by len(data).
func CheckDecode(args abi.Arguments, data []byte) error {
	w := &decodeWalk{left: decodeBytesPerByte*int64(len(data)) + decodeBaseBytes}
	virtual, index := 0, 0
	for _, a := range args {
		if a.Indexed {
			continue
		}
		at := int64(index+virtual) * 32
		if err := w.walk(at, a.Type, data); err != nil {
			return err
		}
		if !isDynamic(a.Type) && (a.Type.T == abi.ArrayTy || a.Type.T == abi.TupleTy) {
			virtual += int(encodedSize(a.Type)/32) - 1 // it fitted the data, so it is small
		}
		index++
	}
	return nil
}

// decodeWalk follows accounts/abi's toGoType over the data, spending an
// estimate of each allocation from left.
type decodeWalk struct {
	left int64
}

var errShortData = errors.New("abi: the data is too short for its types")

func (w *decodeWalk) spend(n int64) error {
	if n < 0 || n > w.left {
		return fmt.Errorf("abi: %w", ErrDecodeTooLarge)
	}
	w.left -= n
	return nil
}

// walk mirrors toGoType(index, t, out).
func (w *decodeWalk) walk(index int64, t abi.Type, out []byte) error {
	n := int64(len(out))
	if index < 0 || index+32 > n {
		return errShortData
	}
	// A static value is read word by word: one bigger than what is left
	// cannot decode, and accounts/abi would allocate it first.
	if !isDynamic(t) && index+encodedSize(t) > n {
		return errShortData
	}
	var begin, length int64
	if t.T == abi.StringTy || t.T == abi.BytesTy || t.T == abi.SliceTy {
		if err := w.spend(costIndirect); err != nil {
			return err
		}
		off, ok := word(out[index : index+32])
		if !ok || off+32 > n {
			return errShortData
		}
		l, ok := word(out[off : off+32])
		if !ok || off+32+l > n {
			return errShortData
		}
		begin, length = off+32, l
	}
	switch t.T {
	case abi.TupleTy:
		if isDynamic(t) {
			if err := w.spend(costIndirect); err != nil {
				return err
			}
			off, ok := word(out[index : index+32])
			if !ok || off > n {
				return errShortData
			}
			return w.tuple(t, out[off:])
		}
		return w.tuple(t, out[index:])
	case abi.SliceTy:
		return w.each(t, out[begin:], length)
	case abi.ArrayTy:
		if isDynamic(*t.Elem) {
			// accounts/abi reads the offset from the word's last 8 bytes.
			b := out[index+24 : index+32]
			off := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
				uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
			if off > uint64(n) {
				return errShortData
			}
			return w.each(t, out[off:], int64(t.Size))
		}
		return w.each(t, out[index:], int64(t.Size))
	case abi.StringTy, abi.BytesTy:
		return w.spend(costValue + costPerByte*length)
	default:
		return w.spend(costValue + goSize(t))
	}
}

// tuple mirrors forTupleUnpack.
func (w *decodeWalk) tuple(t abi.Type, out []byte) error {
	if err := w.spend(goSize(t) + costValue); err != nil {
		return err
	}
	virtual := int64(0)
	for i, e := range t.TupleElems {
		if err := w.walk((int64(i)+virtual)*32, *e, out); err != nil {
			return err
		}
		if !isDynamic(*e) && (e.T == abi.ArrayTy || e.T == abi.TupleTy) {
			virtual += encodedSize(*e)/32 - 1
		}
	}
	return nil
}

// each mirrors forEachUnpack: the slice or array is allocated whole before
// its first element is read, so its size is spent first.
func (w *decodeWalk) each(t abi.Type, out []byte, size int64) error {
	if size < 0 || size > int64(len(out))/32 {
		return errShortData
	}
	alloc := goSize(t)
	if t.T == abi.SliceTy {
		alloc = mulSat(size, goSize(*t.Elem))
	}
	if err := w.spend(addSat(alloc, mulSat(size, costValue/4))); err != nil {
		return err
	}
	step := encodedSize(*t.Elem)
	for j := int64(0); j < size; j++ {
		if err := w.walk(mulSat(j, step), *t.Elem, out); err != nil {
			return err
		}
	}
	return nil
}

// word reads a 32-byte big-endian word that must be a small offset or
// length: any value that does not fit 62 bits cannot point inside data.
func word(b []byte) (int64, bool) {
	for _, c := range b[:24] {
		if c != 0 {
			return 0, false
		}
	}
	var v uint64
	for _, c := range b[24:] {
		v = v<<8 | uint64(c)
	}
	if v > saturated {
		return 0, false
	}
	return int64(v), true
}

// isDynamic is accounts/abi's isDynamicType.
func isDynamic(t abi.Type) bool {
	switch t.T {
	case abi.TupleTy:
		for _, e := range t.TupleElems {
			if isDynamic(*e) {
				return true
			}
		}
		return false
	case abi.ArrayTy:
		return isDynamic(*t.Elem)
	}
	return t.T == abi.StringTy || t.T == abi.BytesTy || t.T == abi.SliceTy
}

// encodedSize is accounts/abi's getTypeSize (32 for a dynamic type, which
// is an offset in its head), saturating instead of overflowing.
func encodedSize(t abi.Type) int64 {
	if isDynamic(t) {
		return 32
	}
	switch t.T {
	case abi.ArrayTy:
		return mulSat(int64(t.Size), encodedSize(*t.Elem))
	case abi.TupleTy:
		total := int64(0)
		for _, e := range t.TupleElems {
			total = addSat(total, encodedSize(*e))
		}
		return total
	}
	return 32
}

// goSize estimates the bytes of the Go value accounts/abi makes for t
// (rounding up, a word per tuple field for alignment), saturating.
func goSize(t abi.Type) int64 {
	switch t.T {
	case abi.IntTy, abi.UintTy:
		return 8 // a small Go integer or a *big.Int
	case abi.BoolTy:
		return 1
	case abi.StringTy:
		return 16
	case abi.BytesTy, abi.SliceTy:
		return 24
	case abi.AddressTy:
		return 20
	case abi.HashTy, abi.FixedPointTy:
		return 32
	case abi.FixedBytesTy:
		return int64(t.Size)
	case abi.FunctionTy:
		return 24
	case abi.ArrayTy:
		return mulSat(int64(t.Size), goSize(*t.Elem))
	case abi.TupleTy:
		total := int64(0)
		for _, e := range t.TupleElems {
			total = addSat(total, goSize(*e)+8)
		}
		return total
	}
	return 32
}

func mulSat(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > saturated/b {
		return saturated
	}
	return a * b
}

func addSat(a, b int64) int64 {
	if a > saturated-b {
		return saturated
	}
	return a + b
}
