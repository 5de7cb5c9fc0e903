package signer_test

import (
	"context"
	"encoding/asn1"
	"math/big"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/signer"
)

var (
	curveN     = crypto.S256().Params().N
	curveHalfN = new(big.Int).Rsh(curveN, 1)
)

// kmsSetup starts local-kms and returns a client for it, built from the
// SDK's standard chain (AWS_REGION, AWS_ENDPOINT_URL_KMS, ...).
func kmsSetup(t *testing.T) (*testenv.LocalKMS, *kms.Client) {
	t.Helper()
	srv := testenv.StartLocalKMS(t)
	srv.SetEnv(t)
	client, err := signer.NewKMSClient(context.Background())
	require.NoError(t, err)
	return srv, client
}

// createKey creates a key through the SDK and returns its id.
func createKey(t *testing.T, c *kms.Client, spec kmstypes.KeySpec, usage kmstypes.KeyUsageType) string {
	t.Helper()
	out, err := c.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: spec, KeyUsage: usage})
	require.NoError(t, err)
	return *out.KeyMetadata.KeyId
}

// highS is a KMSAPI around the real client that, when on, replaces the s
// of each signature KMS returns in the lower half with N-s: the other
// valid signature of the same message, which is what AWS KMS returns half
// of the time. It counts how many signatures it flipped.
type highS struct {
	signer.KMSAPI
	flipped atomic.Int64
}

func (h *highS) Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error) {
	out, err := h.KMSAPI.Sign(ctx, in, optFns...)
	if err != nil {
		return nil, err
	}
	var sig struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(out.Signature, &sig); err != nil {
		return nil, err
	}
	if sig.S.Cmp(curveHalfN) <= 0 {
		sig.S = new(big.Int).Sub(curveN, sig.S)
		h.flipped.Add(1)
	}
	if out.Signature, err = asn1.Marshal(sig); err != nil {
		return nil, err
	}
	return out, nil
}

func TestKMSSignsForItsAddress(t *testing.T) {
	_, client := kmsSetup(t)
	ctx := context.Background()
	chain := big.NewInt(31337)
	id := createKey(t, client, kmstypes.KeySpecEccSecgP256k1, kmstypes.KeyUsageTypeSignVerify)
	_, err := client.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String("alias/relayq-test"), TargetKeyId: aws.String(id)})
	require.NoError(t, err)

	// The address is the one KMS's own public key gives.
	pub, err := client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(id)})
	require.NoError(t, err)
	want := pkixAddress(t, pub.PublicKey)

	flip := &highS{KMSAPI: client}
	tests := []struct {
		name    string
		api     signer.KMSAPI
		key     string
		flipped bool
	}{
		{"key id, signatures as KMS returns them", client, id, false},
		{"alias", client, "alias/relayq-test", false},
		{"every s in the upper half", flip, id, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := signer.NewKMS(ctx, tc.api, tc.key, chain, 0)
			require.NoError(t, err)
			require.Equal(t, want, k.Address())
			before := flip.flipped.Load()
			ls := types.LatestSignerForChainID(chain)
			for n := range uint64(8) {
				tx := types.NewTx(&types.DynamicFeeTx{ChainID: chain, Nonce: n, Gas: 21000, GasTipCap: big.NewInt(1), GasFeeCap: big.NewInt(2), To: &want, Value: big.NewInt(1)})
				signed, err := k.SignTx(ctx, tx)
				require.NoError(t, err)
				from, err := types.Sender(ls, signed)
				require.NoError(t, err)
				require.Equal(t, want, from, "nonce %d: the signature recovers to the key's address", n)
				_, _, s := signed.RawSignatureValues()
				require.LessOrEqual(t, s.Cmp(curveHalfN), 0, "nonce %d: s is in the lower half", n)
				require.Equal(t, ls.Hash(tx), ls.Hash(signed), "the same transaction, signed")
			}
			if tc.flipped {
				require.Positive(t, flip.flipped.Load()-before, "high s signatures went through normalisation")
			}
		})
	}
}

