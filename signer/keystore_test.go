package signer

import (
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/keystore"
	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
)

// writeKeystore encrypts hexKey with password (light scrypt, so the test
// stays quick) into a file in dir.
func writeKeystore(t *testing.T, dir, name, hexKey, password string) string {
	t.Helper()
	pk, err := ParseHexKey(hexKey)
	require.NoError(t, err)
	k := &keystore.Key{PrivateKey: pk, Address: NewKey(pk, big.NewInt(1)).Address()}
	b, err := keystore.EncryptKey(k, password, 1<<10, 1)
	require.NoError(t, err)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

func TestKeystoreFiles(t *testing.T) {
	t.Parallel()
	chain := big.NewInt(31337)
	dir := t.TempDir()
	const otherKey = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
	good := writeKeystore(t, dir, "a.json", devKey, "s3cret")
	other := writeKeystore(t, dir, "b.json", otherKey, "s3cret")

	ss, err := FromKeystoreFiles([]string{good, other}, "s3cret", chain)
	require.NoError(t, err)
	require.Len(t, ss, 2)
	require.Equal(t, common.HexToAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"), ss[0].Address())
	require.Equal(t, common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"), ss[1].Address())

	t.Run("wrong password", func(t *testing.T) {
		_, err := FromKeystoreFiles([]string{good}, "nope", chain)
		require.ErrorIs(t, err, ErrWrongPassword)
		require.ErrorContains(t, err, good, "the error names the file")
		require.NotContains(t, err.Error(), "nope", "the password is never echoed")
	})
	t.Run("not a keystore file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.json")
		require.NoError(t, os.WriteFile(bad, []byte(`{"hello":`), 0o600))
		_, err := FromKeystoreFiles([]string{bad}, "s3cret", chain)
		require.ErrorContains(t, err, "bad.json: not a keystore v3 key file")
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := FromKeystoreFiles([]string{filepath.Join(dir, "gone.json")}, "s3cret", chain)
		require.ErrorContains(t, err, "gone.json")
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("the same account twice", func(t *testing.T) {
		again := writeKeystore(t, dir, "c.json", devKey, "s3cret")
		_, err := FromKeystoreFiles([]string{good, again}, "s3cret", chain)
		require.ErrorContains(t, err, "configured twice")
		hex, err := FromHexKeys([]string{devKey}, chain)
		require.NoError(t, err)
		require.ErrorContains(t, Unique(append(hex, ss...)), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266 is configured twice")
	})
}

func TestKeystorePassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(p, []byte("from file\n"), 0o600))

	pw, err := KeystorePassword(p, "from env")
	require.NoError(t, err)
	require.Equal(t, "from file", pw, "the file wins and its trailing newline is dropped")
	pw, err = KeystorePassword("", "from env")
	require.NoError(t, err)
	require.Equal(t, "from env", pw)
	_, err = KeystorePassword(filepath.Join(dir, "missing"), "")
	require.ErrorContains(t, err, "RELAYQ_KEYSTORE_PASSWORD_FILE")
}
