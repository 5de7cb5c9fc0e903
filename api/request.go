package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/relayq/relayq/calldata"
)

// jobRequest is the body of POST /v1/jobs.
type jobRequest struct {
	To            *string           `json:"to"`
	Function      *string           `json:"function"`
	Args          []json.RawMessage `json:"args"`
	Data          *string           `json:"data"`
	Value         json.RawMessage   `json:"value"`
	GasLimit      json.RawMessage   `json:"gas_limit"`
	From          *string           `json:"from"`
	Confirmations json.RawMessage   `json:"confirmations"`
	Metadata      json.RawMessage   `json:"metadata"`
	WebhookURL    *string           `json:"webhook_url"` // checked by Server.checkWebhookURL
	Simulate      bool              `json:"simulate"`    // dry run at accept time (simulate.go)
	Chain         *string           `json:"chain"`       // the chain's name or id (chains.go)
	Deadline      json.RawMessage   `json:"deadline"`    // RFC 3339, or seconds from now (deadline.go)
	// Bytecode is a deployment's creation bytecode, its constructor's
	// args encoded through abi (deploy.go).
	Bytecode *string `json:"bytecode"`

	// A method of a JSON ABI, inline or registered, instead of function
	// (contracts.go); registered is resolved by Server.validateRequest.
	ABI        json.RawMessage `json:"abi"`
	Contract   *string         `json:"contract"`
	Method     *string         `json:"method"`
	registered *registered
}

// call is a validated job request.
type call struct {
	To            common.Address
	From          *common.Address
	Function      string
	Args          json.RawMessage
	Data          []byte
	Value         *big.Int
	GasLimit      uint64
	Confirmations *uint64
	Metadata      json.RawMessage
	WebhookURL    string
	// Deadline, if set, is when the job fails expired unless broadcast;
	// deadlineRaw, as the request gave it, is what hash covers, so a
	// retried "deadline": 60 keeps its Idempotency-Key.
	Deadline    *time.Time
	deadlineRaw string
	Simulate    bool // not part of hash: it asks for a check, not a different job
	// ABI is the request's ABI (abi or contract), whose custom errors
	// decode its reverts; not part of hash, which has the calldata.
	ABI *abi.ABI
	// Deploy makes the call a contract creation: To is unset and Data is
	// the initcode (deploy.go).
	Deploy bool
}

// Limits on a job request.
const (
	maxGasLimit      = 100_000_000
	maxConfirmations = 1000
	maxMetadataBytes = 16 << 10
	// maxCalldata stays under geth's 128 KiB transaction size limit.
	maxCalldata = 120_000
)

func dataField(r *jobRequest) string {
	if r.Function != nil || r.Method != nil {
		return "args"
	}
	return "data"
}

var maxUint256 = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))

// decodeJSON decodes exactly one JSON value into v, refusing unknown fields,
// fields named in another case and duplicate keys (checkKeys), and turns
// decoder errors into messages that say where the problem is. Every request
// body goes through it.
func decodeJSON(body []byte, v any) *Error {
	if e := checkKeys(body, v); e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return invalid("malformed_json", "", "request body is empty: expected a JSON object")
		case errors.As(err, &se):
			return invalid("malformed_json", "", "malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return invalid("invalid_type", te.Field, "%s must be a JSON %s, not %s", orBody(te.Field), jsonKind(te.Type.Kind().String()), te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return invalid("unknown_field", f, "unknown field %q", f)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return invalid("malformed_json", "", "malformed JSON: unexpected end of input")
		default:
			return invalid("malformed_json", "", "malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("malformed_json", "", "malformed JSON: more than one value in the body")
	}
	return nil
}

func orBody(f string) string {
	if f == "" {
		return "the body"
	}
	return f
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "string", "ptr":
		return "string"
	case "bool":
		return "boolean"
	}
	return "number"
}

