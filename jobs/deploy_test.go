package jobs_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// A deployment's contract_address follows the nonce it holds (a re-sign
// moves it), then the receipt; it is "to": null in JSON, and a job that
// failed has none.
func TestDeploymentContractAddress(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	j := newJob()
	j.To, j.Data = "", "0x6000"
	_, _, err := s.Create(ctx, j, "")
	require.NoError(t, err)
	from := common.HexToAddress("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266")

	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.True(t, got.Deployment())
	require.Empty(t, got.ContractAddress, "no nonce bound yet")
	b, err := json.Marshal(got)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	require.Contains(t, m, "to")
	require.Nil(t, m["to"], "a deployment has no recipient: to is null")
	require.NotContains(t, m, "contract_address")
	require.Regexp(t, `"chain_id":1,"to":null,"data":"0x6000"`, string(b), "keys keep their order")

	// A "to":"" inside metadata stays as it is.
	meta := newJob()
	meta.To, meta.Data, meta.Metadata = "", "0x6000", json.RawMessage(`{"to":""}`)
	b, err = json.Marshal(meta)
	require.NoError(t, err)
	require.Contains(t, string(b), `"to":null`)
	require.Contains(t, string(b), `"metadata":{"to":""}`)

	require.NoError(t, s.Update(ctx, j.ID, jobs.Queued, jobs.Fields{"from", from.Hex(), "nonce", 5}, nil))
	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, crypto.CreateAddress(from, 5).Hex(), got.ContractAddress)

	// A re-sign at another nonce: the address follows.
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Submitted, "", jobs.Fields{"nonce", 6}, nil))
	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, crypto.CreateAddress(from, 6).Hex(), got.ContractAddress)

	// Mined by a transaction that created nothing (a no-op, a reverted
	// constructor): no address.
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Submitted, jobs.Mined, "", jobs.Fields{"block_number", 9, "receipt_status", 0}, nil))
	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Empty(t, got.ContractAddress)

	// The receipt's address wins once recorded.
	receipt := common.HexToAddress("0x00000000000000000000000000000000000000cc")
	require.NoError(t, s.Update(ctx, j.ID, jobs.Mined, jobs.Fields{"contract_address", receipt.Hex(), "receipt_status", 1}, nil))
	got, err = s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, receipt.Hex(), got.ContractAddress)

	// A call keeps its "to" and never has a contract address.
	c := newJob()
	_, _, err = s.Create(ctx, c, "")
	require.NoError(t, err)
	require.NoError(t, s.Update(ctx, c.ID, jobs.Queued, jobs.Fields{"from", from.Hex(), "nonce", 7}, nil))
	got, err = s.Get(ctx, c.ID)
	require.NoError(t, err)
	require.False(t, got.Deployment())
	require.Empty(t, got.ContractAddress)
	b, _ = json.Marshal(got)
	require.Contains(t, string(b), `"to":"0x00000000000000000000000000000000000000aa"`)
}

// A deployment that failed before it was mined (at its estimate, holding a
// nonce that a no-op fills) creates nothing.
func TestFailedDeploymentHasNoAddress(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	j := newJob()
	j.To, j.Data = "", "0x6000"
	_, _, err := s.Create(ctx, j, "")
	require.NoError(t, err)
	require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Failed, "reverted at estimate",
		jobs.Fields{"from", "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "nonce", 1}, nil))
	got, err := s.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Empty(t, got.ContractAddress)
}
