package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
)

// tallyDeploy is a POST /v1/jobs body that deploys Tally with these
// constructor args (a JSON array), plus extra fields.
func tallyDeploy(args, extra string) string {
	return `{"bytecode":"` + hexutil.Encode(contract.TallyBytecode) + `","abi":` + contract.TallyABIJSON + `,"args":` + args + extra + `}`
}

// tallyCount reads Tally.count() from the chain.
func tallyCount(t *testing.T, ec *ethclient.Client, at common.Address) uint64 {
	t.Helper()
	data, err := contract.TallyABI.Pack("count")
	require.NoError(t, err)
	out, err := ec.CallContract(context.Background(), ethereum.CallMsg{To: &at, Data: data}, nil)
	require.NoError(t, err)
	v, err := contract.TallyABI.Unpack("count", out)
	require.NoError(t, err)
	return v[0].(*big.Int).Uint64()
}

// requireDeployed requires a confirmed deployment whose contract_address
// is the one its signer and nonce give, is the receipt's, and holds code.
func requireDeployed(t *testing.T, ec *ethclient.Client, j jobs.Job) common.Address {
	t.Helper()
	require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
	require.Empty(t, j.To)
	require.NotNil(t, j.Nonce)
	ctx := context.Background()
	r, err := ec.TransactionReceipt(ctx, common.HexToHash(j.TxHash))
	require.NoError(t, err)
	require.Equal(t, types.ReceiptStatusSuccessful, r.Status)
	require.Equal(t, r.ContractAddress.Hex(), j.ContractAddress, "job %s: contract_address is the receipt's", j.ID)
	require.Equal(t, crypto.CreateAddress(common.HexToAddress(j.From), *j.Nonce), r.ContractAddress)
	code, err := ec.CodeAt(ctx, r.ContractAddress, nil)
	require.NoError(t, err)
	require.NotEmpty(t, code, "job %s: code at %s", j.ID, j.ContractAddress)
	return r.ContractAddress
}

// TestDeploymentsOnRealProcesses deploys through a relayq API and worker
// process on anvil: by data (Counter's initcode) and by bytecode + abi +
// args (Tally's constructor). Each is confirmed with the receipt's
// contract address, holding code, and a call through relayq to each then
// works. An Idempotency-Key repeat returns the same job; a constructor that
// reverts on chain fails reverted_on_chain with no address, and one that
// reverts at its estimate fails before it takes a nonce.
func TestDeploymentsOnRealProcesses(t *testing.T) {
	t.Parallel()
	c, _ := newCluster(t, clusterOptions{workers: 1, anvilArgs: []string{"--block-time", "1"}})
	ec, err := ethclient.Dial(c.anvil.URL())
	require.NoError(t, err)
	t.Cleanup(ec.Close)

	post := func(body string, headers ...string) (int, jobs.Job) {
		t.Helper()
		code, b, err := c.requestWith(http.MethodPost, "/v1/jobs", body, headers...)
		require.NoError(t, err)
		var j jobs.Job
		require.NoError(t, json.Unmarshal(b, &j), string(b))
		require.NotEmpty(t, j.ID, string(b))
		return code, j
	}
	code, byData := post(`{"data":"` + hexutil.Encode(contract.Bytecode) + `"}`)
	require.Equal(t, http.StatusAccepted, code)
	code, byABI := post(tallyDeploy(`["5","five"]`, ""), "Idempotency-Key", "tally-five")
	require.Equal(t, http.StatusAccepted, code)
	code, again := post(tallyDeploy(`[5,"five"]`, ""), "Idempotency-Key", "tally-five")
	require.Equal(t, http.StatusOK, code, "the same deployment with the same key")
	require.Equal(t, byABI.ID, again.ID)
	// gas_limit skips the estimate, so the constructor runs on chain.
	code, onChain := post(tallyDeploy(`["2000","big"]`, `,"gas_limit":3000000`))
	require.Equal(t, http.StatusAccepted, code)
	code, atEstimate := post(tallyDeploy(`["5",""]`, ""))
	require.Equal(t, http.StatusAccepted, code)

	// waitAll decodes each poll over the last, which would keep a field
	// that a later answer leaves out: read the final jobs afresh.
	get := func(id string) jobs.Job {
		t.Helper()
		code, b, err := c.request(http.MethodGet, "/v1/jobs/"+id, "")
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, string(b))
		var j jobs.Job
		require.NoError(t, json.Unmarshal(b, &j))
		return j
	}
	all := c.waitAll([]string{byData.ID, byABI.ID, onChain.ID, atEstimate.ID}, 2*time.Minute)
	for i := range all {
		all[i] = get(all[i].ID)
	}
	counter := requireDeployed(t, ec, all[0])
	tally := requireDeployed(t, ec, all[1])
	require.Equal(t, "constructor(uint256,string)", all[1].Function)
	require.Equal(t, uint64(5), tallyCount(t, ec, tally), "the constructor's args were encoded")

	failed := all[2]
	require.Equal(t, jobs.Failed, failed.Status)
	require.Equal(t, jobs.ErrCodeRevertedOnChain, failed.Error.Code, "%+v", failed.Error)
	require.Equal(t, "TooLarge(given: 2000, max: 1000)", failed.Error.RevertReason)
	require.NotNil(t, failed.ReceiptStatus)
	require.Equal(t, uint64(0), *failed.ReceiptStatus)
	require.Empty(t, failed.ContractAddress, "a reverted constructor created nothing")
	r, err := ec.TransactionReceipt(context.Background(), common.HexToHash(failed.TxHash))
	require.NoError(t, err)
	require.Equal(t, types.ReceiptStatusFailed, r.Status)

	require.Equal(t, jobs.Failed, all[3].Status)
	require.Equal(t, jobs.ErrCodeRevertedAtEstimate, all[3].Error.Code)
	require.Equal(t, "empty label", all[3].Error.RevertReason)
	require.Nil(t, all[3].Nonce, "it never took a nonce")

	// The deployed contracts are called through relayq.
	code, inc := post(fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter.Hex()))
	require.Equal(t, http.StatusAccepted, code)
	code, incTally := post(fmt.Sprintf(`{"to":%q,"abi":%s,"method":"increment"}`, tally.Hex(), contract.TallyABIJSON))
	require.Equal(t, http.StatusAccepted, code)
	c.waitAll([]string{inc.ID, incTally.ID}, time.Minute)
	for _, id := range []string{inc.ID, incTally.ID} {
		j := get(id)
		require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
		require.Empty(t, j.ContractAddress)
	}
	require.Equal(t, uint64(1), counterValue(t, c.node, counter))
	require.Equal(t, uint64(6), tallyCount(t, ec, tally))

	// Three transactions took nonces 0..2 (the estimate's failure took
	// none), then two calls: 5, and nothing pending.
	latest, pending := c.nonces()
	require.Equal(t, uint64(5), latest)
	require.Equal(t, latest, pending)
}

