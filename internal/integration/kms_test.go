package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/signer"
)

// kmsCluster is a cluster whose signers include a key in local-kms, which
// the relayq processes reach through the AWS SDK's standard chain
// (AWS_REGION, AWS_ENDPOINT_URL_KMS, static credentials).
type kmsCluster struct {
	*cluster
	kms     *testenv.LocalKMS
	kmsAddr common.Address
	counter string
}

// newKMSCluster starts local-kms, creates a secp256k1 key (alias
// relayq-it), funds its address on anvil and starts relayq with it;
// withLocal adds anvil's first key to the same pool. It starts no worker.
func newKMSCluster(t *testing.T, withLocal bool) *kmsCluster {
	t.Helper()
	srv := testenv.StartLocalKMS(t)
	srv.CreateSigningKey(t, "relayq-it")
	k, err := signer.NewKMS(context.Background(), srv.Client(), "alias/relayq-it", big.NewInt(testenv.AnvilChainID), 0)
	require.NoError(t, err)

	env := append(srv.Env(), "RELAYQ_KMS_KEY_IDS=alias/relayq-it")
	if !withLocal {
		env = append(env, "RELAYQ_PRIVATE_KEYS=")
	}
	// The API process reads the key's address from KMS at start; the
	// address is funded before any worker starts (the caller adds them).
	c, counter := newCluster(t, clusterOptions{anvilArgs: []string{"--block-time", "1"}, env: env})
	c.anvil.RPC(t, "anvil_setBalance", k.Address().Hex(), "0x3635C9ADC5DEA00000") // 1,000 ETH
	return &kmsCluster{cluster: c, kms: srv, kmsAddr: k.Address(), counter: counter}
}

// requireSignedBy requires each job's mined transaction to recover to the
// signer the job names: the chain, not relayq, says who signed.
func (c *kmsCluster) requireSignedBy(all []jobs.Job) {
	c.t.Helper()
	ec, err := ethclient.Dial(c.anvil.URL())
	require.NoError(c.t, err)
	defer ec.Close()
	ls := types.LatestSignerForChainID(big.NewInt(testenv.AnvilChainID))
	halfN := new(big.Int).Rsh(crypto.S256().Params().N, 1)
	for _, j := range all {
		tx, _, err := ec.TransactionByHash(context.Background(), common.HexToHash(j.TxHash))
		require.NoError(c.t, err, "job %s", j.ID)
		from, err := types.Sender(ls, tx)
		require.NoError(c.t, err)
		require.Equal(c.t, common.HexToAddress(j.From), from, "job %s: the signature recovers to its signer", j.ID)
		_, _, s := tx.RawSignatureValues()
		require.LessOrEqual(c.t, s.Cmp(halfN), 0, "job %s: s in the lower half", j.ID)
	}
}

// requireContiguous requires each signer's nonces to run 0..n-1, each once.
func requireContiguous(t *testing.T, all []jobs.Job) map[string][]uint64 {
	t.Helper()
	by := bySigner(t, all)
	for from, ns := range by {
		seen := map[uint64]bool{}
		for _, n := range ns {
			require.False(t, seen[n], "%s: nonce %d used twice", from, n)
			seen[n] = true
		}
		for i := range uint64(len(ns)) {
			require.True(t, seen[i], "%s: nonce %d unused: a gap", from, i)
		}
	}
	return by
}

// TestKMSSignerConfirmsJobs sends jobs signed in local-kms through a relayq
// API and worker process: every job is confirmed once, with contiguous
// nonces, and every mined signature recovers to the KMS key's address.
// local-kms signs with Go's crypto/ecdsa, which returns a high s half of
// the time, so about half of these went through the normalisation.
func TestKMSSignerConfirmsJobs(t *testing.T) {
	t.Parallel()
	c := newKMSCluster(t, false)
	c.addWorker()
	const n = 40
	ids := c.post(n, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, c.counter))
	all := c.waitAll(ids, 2*time.Minute)
	for _, j := range all {
		require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
		require.Equal(t, c.kmsAddr, common.HexToAddress(j.From))
	}
	requireContiguous(t, all)
	c.requireSignedBy(all)
	require.Equal(t, uint64(n), counterValue(t, c.node, commonAddr(c.counter)), "the contract counted every job once")
}

