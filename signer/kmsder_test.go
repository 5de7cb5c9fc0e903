package signer

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"
)

// derOf is what KMS returns for the signature (r, s).
func derOf(t *testing.T, r, s *big.Int) []byte {
	t.Helper()
	b, err := asn1.Marshal(ecdsaSignature{R: r, S: s})
	require.NoError(t, err)
	return b
}

// TestEthSignatureFromDER builds KMS's DER answers from a known key's
// signature: as signed (low s), with s replaced by N-s (the other valid
// signature, which KMS returns half of the time), and broken ones. A good
// answer gives back the exact 65 bytes go-ethereum signs; a bad one is an
// error, never a signature of someone else.
func TestEthSignatureFromDER(t *testing.T) {
	t.Parallel()
	key, err := crypto.HexToECDSA(devKey)
	require.NoError(t, err)
	addr := crypto.PubkeyToAddress(key.PublicKey)
	hash := crypto.Keccak256([]byte("relayq"))
	want, err := crypto.Sign(hash, key) // [R || S || V], s in the lower half
	require.NoError(t, err)
	r, s := new(big.Int).SetBytes(want[:32]), new(big.Int).SetBytes(want[32:64])
	highS := new(big.Int).Sub(secp256k1N, s)
	require.Positive(t, highS.Cmp(secp256k1HalfN), "the replaced s is in the upper half")

	tests := []struct {
		name string
		der  []byte
		addr common.Address
		err  string // "" when the signature must equal want
	}{
		{"low s, as signed", derOf(t, r, s), addr, ""},
		{"high s is normalised", derOf(t, r, highS), addr, ""},
		{"another address", derOf(t, r, s), common.HexToAddress("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"), "does not recover to"},
		{"s of zero", derOf(t, r, new(big.Int)), addr, "out of range"},
		{"r of N", derOf(t, new(big.Int).Set(secp256k1N), s), addr, "out of range"},
		{"not DER", []byte{0x30, 0x02, 0x01}, addr, "parse signature"},
		{"trailing bytes", append(derOf(t, r, s), 0), addr, "trailing data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ethSignature(tc.der, hash, tc.addr)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

// TestAddressFromSPKI reads the DER SubjectPublicKeyInfo GetPublicKey
// returns: a secp256k1 key gives its address, any other key an error.
func TestAddressFromSPKI(t *testing.T) {
	t.Parallel()
	key, err := crypto.HexToECDSA(devKey)
	require.NoError(t, err)
	spki := func(alg, curve asn1.ObjectIdentifier, point []byte) []byte {
		params, err := asn1.Marshal(curve)
		require.NoError(t, err)
		b, err := asn1.Marshal(subjectPublicKeyInfo{
			Algorithm: pkix.AlgorithmIdentifier{Algorithm: alg, Parameters: asn1.RawValue{FullBytes: params}},
			PublicKey: asn1.BitString{Bytes: point, BitLength: 8 * len(point)},
		})
		require.NoError(t, err)
		return b
	}
	point := crypto.FromECDSAPub(&key.PublicKey)
	other, err := ecdsa.GenerateKey(crypto.S256(), rand.Reader)
	require.NoError(t, err)
	tests := []struct {
		name string
		der  []byte
		err  string
	}{
		{"secp256k1", spki(oidECPublicKey, oidSecp256k1, point), ""},
		{"NIST P-256 curve", spki(oidECPublicKey, asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}, point), "not secp256k1"},
		{"RSA", spki(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}, oidSecp256k1, point), "not EC"},
		{"compressed point", spki(oidECPublicKey, oidSecp256k1, crypto.CompressPubkey(&other.PublicKey)), "public key point"},
		{"not DER", []byte("nope"), "parse public key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := addressFromSPKI(tc.der)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, crypto.PubkeyToAddress(key.PublicKey), got)
		})
	}
}
