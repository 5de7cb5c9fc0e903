package signer

import (
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
)

// ErrUnavailable means a remote signer could not sign now: its service is
// down, throttling past its retries, or refusing the key (disabled,
// access denied). The job is not at fault, so the worker pauses the signer
// and the job waits instead of failing (txmgr.Classify: ClassPaused).
var ErrUnavailable = errors.New("remote signer unavailable")

// DefaultKMSTimeout bounds one KMS call, its retries included, when
// NewKMS is given no timeout.
const DefaultKMSTimeout = 5 * time.Second

// kmsAttempts is how often one KMS call is tried. The SDK's standard
// retryer decides what is transient (throttling, 5xx, connection and
// timeout errors), as txmgr.Classify does for nodes; kmsTransientCodes
// adds KMS's own transient error codes to its list.
const kmsAttempts = 5

// kmsTransientCodes are KMS error codes that a retry can fix.
var kmsTransientCodes = []string{
	"ThrottlingException",        // request rate above the account's quota
	"KMSInternalException",       // KMS's own 500
	"DependencyTimeoutException", // KMS's 503
	"KeyUnavailableException",    // a custom key store's HSM is briefly away
}

// KMSAPI is the part of the AWS KMS client a KMS signer calls; *kms.Client
// implements it.
type KMSAPI interface {
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error)
}

// KMS is a Signer whose key never leaves AWS KMS: an asymmetric key of
// spec ECC_SECG_P256K1 and usage SIGN_VERIFY. Each SignTx is one KMS Sign
// call over the transaction's signing hash.
type KMS struct {
	client  KMSAPI
	keyID   string
	addr    common.Address
	signer  types.Signer
	timeout time.Duration
}

// NewKMSClient builds a KMS client from the AWS SDK's standard chain:
// region (AWS_REGION, the profile), credentials (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO, web identity, the instance or
// task role) and endpoint (AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, the
// profile's services section). Transient errors are retried with the
// SDK's backoff.
func NewKMSClient(ctx context.Context) (*kms.Client, error) {
	// Concurrent signs of a batch share the connections: keep more of
	// them alive than the SDK's default of 10 per host.
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.MaxIdleConnsPerHost = 64
	})
	cfg, err := awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithHTTPClient(httpClient),
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.AddWithErrorCodes(retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = kmsAttempts
				o.MaxBackoff = 2 * time.Second
				// No client-side retry quota: during an outage it would
				// turn the cause (a refused connection) into "retry quota
				// exceeded" in the pause reason. The per-call deadline
				// bounds the retries, and the worker stops a failing
				// signer's batch at its first failure and pauses it.
				o.RateLimiter = ratelimit.None
			}), kmsTransientCodes...)
		}))
	if err != nil {
		return nil, fmt.Errorf("kms: load aws config: %w", err)
	}
	if cfg.Region == "" {
		return nil, errors.New("kms: no AWS region (set AWS_REGION, or a region in the AWS profile)")
	}
	return kms.NewFromConfig(cfg), nil
}

// NewKMS returns a Signer for the KMS key keyID (a key id, a key ARN,
// alias/name or an alias ARN) on the chain chainID. It reads the key's
// public key once, to learn its address, and refuses a key that is not a
// secp256k1 signing key. timeout bounds each KMS call (0:
// DefaultKMSTimeout).
func NewKMS(ctx context.Context, client KMSAPI, keyID string, chainID *big.Int, timeout time.Duration) (*KMS, error) {
	if timeout <= 0 {
		timeout = DefaultKMSTimeout
	}
	k := &KMS{client: client, keyID: keyID, signer: types.LatestSignerForChainID(chainID), timeout: timeout}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := client.GetPublicKey(cctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		return nil, fmt.Errorf("kms key %s: get public key: %w", keyID, err)
	}
	if out.KeySpec != kmstypes.KeySpecEccSecgP256k1 {
		return nil, fmt.Errorf("kms key %s: key spec is %s; Ethereum needs %s", keyID, out.KeySpec, kmstypes.KeySpecEccSecgP256k1)
	}
	if out.KeyUsage != kmstypes.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("kms key %s: key usage is %s; signing needs %s", keyID, out.KeyUsage, kmstypes.KeyUsageTypeSignVerify)
	}
	if k.addr, err = addressFromSPKI(out.PublicKey); err != nil {
		return nil, fmt.Errorf("kms key %s: %w", keyID, err)
	}
	return k, nil
}

