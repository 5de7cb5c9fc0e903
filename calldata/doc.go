// Package calldata turns a human-readable function signature plus JSON
// arguments into EVM calldata (4-byte selector followed by the ABI-encoded
// arguments).
//
// The encoding itself is done by go-ethereum's accounts/abi package
// (abi.NewType, abi.NewMethod and abi.Arguments.Pack); this package only
// parses the signature and converts JSON values into the exact Go values that
// abi.Arguments.Pack expects, validating them on the way so that Pack never
// sees a value it could mis-encode or panic on.
//
// # Signatures
//
// A signature is a function name followed by a parenthesised, comma-separated
// list of parameter types, optionally followed by a second list of return
// types, which Encode ignores but ParseSignature returns so that a read
// endpoint can decode results:
//
//	transfer(address,uint256)
//	set((uint256,string)[],bytes32)
//	balanceOf(address)(uint256)
//
// Supported types are uint8..uint256 and int8..int256 (multiples of 8),
// address, bool, string, bytes, bytes1..bytes32, tuples written as
// (T1,T2,...), and arrays T[] and T[k] of any of these, nested to any
// supported depth (e.g. (uint256,string)[2][]). The aliases uint and int
// mean uint256 and int256; the selector is always computed from the
// canonical form. Whitespace is allowed between tokens, but parameter names
// ("address to") and data locations ("memory") are not. The function,
// fixed-point and "tuple(...)" spellings are rejected. A signature may be at
// most 4096 bytes, nest tuples and arrays at most 32 levels deep, and a fixed
// size array (counting nested fixed arrays and tuples) may hold at most 65536
// elements; these limits keep the reflect types that accounts/abi builds small.
//
// # JSON argument conventions
//
// Each argument is one JSON value, matched positionally to the signature:
//
//   - uintN / intN: a JSON number or a JSON string. Numbers are read from
//     their exact decimal text (never through float64), and a fraction or
//     exponent is accepted only when the exact value is an integer: 1e3 is
//     1000 and 2.50e1 is 25, while 1.5 and 1e-3 are rejected. Strings hold a
//     decimal integer ("1000", "-5") or a 0x-prefixed hex integer ("0x3e8",
//     "-0x80"); strings take no exponent, fraction, '+', spaces or
//     separators. A value outside the type's range (negative for uintN, too
//     large for N bits, outside -2^(N-1)..2^(N-1)-1 for intN) is an
//     out_of_range error. Clients in JavaScript should send values above
//     2^53 as strings: a JSON number that was already rounded by the client
//     cannot be detected here.
//   - address: a string of "0x" and 40 hex digits. An all-lowercase or
//     all-uppercase address is accepted as is; a mixed-case address must
//     carry a valid EIP-55 checksum.
//   - bool: JSON true or false (not "true", not 0/1).
//   - string: a JSON string.
//   - bytes: a "0x"-prefixed hex string with an even number of digits ("0x"
//     is the empty byte string).
//   - bytesN: a "0x"-prefixed hex string of exactly N bytes; shorter values
//     are not padded and longer ones are not truncated.
//   - T[] and T[k]: a JSON array; for T[k] it must have exactly k elements.
//   - tuples: a JSON array of the components in order. JSON objects are
//     rejected because a signature carries no component names to match keys
//     against.
//   - null is never accepted.
//
// The prefix "0X" is accepted wherever "0x" is.
//
// # Errors
//
// Every error returned by Encode and ParseSignature is an *Error whose Code is
// one of the Code constants and whose Field locates the problem: "function"
// for the signature, "args" for the argument list as a whole, and paths such
// as args[1], args[2][0] (array element) or args[0][1] (tuple component) for
// individual values.
package calldata
