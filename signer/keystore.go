package signer

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
)

// ErrWrongPassword means a keystore file did not decrypt with the password.
var ErrWrongPassword = errors.New("wrong password (the file does not decrypt with it)")

// KeystorePassword returns the password of the keystore files: the content
// of passwordFile when it is set (one trailing newline dropped, as editors
// and `echo` leave one), else password.
func KeystorePassword(passwordFile, password string) (string, error) {
	if passwordFile == "" {
		return password, nil
	}
	b, err := os.ReadFile(passwordFile)
	if err != nil {
		return "", fmt.Errorf("RELAYQ_KEYSTORE_PASSWORD_FILE: %w", err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// FromKeystoreFile decrypts one keystore v3 JSON file into a signer for the
// chain. Errors name the file, never the password or key.
func FromKeystoreFile(path, password string, chainID *big.Int) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	k, err := keystore.DecryptKey(b, password)
	switch {
	case errors.Is(err, keystore.ErrDecrypt):
		return nil, fmt.Errorf("keystore %s: %w", path, ErrWrongPassword)
	case err != nil:
		return nil, fmt.Errorf("keystore %s: not a keystore v3 key file: %w", path, err)
	}
	return NewKey(k.PrivateKey, chainID), nil
}

// FromKeystoreFiles decrypts keystore v3 files (RELAYQ_KEYSTORE_FILES), all
// with one password, into signers for the chain.
func FromKeystoreFiles(paths []string, password string, chainID *big.Int) ([]Signer, error) {
	out := make([]Signer, 0, len(paths))
	for _, p := range paths {
		k, err := FromKeystoreFile(p, password, chainID)
		if err != nil {
			return nil, fmt.Errorf("RELAYQ_KEYSTORE_FILES: %w", err)
		}
		out = append(out, k)
	}
	return out, Unique(out)
}

// Unique refuses signers that share an account, such as a hex key that is
// also in a keystore file: two signers on one account would fight over its
// nonces.
func Unique(signers []Signer) error {
	seen := make(map[common.Address]bool, len(signers))
	for _, s := range signers {
		if seen[s.Address()] {
			return fmt.Errorf("account %s is configured twice (RELAYQ_PRIVATE_KEYS, RELAYQ_KEYSTORE_FILES and RELAYQ_KMS_KEY_IDS together may name each account once)", s.Address())
		}
		seen[s.Address()] = true
	}
	return nil
}