// FromKMSKeys returns a signer for each of keyIDs (RELAYQ_KMS_KEY_IDS),
// through one client. Two ids naming one key (an id and its alias) are an
// error, as two hex keys of one account are.
func FromKMSKeys(ctx context.Context, client KMSAPI, keyIDs []string, chainID *big.Int, timeout time.Duration) ([]Signer, error) {
	out := make([]Signer, 0, len(keyIDs))
	for _, id := range keyIDs {
		k, err := NewKMS(ctx, client, id, chainID, timeout)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	if err := Unique(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Address is the key's account, derived from its public key.
func (k *KMS) Address() common.Address { return k.addr }

// KeyID is the key as configured (id, ARN or alias).
func (k *KMS) KeyID() string { return k.keyID }

// SignTx has KMS sign tx's signing hash and returns tx with the signature.
// Any failure wraps ErrUnavailable: the key is remote, and a job cannot
// be the cause of its signer's failure.
func (k *KMS) SignTx(ctx context.Context, tx *types.Transaction) (*types.Transaction, error) {
	h := k.signer.Hash(tx)
	cctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	out, err := k.client.Sign(cctx, &kms.SignInput{
		KeyId:            aws.String(k.keyID),
		Message:          h[:],
		MessageType:      kmstypes.MessageTypeDigest,
		SigningAlgorithm: kmstypes.SigningAlgorithmSpecEcdsaSha256,
	})
	if err != nil {
		return nil, fmt.Errorf("kms key %s: sign: %w: %w", k.keyID, ErrUnavailable, err)
	}
	sig, err := ethSignature(out.Signature, h[:], k.addr)
	if err != nil {
		return nil, fmt.Errorf("kms key %s: %w: %w", k.keyID, ErrUnavailable, err)
	}
	signed, err := tx.WithSignature(k.signer, sig)
	if err != nil {
		return nil, fmt.Errorf("kms key %s: %w: %w", k.keyID, ErrUnavailable, err)
	}
	return signed, nil
}

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidSecp256k1   = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
	// secp256k1N is the order of the secp256k1 group, and secp256k1HalfN
	// half of it: Ethereum accepts only signatures with s ≤ N/2 (EIP-2).
	secp256k1N     = crypto.S256().Params().N
	secp256k1HalfN = new(big.Int).Rsh(secp256k1N, 1)
)

// subjectPublicKeyInfo is X.509's SubjectPublicKeyInfo, which KMS's
// GetPublicKey returns DER-encoded.
type subjectPublicKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

// addressFromSPKI returns the Ethereum address of a DER
// SubjectPublicKeyInfo holding a secp256k1 public key.
func addressFromSPKI(der []byte) (common.Address, error) {
	var spki subjectPublicKeyInfo
	if rest, err := asn1.Unmarshal(der, &spki); err != nil {
		return common.Address{}, fmt.Errorf("parse public key: %w", err)
	} else if len(rest) > 0 {
		return common.Address{}, errors.New("parse public key: trailing data")
	}
	if !spki.Algorithm.Algorithm.Equal(oidECPublicKey) {
		return common.Address{}, fmt.Errorf("public key algorithm %v is not EC", spki.Algorithm.Algorithm)
	}
	var curve asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(spki.Algorithm.Parameters.FullBytes, &curve); err != nil || !curve.Equal(oidSecp256k1) {
		return common.Address{}, fmt.Errorf("public key curve %v is not secp256k1", curve)
	}
	pub, err := crypto.UnmarshalPubkey(spki.PublicKey.RightAlign())
	if err != nil {
		return common.Address{}, fmt.Errorf("parse public key point: %w", err)
	}
	return crypto.PubkeyToAddress(*pub), nil
}

// ecdsaSignature is the DER form of an ECDSA signature that KMS returns.
type ecdsaSignature struct {
	R, S *big.Int
}

// ethSignature turns KMS's DER signature of hash into Ethereum's 65 bytes
// [R || S || V]: s is brought into the lower half of the curve order
// (KMS returns either half; (r, N-s) is the same signature), and V is
// found by recovering each candidate and keeping the one that gives addr.
func ethSignature(der, hash []byte, addr common.Address) ([]byte, error) {
	var sig ecdsaSignature
	if rest, err := asn1.Unmarshal(der, &sig); err != nil {
		return nil, fmt.Errorf("parse signature: %w", err)
	} else if len(rest) > 0 {
		return nil, errors.New("parse signature: trailing data")
	}
	if sig.R == nil || sig.S == nil || sig.R.Sign() <= 0 || sig.S.Sign() <= 0 ||
		sig.R.Cmp(secp256k1N) >= 0 || sig.S.Cmp(secp256k1N) >= 0 {
		return nil, errors.New("signature values out of range")
	}
	s := sig.S
	if s.Cmp(secp256k1HalfN) > 0 {
		s = new(big.Int).Sub(secp256k1N, s)
	}
	out := make([]byte, crypto.SignatureLength)
	sig.R.FillBytes(out[:32])
	s.FillBytes(out[32:64])
	for v := byte(0); v < 2; v++ {
		out[64] = v
		pub, err := crypto.SigToPub(hash, out)
		if err == nil && crypto.PubkeyToAddress(*pub) == addr {
			return out, nil
		}
	}
	return nil, fmt.Errorf("signature does not recover to %s", addr.Hex())
}