// validate checks a decoded request and ABI-encodes its call.
func (r *jobRequest) validate() (*call, *Error) {
	c := &call{Value: new(big.Int), Simulate: r.Simulate}
	deploy := r.deploys()
	if !deploy {
		to, err := r.target() // to, or a registered contract's address
		if err != nil {
			return nil, err
		}
		c.To = to
	}
	if r.From != nil {
		from, err := parseAddress(*r.From, "from")
		if err != nil {
			return nil, err
		}
		c.From = &from
	}
	switch {
	case deploy && r.Bytecode != nil:
		if e := r.encodeDeployment(c); e != nil {
			return nil, e
		}
	case deploy && (r.Args != nil || r.hasABI()):
		return nil, invalid("conflicting_fields", "data", "data is the whole initcode, constructor arguments included: give bytecode with abi and args to have them encoded")
	case deploy:
		if e := deployData(c, *r.Data); e != nil {
			return nil, e
		}
	case r.byABI():
		if e := r.encodeByABI(c); e != nil {
			return nil, e
		}
	case r.Function != nil && r.Data != nil:
		return nil, invalid("conflicting_fields", "data", "give either function (with args) or data, not both")
	case r.Function != nil:
		args := r.Args
		if args == nil {
			args = []json.RawMessage{}
		}
		data, err := calldata.Encode(*r.Function, args)
		if err != nil {
			var ce *calldata.Error
			if errors.As(err, &ce) {
				return nil, invalid(ce.Code, ce.Field, "%s", ce.Message)
			}
			return nil, invalid("invalid_argument", "args", "%v", err)
		}
		c.Function, c.Data = strings.TrimSpace(*r.Function), data
		c.Args, _ = json.Marshal(args)
	case r.Args != nil:
		return nil, invalid("missing_field", "function", "args given without function: name the function, e.g. \"transfer(address,uint256)\"")
	case r.Data != nil:
		d, derr := hexutil.Decode(*r.Data)
		if derr != nil && *r.Data != "0x" {
			return nil, invalid("invalid_data", "data", "data must be 0x-prefixed hex bytes of even length")
		}
		c.Data = d
	}
	if len(c.Data) > maxCalldata {
		return nil, invalid("too_large", dataField(r), "calldata is %d bytes; nodes refuse transactions over %d", len(c.Data), maxCalldata)
	}
	if len(r.Value) > 0 {
		v, err := parseUint(r.Value, "value", maxUint256)
		if err != nil {
			return nil, err
		}
		c.Value = v
	}
	if len(r.GasLimit) > 0 {
		g, err := parseUint(r.GasLimit, "gas_limit", big.NewInt(maxGasLimit))
		if err != nil {
			return nil, err
		}
		// A limit below the intrinsic cost would be rejected after a nonce
		// was bound: refuse it here.
		if intrinsic := intrinsicGasOf(c.Data, c.Deploy); g.Uint64() < intrinsic {
			return nil, invalid("out_of_range", "gas_limit", "gas_limit %s is below %d, the intrinsic gas of this %s", g, intrinsic, c.kind())
		}
		c.GasLimit = g.Uint64()
	}
	if len(r.Confirmations) > 0 {
		n, err := parseUint(r.Confirmations, "confirmations", big.NewInt(maxConfirmations))
		if err != nil {
			return nil, err
		}
		if n.Sign() == 0 {
			return nil, invalid("out_of_range", "confirmations", "confirmations must be at least 1")
		}
		u := n.Uint64()
		c.Confirmations = &u
	}
	if r.WebhookURL != nil {
		if *r.WebhookURL == "" {
			return nil, invalid("invalid_url", "webhook_url", "webhook_url is empty: leave it out (or null) for no webhook")
		}
		c.WebhookURL = *r.WebhookURL
	}
	if len(r.Deadline) > 0 && string(r.Deadline) != "null" {
		d, e := parseDeadline(r.Deadline, time.Now())
		if e != nil {
			return nil, e
		}
		c.Deadline, c.deadlineRaw = &d, canonicalJSON(r.Deadline)
	}
	if len(r.Metadata) > 0 && string(r.Metadata) != "null" {
		if r.Metadata[0] != '{' {
			return nil, invalid("invalid_type", "metadata", "metadata must be a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, r.Metadata); err != nil {
			return nil, invalid("invalid_type", "metadata", "metadata must be a JSON object")
		}
		if buf.Len() > maxMetadataBytes {
			return nil, invalid("too_large", "metadata", "metadata is %d bytes; at most %d", buf.Len(), maxMetadataBytes)
		}
		c.Metadata = buf.Bytes()
	}
	return c, nil
}

func parseAddress(s, field string) (common.Address, *Error) {
	if !common.IsHexAddress(s) || !strings.HasPrefix(s, "0x") && !strings.HasPrefix(s, "0X") {
		return common.Address{}, invalid("invalid_address", field, "%s must be a 0x-prefixed 20-byte hex address, got %q", field, clip(s))
	}
	a := common.HexToAddress(s)
	body := s[2:]
	if body != strings.ToLower(body) && body != strings.ToUpper(body) && a.Hex() != s {
		return common.Address{}, invalid("invalid_address", field, "%s %q has a mixed-case checksum that does not match (EIP-55); expected %s", field, s, a.Hex())
	}
	return a, nil
}

// parseUint reads a non-negative integer given as a JSON number or a decimal
// string, at most max.
func parseUint(raw json.RawMessage, field string, max *big.Int) (*big.Int, *Error) {
	s := string(raw)
	if len(s) > 0 && s[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalid("invalid_type", field, "%s must be a decimal string or an integer", field)
		}
	}
	n, ok := new(big.Int).SetString(s, 10)
	if !ok || strings.HasPrefix(s, "+") {
		return nil, invalid("invalid_number", field, "%s must be a non-negative decimal integer, got %s", field, clip(string(raw)))
	}
	if n.Sign() < 0 || n.Cmp(max) > 0 {
		return nil, invalid("out_of_range", field, "%s %s is out of range 0..%s", field, clip(n.String()), max)
	}
	return n, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// hash identifies a validated request for idempotency: the same call with
// the same options hashes the same whatever the JSON's spacing or key order.
func (c *call) hash() string {
	from := ""
	if c.From != nil {
		from = c.From.Hex()
	}
	confs := ""
	if c.Confirmations != nil {
		confs = fmt.Sprint(*c.Confirmations)
	}
	target := c.To.Hex()
	if c.Deploy { // never the same as a call of the zero address with that data
		target = "create"
	}
	parts := []string{target, from, hexutil.Encode(c.Data), c.Value.String(), fmt.Sprint(c.GasLimit), confs, canonicalJSON(c.Metadata)}
	if c.WebhookURL != "" { // only then, so hashes of requests without one stay as they were
		parts = append(parts, c.WebhookURL)
	}
	if c.deadlineRaw != "" { // likewise
		parts = append(parts, "deadline="+c.deadlineRaw)
	}
	h := sha256.New()
	for _, part := range parts {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// canonicalJSON re-encodes JSON with sorted object keys.
func canonicalJSON(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep big numbers exact
	if err := dec.Decode(&v); err != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// kind names what the call is, for messages.
func (c *call) kind() string {
	if c.Deploy {
		return "deployment"
	}
	return "call"
}

// intrinsicGasOf is the least gas a call with this calldata can have: the
// base cost plus calldata (EIP-2028), or the calldata floor of EIP-7623,
// whichever is higher. A node rejects a lower limit outright.
//
// A creation (create) costs 32,000 more, and 2 per 32-byte word of
// initcode (EIP-3860), which the calldata floor does not add to.
func intrinsicGasOf(data []byte, create bool) uint64 {
	var zero, nonzero uint64
	for _, b := range data {
		if b == 0 {
			zero++
		} else {
			nonzero++
		}
	}
	standard := 21000 + 4*zero + 16*nonzero
	if create {
		standard += 32000 + 2*((uint64(len(data))+31)/32)
	}
	floor := 21000 + 10*(zero+4*nonzero)
	return max(standard, floor)
}
