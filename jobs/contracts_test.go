package jobs_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// The registry: a new name is created, the same contract again changes
// nothing, a different one under a used name is refused (and the
// registered one kept) unless replace is asked, and an unknown name is
// ErrContractNotFound. Names are kept per prefix.
func TestContractsRegistry(t *testing.T) {
	t.Parallel()
	_, rdb := setup(t)
	ctx := context.Background()
	reg := jobs.NewContracts(rdb, "test:")
	a := jobs.Contract{Name: "counter", Address: "0x00000000000000000000000000000000000000aa", ABI: json.RawMessage(`[]`), ABIHash: "0x01"}

	_, err := reg.Get(ctx, "counter")
	require.ErrorIs(t, err, jobs.ErrContractNotFound)

	got, res, err := reg.Put(ctx, a, false)
	require.NoError(t, err)
	require.Equal(t, jobs.ContractCreated, res)
	at, err := reg.At(ctx, a.Address)
	require.NoError(t, err)
	require.Equal(t, "counter", at.Name)
	require.Equal(t, a.Address, got.Address)
	first := got.RegisteredAt

	got, res, err = reg.Put(ctx, a, false)
	require.NoError(t, err)
	require.Equal(t, jobs.ContractUnchanged, res)
	require.True(t, first.Equal(got.RegisteredAt), "an unchanged registration keeps its time")

	b := a
	b.Address = "0x00000000000000000000000000000000000000bb"
	got, _, err = reg.Put(ctx, b, false)
	require.ErrorIs(t, err, jobs.ErrContractExists)
	require.Equal(t, a.Address, got.Address, "the error carries the registered contract")
	loaded, err := reg.Get(ctx, "counter")
	require.NoError(t, err)
	require.Equal(t, a.Address, loaded.Address, "a refused registration changes nothing")

	c := a
	c.ABIHash = "0x02"
	_, _, err = reg.Put(ctx, c, false)
	require.ErrorIs(t, err, jobs.ErrContractExists, "another ABI at the same address is another contract")

	got, res, err = reg.Put(ctx, b, true)
	require.NoError(t, err)
	require.Equal(t, jobs.ContractReplaced, res)
	require.Equal(t, b.Address, got.Address)
	loaded, err = reg.Get(ctx, "counter")
	require.NoError(t, err)
	require.Equal(t, b.Address, loaded.Address)
	_, err = reg.At(ctx, a.Address)
	require.ErrorIs(t, err, jobs.ErrContractNotFound, "a replaced address no longer names the contract")
	at, err = reg.At(ctx, b.Address)
	require.NoError(t, err)
	require.Equal(t, "counter", at.Name)

	_, err = jobs.NewContracts(rdb, "other:").Get(ctx, "counter")
	require.ErrorIs(t, err, jobs.ErrContractNotFound, "another deployment's prefix does not see it")
}

// TestContractsNamespaces: a name registered in one API key's namespace is
// apart from the same name in another's and in the shared namespace, and
// replacing one leaves the others as they were.
func TestContractsNamespaces(t *testing.T) {
	t.Parallel()
	_, rdb := setup(t)
	ctx := context.Background()
	reg := jobs.NewContracts(rdb, "test:")
	mk := func(owner, addr string) jobs.Contract {
		return jobs.Contract{Name: "vault", Owner: owner, Address: addr, ABI: json.RawMessage(`[]`), ABIHash: "0x01"}
	}
	const addrA, addrB, addrS = "0x00000000000000000000000000000000000000aa", "0x00000000000000000000000000000000000000bb", "0x00000000000000000000000000000000000000cc"
	for _, ct := range []jobs.Contract{mk("alice", addrA), mk("bob", addrB), mk("", addrS)} {
		_, res, err := reg.Put(ctx, ct, false)
		require.NoError(t, err)
		require.Equal(t, jobs.ContractCreated, res, "each namespace's vault is new")
	}
	_, res, err := reg.Put(ctx, mk("bob", addrS), true)
	require.NoError(t, err)
	require.Equal(t, jobs.ContractReplaced, res)

	for _, tc := range []struct{ qname, addr, owner string }{
		{"alice/vault", addrA, "alice"}, {"bob/vault", addrS, "bob"}, {"vault", addrS, ""},
	} {
		got, err := reg.Get(ctx, tc.qname)
		require.NoError(t, err)
		require.Equal(t, tc.addr, got.Address, tc.qname)
		require.Equal(t, tc.owner, got.Owner, tc.qname)
		require.Equal(t, "vault", got.Name)
	}
	require.Equal(t, "alice/vault", jobs.QualifiedName("alice", "vault"))
	require.Equal(t, "vault", jobs.QualifiedName("", "vault"))
}