// A deployment whose nonce is used by someone else's transaction is
// signed again at a new nonce, and its contract_address follows: predicted
// for the first nonce, then for the new one, which is where the contract is.
func TestDeploymentReSignedAtANewNonce(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, noWorkerRun: true})
	ctx := context.Background()
	j := s.submit(tallyDeploy(`["7","seven"]`, ""))
	require.NoError(t, s.worker.Send(ctx, j.ID))
	r := s.do(http.MethodGet, "/v1/jobs/"+j.ID, "")
	sub := r.job(t)
	require.Equal(t, jobs.Submitted, sub.Status)
	require.Equal(t, uint64(0), *sub.Nonce)
	require.Equal(t, crypto.CreateAddress(s.signer, 0).Hex(), sub.ContractAddress, "predicted from the bound nonce")

	s.sendForeign(0)

	s.runWorker()
	done := s.waitFor("confirmed", s.mine, status(jobs.Confirmed), j.ID)
	require.Equal(t, uint64(1), *done.Nonce, "a fresh nonce")
	require.Equal(t, jobs.KindResign, done.Attempts[len(done.Attempts)-1].Kind)
	want := crypto.CreateAddress(s.signer, 1)
	require.Equal(t, want.Hex(), done.ContractAddress, "the address followed the new nonce")
	ec, err := ethclient.Dial(s.anvil.URL())
	require.NoError(t, err)
	t.Cleanup(ec.Close)
	require.Equal(t, uint64(7), tallyCount(t, ec, want), "the contract is where the job says")
}

// A stuck deployment is replaced with bumped fees at its nonce; the bump is
// still a creation (no recipient), and the contract is where the job says.
func TestStuckDeploymentIsBumped(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}})
	j := s.submit(tallyDeploy(`["1","one"]`, ""))
	s.waitFor("submitted", nil, status(jobs.Submitted), j.ID)
	got, _ := s.store.Get(context.Background(), j.ID)
	high := new(big.Int).Mul(parseWei(t, got.Attempts[0].GasFeeCap), big.NewInt(20))
	spike := func() {
		s.anvil.RPC(t, "anvil_setNextBlockBaseFeePerGas", hexutil.EncodeBig(high))
		s.anvil.RPC(t, "evm_mine")
	}
	done := s.waitFor("mined after a bump", spike, func(j jobs.Job) bool { return j.Status == jobs.Confirmed || j.Status == jobs.Mined }, j.ID)
	require.Equal(t, jobs.KindBump, done.Attempts[len(done.Attempts)-1].Kind, "kinds %v", kinds(done))

	ec, err := ethclient.Dial(s.anvil.URL())
	require.NoError(t, err)
	t.Cleanup(ec.Close)
	tx, _, err := ec.TransactionByHash(context.Background(), common.HexToHash(done.TxHash))
	require.NoError(t, err)
	require.Nil(t, tx.To(), "the bump is a creation too")
	require.Equal(t, crypto.CreateAddress(s.signer, *done.Nonce).Hex(), done.ContractAddress)
	require.Equal(t, uint64(1), tallyCount(t, ec, common.HexToAddress(done.ContractAddress)))
}

// A cancelled deployment is replaced by a 0-value self-send at its nonce:
// nothing is created, and the job has no contract_address.
func TestCancelledDeploymentCreatesNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{anvilArgs: []string{"--no-mining"}, noWorkerRun: true})
	ctx := context.Background()
	j := s.submit(`{"data":"` + hexutil.Encode(contract.Bytecode) + `"}`)
	require.NoError(t, s.worker.Send(ctx, j.ID))
	r := s.do(http.MethodPost, "/v1/jobs/"+j.ID+"/cancel", "")
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	predicted := r.job(t).ContractAddress
	require.Equal(t, crypto.CreateAddress(s.signer, 0).Hex(), predicted)
	s.runWorker()
	s.waitSent(s.waitFor("cancel sent", nil, func(j jobs.Job) bool { return len(j.Attempts) == 2 }, j.ID).Attempts[1].Hash)
	done := s.waitFor("cancelled", s.mine, status(jobs.Cancelled), j.ID)
	require.Equal(t, []string{jobs.KindOriginal, jobs.KindCancel}, kinds(done))
	require.Empty(t, done.ContractAddress)

	ec, err := ethclient.Dial(s.anvil.URL())
	require.NoError(t, err)
	t.Cleanup(ec.Close)
	code, err := ec.CodeAt(ctx, common.HexToAddress(predicted), nil)
	require.NoError(t, err)
	require.Empty(t, code, "the contract was never created")
}
