// Package signer holds relayq's keys. A Signer signs transactions for one
// address; the worker never sees key material, so a remote signer (KMS) can
// implement the same interface later.
package signer

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// Signer signs transactions for one address on one chain. SignTx takes a
// context so that a remote signer (a KMS, an HSM over the network) can be
// bounded and cancelled; txmgr.Sign checks what any signer other than a
// local Key returns (the sender and every field) before relayq persists
// or broadcasts it.
type Signer interface {
	Address() common.Address
	SignTx(ctx context.Context, tx *types.Transaction) (*types.Transaction, error)
}

// Key is a Signer backed by an in-memory private key.
type Key struct {
	key    *ecdsa.PrivateKey
	addr   common.Address
	signer types.Signer
}

// NewKey returns a Signer for key on the chain chainID.
func NewKey(key *ecdsa.PrivateKey, chainID *big.Int) *Key {
	return &Key{key: key, addr: crypto.PubkeyToAddress(key.PublicKey), signer: types.LatestSignerForChainID(chainID)}
}

// Address is the signer's account.
func (k *Key) Address() common.Address { return k.addr }

// SignTx signs tx with the key; local signing does not wait, so ctx is
// not consulted.
func (k *Key) SignTx(_ context.Context, tx *types.Transaction) (*types.Transaction, error) {
	return types.SignTx(tx, k.signer, k.key)
}

// ParseHexKey parses one hex private key, with or without 0x.
func ParseHexKey(s string) (*ecdsa.PrivateKey, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "0x")
	k, err := crypto.HexToECDSA(s)
	if err != nil {
		// The error text of HexToECDSA can echo the key; never repeat it.
		return nil, errors.New("not a 32-byte hex private key")
	}
	return k, nil
}

// FromHexKeys parses hex keys (RELAYQ_PRIVATE_KEYS) into signers for the
// chain. Duplicate keys are an error: two signers on one account would
// fight over its nonces.
func FromHexKeys(keys []string, chainID *big.Int) ([]Signer, error) {
	seen := map[common.Address]bool{}
	out := make([]Signer, 0, len(keys))
	for i, s := range keys {
		k, err := ParseHexKey(s)
		if err != nil {
			return nil, fmt.Errorf("RELAYQ_PRIVATE_KEYS: key %d: %w", i+1, err)
		}
		sg := NewKey(k, chainID)
		if seen[sg.Address()] {
			return nil, fmt.Errorf("RELAYQ_PRIVATE_KEYS: key %d repeats account %s", i+1, sg.Address())
		}
		seen[sg.Address()] = true
		out = append(out, sg)
	}
	return out, nil
}

// Addresses lists the accounts of signers, in order.
func Addresses(signers []Signer) []common.Address {
	out := make([]common.Address, len(signers))
	for i, s := range signers {
		out[i] = s.Address()
	}
	return out
}
