package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Contract is a registered contract: a name that jobs and reads may give
// instead of an address and an ABI. A contract with an Owner (the name of
// the API key that registered it) is in that key's namespace, apart from
// the shared ones (no Owner) and other keys': see QualifiedName.
type Contract struct {
	Name         string          `json:"name"`
	Owner        string          `json:"owner,omitempty"`
	Address      string          `json:"address"`
	ABI          json.RawMessage `json:"abi"`
	ABIHash      string          `json:"abi_hash"` // sha256 of the canonical ABI JSON, 0x hex
	RegisteredAt time.Time       `json:"registered_at"`
}

// PutResult says what Contracts.Put did.
type PutResult int

// The outcomes of Contracts.Put.
const (
	ContractCreated   PutResult = iota // the name was new
	ContractUnchanged                  // the name held the same address and ABI already
	ContractReplaced                   // the name held another contract, and replace was asked
)

// ErrContractExists: the name holds a different contract and replace was
// not asked. Put returns the registered one with it.
var ErrContractExists = errors.New("jobs: a different contract is registered under this name")

// ErrContractNotFound: no contract is registered under the name.
var ErrContractNotFound = errors.New("jobs: no contract registered under this name")

// Contracts keeps registered contracts in Redis, one hash per name under
// the deployment's prefix.
type Contracts struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time
}

// NewContracts returns the contract registry on rdb under prefix.
func NewContracts(rdb redis.UniversalClient, prefix string) *Contracts {
	return &Contracts{rdb: rdb, prefix: prefix, now: time.Now}
}

func (c *Contracts) key(name string) string { return c.prefix + "contract:" + name }

// QualifiedName is the name a contract is stored under: its name in the
// shared namespace (owner ""), or "<owner>/<name>" in an API key's. Neither
// part may hold a slash, so the two never meet.
func QualifiedName(owner, name string) string {
	if owner == "" {
		return name
	}
	return owner + "/" + name
}

// atKey indexes the name last registered for an address, so the worker
// can decode a job's custom errors with the ABI of the contract it called.
func (c *Contracts) atKey(address string) string { return c.prefix + "contract-at:" + address }

// putContract registers a contract under a name unless a different one
// holds it.
//
// KEYS[1] the contract's hash
// KEYS[2] the address index of the new address
// ARGV[1] identity: the address and ABI hash (equal identities are the same contract)
// ARGV[2] the contract record (JSON)
// ARGV[3] "1" to replace a different contract
// ARGV[4] the name
// ARGV[5] the address index key prefix, to drop a replaced address's entry
// ARGV[6] the new address
//
// The replaced address's key is found only inside the script; on a Cluster
// it shares the prefix's hash tag, so it is in the same slot.
//
// Returns {outcome, record}: outcome 0 created, 1 unchanged, 2 exists
// (record is the registered one), 3 replaced.
var putContract = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'identity')
if cur == ARGV[1] then
  return {1, redis.call('HGET', KEYS[1], 'record')}
end
if cur and ARGV[3] ~= '1' then
  return {2, redis.call('HGET', KEYS[1], 'record')}
end
local old = redis.call('HGET', KEYS[1], 'address')
if old and old ~= ARGV[6] and redis.call('GET', ARGV[5] .. old) == ARGV[4] then
  redis.call('DEL', ARGV[5] .. old)
end
redis.call('HSET', KEYS[1], 'identity', ARGV[1], 'record', ARGV[2], 'address', ARGV[6])
redis.call('SET', KEYS[2], ARGV[4])
if cur then
  return {3, ARGV[2]}
end
return {0, ARGV[2]}
`)

// Put registers ct under QualifiedName(ct.Owner, ct.Name) in one atomic step: a new name is
// created; the same address and ABI again change nothing; a different
// contract under a used name is ErrContractExists (with the registered
// one) unless replace. It returns the contract as registered.
func (c *Contracts) Put(ctx context.Context, ct Contract, replace bool) (*Contract, PutResult, error) {
	ct.RegisteredAt = c.now().UTC()
	rec, err := json.Marshal(ct)
	if err != nil {
		return nil, 0, fmt.Errorf("jobs: encode contract: %w", err)
	}
	flag := "0"
	if replace {
		flag = "1"
	}
	qname := QualifiedName(ct.Owner, ct.Name)
	res, err := putContract.Run(ctx, c.rdb, []string{c.key(qname), c.atKey(ct.Address)},
		ct.Address+"|"+ct.ABIHash, rec, flag, qname, c.atKey(""), ct.Address).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("jobs: register contract %s: %w", ct.Name, err)
	}
	if len(res) != 2 {
		return nil, 0, fmt.Errorf("jobs: register contract %s: unexpected answer %v", ct.Name, res)
	}
	outcome, _ := res[0].(int64)
	stored, _ := res[1].(string)
	var got Contract
	if err := json.Unmarshal([]byte(stored), &got); err != nil {
		return nil, 0, fmt.Errorf("jobs: decode contract %s: %w", ct.Name, err)
	}
	switch outcome {
	case 0:
		return &got, ContractCreated, nil
	case 1:
		return &got, ContractUnchanged, nil
	case 2:
		return &got, 0, ErrContractExists
	}
	return &got, ContractReplaced, nil
}

// Get returns the contract registered under name (a QualifiedName), or
// ErrContractNotFound.
func (c *Contracts) Get(ctx context.Context, name string) (*Contract, error) {
	rec, err := c.rdb.HGet(ctx, c.key(name), "record").Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrContractNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: load contract %s: %w", name, err)
	}
	var ct Contract
	if err := json.Unmarshal([]byte(rec), &ct); err != nil {
		return nil, fmt.Errorf("jobs: decode contract %s: %w", name, err)
	}
	return &ct, nil
}

// At returns the contract last registered at address (checksummed, as
// Put stores it), or ErrContractNotFound.
func (c *Contracts) At(ctx context.Context, address string) (*Contract, error) {
	name, err := c.rdb.Get(ctx, c.atKey(address)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrContractNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: find contract at %s: %w", address, err)
	}
	ct, err := c.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if ct.Address != address { // replaced in between
		return nil, ErrContractNotFound
	}
	return ct, nil
}
