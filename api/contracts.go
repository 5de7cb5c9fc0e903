package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/calldata"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// JSON ABIs and registered contracts. A job, a batch item or a read may
// name its function as "method" of a JSON ABI given inline ("abi") or of a
// contract registered with POST /v1/contracts ("contract", whose address
// is then the default "to"). The ABI's custom errors decode the reverts of
// its dry runs and reads.

// Limits on ABIs and contract names.
const (
	maxABIBytes = 256 << 10
	// contractTTL is how long an API process reuses a registered contract
	// it read: another process's replacement shows within it.
	contractTTL       = 5 * time.Second
	maxCachedContract = 1024
)

var contractName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,64}$`)

// contractRequest is the body of POST /v1/contracts.
type contractRequest struct {
	Name    *string         `json:"name"`
	Address *string         `json:"address"`
	ABI     json.RawMessage `json:"abi"`
	Chain   *string         `json:"chain"` // the chain's name or id (chains.go)
}

// registered is a registered contract as a request resolves it.
type registered struct {
	name    string
	address common.Address
	abi     *abi.ABI
}

// Contract namespaces. An admin key registers contracts in the shared
// namespace; any other key in its own (jobs.QualifiedName). A name
// resolves first in the caller's namespace, then in the shared one, so one
// key's registration never changes what another key's "contract" means,
// and only admins can replace a shared name.

// contractCache is the API's short-lived copy of registered contracts.
type contractCache struct {
	reg *jobs.Contracts
	now func() time.Time

	mu sync.Mutex
	m  map[string]cachedContract
}

type cachedContract struct {
	c  *registered
	at time.Time
}

func newContractCache(reg *jobs.Contracts) *contractCache {
	return &contractCache{reg: reg, now: time.Now, m: map[string]cachedContract{}}
}

// parseRegistered parses a stored contract's address and ABI (which may
// predate ParseABI's limits: its decodes are bounded instead).
func parseRegistered(ct *jobs.Contract) (*registered, error) {
	parsed, err := calldata.ParseStoredABI(ct.ABI)
	if err != nil {
		return nil, err
	}
	return &registered{name: ct.Name, address: common.HexToAddress(ct.Address), abi: &parsed}, nil
}

// keep caches c as what name resolves to in namespace ns, emptying the
// cache when it is full.
func (cc *contractCache) keep(ns, name string, c *registered) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if len(cc.m) >= maxCachedContract {
		cc.m = map[string]cachedContract{}
	}
	cc.m[jobs.QualifiedName(ns, name)] = cachedContract{c: c, at: cc.now()}
}

// resolveContract loads the contract name means in namespace ns: ns's own, else
// the shared one. It answers jobs.ErrContractNotFound when neither exists.
func resolveContract(ctx context.Context, reg *jobs.Contracts, ns, name string) (*jobs.Contract, error) {
	if ns != "" {
		ct, err := reg.Get(ctx, jobs.QualifiedName(ns, name))
		if !errors.Is(err, jobs.ErrContractNotFound) {
			return ct, err
		}
	}
	return reg.Get(ctx, name)
}

// lookup returns the contract name means in namespace ns (see
// resolveContract): an unknown name is a 400 about the field "contract".
func (cc *contractCache) lookup(ctx context.Context, ns, name string) (*registered, *Error) {
	cc.mu.Lock()
	hit, ok := cc.m[jobs.QualifiedName(ns, name)]
	cc.mu.Unlock()
	if ok && cc.now().Sub(hit.at) < contractTTL {
		return hit.c, nil
	}
	if !contractName.MatchString(name) {
		return nil, invalid("unknown_contract", "contract", "contract %q is not a registered name (names are 1 to 64 of a-z A-Z 0-9 _ . -)", clip(name))
	}
	ct, err := resolveContract(ctx, cc.reg, ns, name)
	if errors.Is(err, jobs.ErrContractNotFound) {
		return nil, invalid("unknown_contract", "contract", "no contract is registered as %q: register it with POST /v1/contracts", name)
	}
	if err != nil {
		return nil, apiError(CodeUnavailable, "could not load contract %s: %v", name, err)
	}
	c, err := parseRegistered(ct)
	if err != nil { // it parsed when it was registered
		return nil, apiError(CodeInternal, "contract %s has an ABI that no longer parses: %v", name, err)
	}
	cc.keep(ns, name, c)
	return c, nil
}

// validateRequest resolves the registered contract a request names, if
// any, in the caller's namespace, and validates the request.
func (s *Server) validateRequest(ctx context.Context, r *jobRequest) (*call, *Error) {
	if r.Contract != nil && r.Bytecode == nil { // a deployment with a contract is refused for that (deploy.go)
		c, e := s.contracts.lookup(ctx, principalOf(ctx).namespace(), *r.Contract)
		if e != nil {
			return nil, e
		}
		r.registered = c
	}
	return r.validate()
}

// target is the address a request calls: its "to", or its registered
// contract's address (and then "to", when given, must be that address).
func (r *jobRequest) target() (common.Address, *Error) {
	if r.To == nil {
		if r.registered != nil {
			return r.registered.address, nil
		}
		return common.Address{}, invalid("missing_field", "to", "to is required: the address of the contract or account to call (leave it out only to deploy a contract, with data or bytecode)")
	}
	to, e := parseAddress(*r.To, "to")
	if e != nil {
		return common.Address{}, e
	}
	if r.registered != nil && to != r.registered.address {
		return common.Address{}, invalid("conflicting_fields", "to", "to %s is not the address of contract %s (%s): leave to out to call it",
			to.Hex(), r.registered.name, r.registered.address.Hex())
	}
	return to, nil
}

// byABI reports whether the request names its function as a method of an
// ABI (inline or registered) rather than by signature or as raw data.
func (r *jobRequest) byABI() bool {
	return r.Method != nil || r.Contract != nil || len(r.ABI) > 0 && string(r.ABI) != "null"
}

// encodeByABI checks the request gives exactly one way to say what to
// call, finds its method in the ABI and encodes its args into c.
func (r *jobRequest) encodeByABI(c *call) *Error {
	inline := len(r.ABI) > 0 && string(r.ABI) != "null"
	const one = "give one of function (with args), abi with method, contract with method, or data"
	switch {
	case r.Function != nil:
		return invalid("conflicting_fields", "function", "function and method both name the function: %s", one)
	case r.Data != nil:
		return invalid("conflicting_fields", "data", "data and method both say what to call: %s", one)
	case inline && r.Contract != nil:
		return invalid("conflicting_fields", "abi", "abi and contract both give the ABI: %s", one)
	case r.Method == nil:
		return invalid("missing_field", "method", "method is required with abi or contract: the function's name, or its signature to pick an overload")
	case !inline && r.Contract == nil:
		return invalid("missing_field", "abi", "method names a function of an ABI: give abi (a JSON ABI array) or contract (a registered name)")
	}
	var a *abi.ABI
	if inline {
		if len(r.ABI) > maxABIBytes {
			return invalid("too_large", "abi", "abi is %d bytes; at most %d", len(r.ABI), maxABIBytes)
		}
		parsed, err := calldata.ParseABI(r.ABI)
		if err != nil {
			return calldataError(err, "abi")
		}
		a = &parsed
	} else {
		a = r.registered.abi
	}
	m, err := calldata.FindMethod(a, *r.Method)
	if err != nil {
		return calldataError(err, "method")
	}
	args := r.Args
	if args == nil {
		args = []json.RawMessage{}
	}
	data, err := calldata.EncodeMethod(m, args)
	if err != nil {
		return calldataError(err, "args")
	}
	c.Function, c.Data, c.ABI = calldata.Signature(m), data, a
	c.Args, _ = json.Marshal(args)
	return nil
}

// calldataError is a calldata error as a 400 (field when it has none).
func calldataError(err error, field string) *Error {
	var ce *calldata.Error
	if errors.As(err, &ce) {
		return invalid(ce.Code, ce.Field, "%s", ce.Message)
	}
	return invalid("invalid_argument", field, "%v", err)
}

// callFailure is nodeFailure for a call that named an ABI: a revert with a
// custom error of that ABI is decoded by it; any other is as nodeFailure
// decodes it (with the API's ErrorABI).
func (s *Server) callFailure(err error, doing string, c *call) *Error {
	e := s.nodeFailure(err, doing)
	if c == nil || c.ABI == nil || e.Kind != CodeReverted {
		return e
	}
	if r, ok := txmgr.RevertFromError(err, c.ABI); ok && r.Kind == txmgr.RevertKindCustom && calldata.DeclaresError(c.ABI, r.Data) {
		e.Message, e.RevertReason = "execution reverted: "+r.Reason, r.Reason
	}
	return e
}

// createContract answers POST /v1/contracts: 201 for a new name, 200 for
// the same address and ABI again (or a replacement, with ?replace=true),
// 409 for a different contract under a name in use. The name is in the
// caller's namespace: shared for an admin, its own for any other key, so
// ?replace=true replaces only a contract of that namespace.
func (s *Server) createContract(c echo.Context) error {
	replace := false
	for k, v := range c.QueryParams() {
		if k != "replace" {
			return invalid("unknown_parameter", k, "unknown query parameter %q (use replace)", clip(k))
		}
		switch v[len(v)-1] {
		case "true", "1":
			replace = true
		case "false", "0", "":
		default:
			return invalid("invalid_parameter", "replace", "replace must be true or false")
		}
	}
	body, e := readBody(c)
	if e != nil {
		return e
	}
	var req contractRequest
	if e := decodeJSON(body, &req); e != nil {
		return e
	}
	if e := s.checkChain(req.Chain); e != nil {
		return e
	}
	switch {
	case req.Name == nil:
		return invalid("missing_field", "name", "name is required: 1 to 64 of a-z A-Z 0-9 _ . -")
	case !contractName.MatchString(*req.Name):
		return invalid("invalid_name", "name", "name %q must be 1 to 64 of a-z A-Z 0-9 _ . -", clip(*req.Name))
	case req.Address == nil:
		return invalid("missing_field", "address", "address is required: the contract's 0x address")
	case len(req.ABI) == 0 || string(req.ABI) == "null":
		return invalid("missing_field", "abi", "abi is required: the contract's JSON ABI array")
	case len(req.ABI) > maxABIBytes:
		return invalid("too_large", "abi", "abi is %d bytes; at most %d", len(req.ABI), maxABIBytes)
	}
	addr, e := parseAddress(*req.Address, "address")
	if e != nil {
		return e
	}
	if _, err := calldata.ParseABI(req.ABI); err != nil {
		return calldataError(err, "abi")
	}
	canon := json.RawMessage(canonicalJSON(req.ABI)) // the same ABI with other spacing or key order is the same
	sum := sha256.Sum256(canon)
	ns := caller(c).namespace()
	ct := jobs.Contract{Name: *req.Name, Owner: ns, Address: addr.Hex(), ABI: canon, ABIHash: hexutil.Encode(sum[:])}
	got, res, err := s.contractReg.Put(c.Request().Context(), ct, replace)
	if errors.Is(err, jobs.ErrContractExists) {
		return &Error{Kind: CodeConflict, Code: "contract_exists", Field: "name",
			Message: "a different contract (" + got.Address + ", ABI " + got.ABIHash + ") is registered as " + ct.Name + ": add ?replace=true to replace it"}
	}
	if err != nil {
		return apiError(CodeUnavailable, "could not register the contract: %v", err)
	}
	if r, err := parseRegistered(got); err == nil {
		s.contracts.keep(ns, got.Name, r)
	}
	loc := "/v1/contracts/" + got.Name
	if len(s.chains.list) > 1 { // a contract is registered on one chain
		loc += "?chain=" + s.name
	}
	c.Response().Header().Set(echo.HeaderLocation, loc)
	if res == jobs.ContractCreated {
		return c.JSON(http.StatusCreated, got)
	}
	return c.JSON(http.StatusOK, got)
}

// getContract answers GET /v1/contracts/{name}: the contract the name
// means to the caller (its own namespace first, then the shared one).
func (s *Server) getContract(c echo.Context) error {
	name := c.Param("name")
	if !contractName.MatchString(name) {
		return apiError(CodeNotFound, "no contract %q", clip(name))
	}
	ct, err := resolveContract(c.Request().Context(), s.contractReg, caller(c).namespace(), name)
	if errors.Is(err, jobs.ErrContractNotFound) {
		return apiError(CodeNotFound, "no contract %q", name)
	}
	if err != nil {
		return apiError(CodeUnavailable, "could not load the contract: %v", err)
	}
	return c.JSON(http.StatusOK, ct)
}