// TestKMSAndLocalKeyInOnePool mixes a KMS key and a hex key in one signer
// pool: jobs that name no signer are confirmed on both, each signer's
// nonces are contiguous, and each signature recovers to its job's signer.
func TestKMSAndLocalKeyInOnePool(t *testing.T) {
	t.Parallel()
	c := newKMSCluster(t, true)
	c.addWorker()
	const n = 60
	ids := c.post(n, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, c.counter))
	all := c.waitAll(ids, 2*time.Minute)
	for _, j := range all {
		require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
	}
	by := requireContiguous(t, all)
	local := crypto.PubkeyToAddress(c.anvil.Keys()[0].PublicKey)
	require.NotEmpty(t, by[strings.ToLower(c.kmsAddr.Hex())], "the KMS key sent some: %v", by)
	require.NotEmpty(t, by[strings.ToLower(local.Hex())], "the local key sent some: %v", by)
	require.Len(t, by, 2)
	c.requireSignedBy(all)
	require.Equal(t, uint64(n), counterValue(t, c.node, commonAddr(c.counter)))
}

// TestKMSOutagePausesSigner stops local-kms while jobs are queued for its
// key: the signer is paused with the reason in /v1/signers and no job
// fails; once local-kms is back (same keys, same port), every job is
// confirmed and executed exactly once, every attempt of a job at its one
// nonce, and the nonces stay contiguous.
func TestKMSOutagePausesSigner(t *testing.T) {
	t.Parallel()
	c := newKMSCluster(t, false)
	c.addWorker()
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, c.counter)
	before := c.waitAll(c.post(5, body), 2*time.Minute)

	c.kms.Stop()
	during := c.post(15, body)
	var reason string
	require.Eventually(t, func() bool {
		reason = c.pausedReason(c.kmsAddr)
		return reason != ""
	}, time.Minute, 200*time.Millisecond, "the KMS signer is paused while KMS is down")
	require.Contains(t, reason, "kms key alias/relayq-it: sign: remote signer unavailable")
	for _, id := range during {
		code, b, err := c.request(http.MethodGet, "/v1/jobs/"+id, "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		var j jobs.Job
		require.NoError(t, json.Unmarshal(b, &j))
		require.False(t, j.Status.Terminal(), "job %s is %s while KMS is down: it waits", id, j.Status)
	}

	c.kms.Restart()
	all := append(before, c.waitAll(during, 3*time.Minute)...)
	for _, j := range all {
		require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
		// A job whose turn came before a lower nonce was signed again may
		// have been fee-bumped meanwhile: a replacement, at its one nonce.
		for _, a := range j.Attempts {
			require.Equal(t, *j.Nonce, a.Nonce, "job %s: every attempt at its one nonce", j.ID)
		}
	}
	requireContiguous(t, all)
	c.requireSignedBy(all)
	require.Equal(t, uint64(len(all)), counterValue(t, c.node, commonAddr(c.counter)), "each job executed once")
	require.Eventually(t, func() bool { return c.pausedReason(c.kmsAddr) == "" }, time.Minute, 200*time.Millisecond,
		"the pause is lifted by the next successful send")
}

// pausedReason is what /v1/signers says about addr's pause ("" if none).
func (c *kmsCluster) pausedReason(addr common.Address) string {
	c.t.Helper()
	code, b, err := c.request(http.MethodGet, "/v1/signers", "")
	require.NoError(c.t, err)
	require.Equal(c.t, http.StatusOK, code, string(b))
	var out struct {
		Signers []struct {
			Address string `json:"address"`
			Paused  bool   `json:"paused"`
			Reason  string `json:"paused_reason"`
		} `json:"signers"`
	}
	require.NoError(c.t, json.Unmarshal(b, &out), string(b))
	for _, s := range out.Signers {
		if common.HexToAddress(s.Address) == addr {
			return s.Reason
		}
	}
	c.t.Fatalf("signer %s not in /v1/signers: %s", addr, b)
	return ""
}