func TestKMSRefusesKeysThatCannotSignEthereum(t *testing.T) {
	_, client := kmsSetup(t)
	tests := []struct {
		name  string
		spec  kmstypes.KeySpec
		usage kmstypes.KeyUsageType
		err   string
	}{
		{"NIST P-256", kmstypes.KeySpecEccNistP256, kmstypes.KeyUsageTypeSignVerify, "key spec is ECC_NIST_P256"},
		{"symmetric", kmstypes.KeySpecSymmetricDefault, kmstypes.KeyUsageTypeEncryptDecrypt, "UnsupportedOperationException"}, // KMS has no public key to give,
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := createKey(t, client, tc.spec, tc.usage)
			_, err := signer.NewKMS(context.Background(), client, id, big.NewInt(1), 0)
			require.ErrorContains(t, err, tc.err)
		})
	}
	_, err := signer.NewKMS(context.Background(), client, "alias/nothing-here", big.NewInt(1), 0)
	require.ErrorContains(t, err, "get public key")
}

// TestKMSOutageIsUnavailable stops local-kms under a signer: the error
// wraps ErrUnavailable (the worker pauses the signer on it), and after a
// restart the same signer signs again.
func TestKMSOutageIsUnavailable(t *testing.T) {
	srv, client := kmsSetup(t)
	ctx := context.Background()
	chain := big.NewInt(31337)
	k, err := signer.NewKMS(ctx, client, createKey(t, client, kmstypes.KeySpecEccSecgP256k1, kmstypes.KeyUsageTypeSignVerify), chain, 0)
	require.NoError(t, err)
	tx := types.NewTx(&types.DynamicFeeTx{ChainID: chain, Gas: 21000, GasTipCap: big.NewInt(1), GasFeeCap: big.NewInt(2)})

	srv.Stop()
	_, err = k.SignTx(ctx, tx)
	require.ErrorIs(t, err, signer.ErrUnavailable)
	require.ErrorContains(t, err, "operation error KMS: Sign")

	srv.Restart()
	signed, err := k.SignTx(ctx, tx)
	require.NoError(t, err)
	from, err := types.Sender(types.LatestSignerForChainID(chain), signed)
	require.NoError(t, err)
	require.Equal(t, k.Address(), from)
}

// TestKMSThrottlingIsRetried throttles the first Sign calls of a real
// local-kms through the SDK's own error type: the signer's retries carry
// the call through.
func TestKMSThrottlingIsRetried(t *testing.T) {
	_, client := kmsSetup(t)
	ctx := context.Background()
	chain := big.NewInt(31337)
	id := createKey(t, client, kmstypes.KeySpecEccSecgP256k1, kmstypes.KeyUsageTypeSignVerify)
	var throttled atomic.Int64
	// An SDK middleware in front of the transport: the real client with
	// its retryer, answering ThrottlingException twice.
	throttle := func(o *kms.Options) {
		o.APIOptions = append(o.APIOptions, throttleFirst(2, &throttled))
	}
	throttling := kms.New(client.Options(), throttle)
	k, err := signer.NewKMS(ctx, throttling, id, chain, 0)
	require.NoError(t, err)
	signed, err := k.SignTx(ctx, types.NewTx(&types.DynamicFeeTx{ChainID: chain, Gas: 21000, GasTipCap: big.NewInt(1), GasFeeCap: big.NewInt(2)}))
	require.NoError(t, err)
	require.EqualValues(t, 2, throttled.Load())
	from, err := types.Sender(types.LatestSignerForChainID(chain), signed)
	require.NoError(t, err)
	require.Equal(t, k.Address(), from)
}

func pkixAddress(t *testing.T, der []byte) common.Address {
	t.Helper()
	var spki struct {
		Algorithm struct {
			Algorithm  asn1.ObjectIdentifier
			Parameters asn1.RawValue `asn1:"optional"`
		}
		PublicKey asn1.BitString
	}
	_, err := asn1.Unmarshal(der, &spki)
	require.NoError(t, err)
	pub, err := crypto.UnmarshalPubkey(spki.PublicKey.Bytes)
	require.NoError(t, err)
	return crypto.PubkeyToAddress(*pub)
}

// throttleFirst is a middleware of the SDK's deserialize step (inside its
// retry loop) that answers the first n calls with KMS's
// ThrottlingException instead of sending them.
func throttleFirst(n int64, count *atomic.Int64) func(*middleware.Stack) error {
	return func(st *middleware.Stack) error {
		return st.Deserialize.Add(middleware.DeserializeMiddlewareFunc("throttleFirst",
			func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
				if count.Add(1) <= n {
					return middleware.DeserializeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
				}
				count.Add(-1)
				return next.HandleDeserialize(ctx, in)
			}), middleware.Before)
	}
}
