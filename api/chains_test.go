package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics/metricstest"
	"github.com/relayq/relayq/tasks"
)

// The two chains of a multi-chain test: their chain ids, key prefixes and
// queues. The queues are spelled out rather than named by
// tasks.ChainQueues: the API enqueues on whatever queues its Chain gives.
const (
	idA, idB         = 101, 202
	prefixA, prefixB = "t:c1:", "t:c2:"
)

var (
	queuesA = tasks.Queues{Send: "t-101", Webhooks: "t-webhooks-101"}
	queuesB = tasks.Queues{Send: "t-202", Webhooks: "t-webhooks-202"}
)

// chainNode is the test's simulated chain answering chain id id, counting
// the reads and dry runs that reach it: the two chains of a test share one
// simulated chain and tell their nodes apart by these counts. down makes
// ChainID fail, as a node that stopped answering (after New read it), and
// hang makes it wait for the caller's deadline, as a node that does not
// answer in time.
type chainNode struct {
	Node
	id    uint64
	calls atomic.Int64 // eth_call and eth_estimateGas
	down  atomic.Bool
	hang  atomic.Bool
	other atomic.Uint64 // when set, the chain id it answers instead of id
}

func (n *chainNode) ChainID(ctx context.Context) (*big.Int, error) {
	if n.hang.Load() {
		<-ctx.Done()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n.down.Load() {
		return nil, fmt.Errorf("chain %d: connection refused", n.id)
	}
	if o := n.other.Load(); o != 0 {
		return new(big.Int).SetUint64(o), nil
	}
	return new(big.Int).SetUint64(n.id), nil
}

func (n *chainNode) NonceAt(ctx context.Context, a common.Address, block *big.Int) (uint64, error) {
	if n.down.Load() {
		return 0, fmt.Errorf("chain %d: connection refused", n.id)
	}
	return n.Node.NonceAt(ctx, a, block)
}

func (n *chainNode) CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error) {
	n.calls.Add(1)
	return n.Node.CallContract(ctx, msg, block)
}

func (n *chainNode) EstimateGas(ctx context.Context, msg ethereum.CallMsg) (uint64, error) {
	n.calls.Add(1)
	return n.Node.EstimateGas(ctx, msg)
}

// twoChains is an API serving chains a (id 101) and b (id 202, 3
// confirmations by default) from one Redis, with per-chain prefixes and
// queues, as a relayq.yaml of two chains makes it.
type twoChains struct {
	*bundle
	nodeA, nodeB   *chainNode
	storeA, storeB *jobs.Store
	insp           *asynq.Inspector
}

func setupTwoChains(t *testing.T, opts ...func(*Config)) *twoChains {
	t.Helper()
	tc := &twoChains{}
	b := setup(t, append([]func(*Config){func(c *Config) {
		one := c.Chains[0]
		tc.nodeA, tc.nodeB = &chainNode{Node: one.Node, id: idA}, &chainNode{Node: one.Node, id: idB}
		c.Chains = []Chain{
			{Name: "a", Prefix: prefixA, Queues: queuesA, Node: tc.nodeA, Signers: one.Signers},
			{Name: "b", Prefix: prefixB, Queues: queuesB, Node: tc.nodeB, Signers: one.Signers, Confirmations: 3},
		}
	}}, opts...)...)
	tc.bundle = b
	tc.storeA, tc.storeB = jobs.NewStore(b.rdb, prefixA), jobs.NewStore(b.rdb, prefixB)
	tc.insp = asynq.NewInspector(asynq.RedisClientOpt{Addr: b.redis.Addr()})
	t.Cleanup(func() { tc.insp.Close() })
	return tc
}

// count is how many jobs the store of prefix holds.
func (tc *twoChains) count(prefix string) int64 {
	tc.t.Helper()
	n, err := tc.rdb.ZCard(context.Background(), prefix+"jobs:all").Result()
	require.NoError(tc.t, err)
	return n
}

// noJobs checks that no job was stored on either chain, nor under the
// API's own Prefix.
func (tc *twoChains) noJobs() {
	tc.t.Helper()
	require.Zero(tc.t, tc.count(prefixA), "jobs on chain a")
	require.Zero(tc.t, tc.count(prefixB), "jobs on chain b")
	require.Zero(tc.t, tc.jobCount(), "jobs under Config.Prefix")
}

// onQueue says whether a task on queue carries job id (see queuedIDs).
func (tc *twoChains) onQueue(queue, id string) bool {
	tc.t.Helper()
	return queuedIDs(tc.t, tc.insp, queue)[id]
}

// listIDs lists the ids GET path answers.
func (tc *twoChains) listIDs(path string) []string {
	tc.t.Helper()
	r := tc.do(http.MethodGet, path, "")
	require.Equal(tc.t, http.StatusOK, r.Status, string(r.Body))
	var l struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	require.NoError(tc.t, json.Unmarshal(r.Body, &l))
	out := []string{}
	for _, j := range l.Jobs {
		out = append(out, j.ID)
	}
	sort.Strings(out)
	return out
}

// requireChainError checks a 400 about the chain field.
func requireChainError(t *testing.T, r response, code, field string) {
	t.Helper()
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	e := r.err(t)
	require.Equal(t, code, e.Code, e.Message)
	require.Equal(t, field, e.Field, e.Message)
}

// A job names its chain by name or by chain id: it is stored under that
// chain's prefix with its chain id and confirmations, and its send task is
// on that chain's queue, never the other's; reads by id and cancels find
// each job on its chain, and lists show one chain's jobs.
func TestChainsJobGoesToItsChain(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	ctx := context.Background()
	qa, qb := queuesA.Send, queuesB.Send

	ra := tc.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","chain":"a"}`)
	require.Equal(t, http.StatusAccepted, ra.Status, string(ra.Body))
	ja := ra.job(t)
	require.EqualValues(t, idA, ja.ChainID)
	require.EqualValues(t, 1, ja.Confirmations)

	rb := tc.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","chain":"202"}`) // by chain id
	require.Equal(t, http.StatusAccepted, rb.Status, string(rb.Body))
	jb := rb.job(t)
	require.EqualValues(t, idB, jb.ChainID)
	require.EqualValues(t, 3, jb.Confirmations, "chain b's default confirmations")

	// Stored on its own chain only.
	got, err := tc.storeA.Get(ctx, ja.ID)
	require.NoError(t, err)
	require.EqualValues(t, idA, got.ChainID)
	_, err = tc.storeB.Get(ctx, ja.ID)
	require.ErrorIs(t, err, jobs.ErrNotFound)
	got, err = tc.storeB.Get(ctx, jb.ID)
	require.NoError(t, err)
	require.EqualValues(t, idB, got.ChainID)
	_, err = tc.storeA.Get(ctx, jb.ID)
	require.ErrorIs(t, err, jobs.ErrNotFound)
	require.Zero(t, tc.jobCount(), "nothing under Config.Prefix")

	// Enqueued on its own chain's queue only (both queues exist now).
	require.True(t, tc.onQueue(qa, ja.ID), "a's job on a's queue")
	require.False(t, tc.onQueue(qb, ja.ID), "a's job on b's queue")
	require.True(t, tc.onQueue(qb, jb.ID), "b's job on b's queue")
	require.False(t, tc.onQueue(qa, jb.ID), "b's job on a's queue")
	require.False(t, tc.onQueue(tasks.DefaultQueues.Send, ja.ID), "a's job on the default queue")

	// GET /v1/jobs/{id} finds each job on its chain.
	for _, j := range []jobs.Job{ja, jb} {
		r := tc.do(http.MethodGet, "/v1/jobs/"+j.ID, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		require.Equal(t, j.ID, r.job(t).ID)
		require.Equal(t, j.ChainID, r.job(t).ChainID)
	}
	r := tc.do(http.MethodGet, "/v1/jobs/01939c7e-0000-7000-8000-000000000000", "")
	require.Equal(t, http.StatusNotFound, r.Status, "a job on no chain")

	// Lists show the named chain's jobs only.
	require.Equal(t, []string{jb.ID}, tc.listIDs("/v1/jobs?chain=b"))
	require.Equal(t, []string{jb.ID}, tc.listIDs("/v1/jobs?chain=202"))
	require.Equal(t, []string{ja.ID}, tc.listIDs("/v1/jobs?chain=a&status=queued"))
	requireChainError(t, tc.do(http.MethodGet, "/v1/jobs", ""), "chain_required", "chain")
	requireChainError(t, tc.do(http.MethodGet, "/v1/jobs?chain=c", ""), "unknown_chain", "chain")

	// Cancel finds each job on its chain and cancels it there.
	for _, c := range []struct {
		j     jobs.Job
		store *jobs.Store
	}{{ja, tc.storeA}, {jb, tc.storeB}} {
		r := tc.do(http.MethodPost, "/v1/jobs/"+c.j.ID+"/cancel", "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		require.Equal(t, jobs.Cancelled, r.job(t).Status)
		got, err := c.store.Get(ctx, c.j.ID)
		require.NoError(t, err)
		require.Equal(t, jobs.Cancelled, got.Status)
	}
	require.Empty(t, tc.listIDs("/v1/jobs?chain=b&status=queued"))
	require.Equal(t, []string{jb.ID}, tc.listIDs("/v1/jobs?chain=b&status=cancelled"))
}

// With several chains every route that needs one refuses a request that
// names none (chain_required), names another (unknown_chain) or gives a
// non-string (invalid_type), always on the field chain, and stores nothing.
func TestChainsSelectorErrors(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	job := `"to":"` + testCounter + `"`
	bodies := map[string]string{
		"/v1/jobs":       `{` + job + `%s}`,
		"/v1/jobs/batch": `{"jobs":[{` + job + `}]%s}`,
		"/v1/calls":      `{` + job + `,"data":"0x"%s}`,
		"/v1/contracts":  `{"name":"ctr","address":"` + testCounter + `","abi":[]%s}`,
	}
	for path, tmpl := range bodies {
		for _, c := range []struct{ chain, code string }{
			{"", "chain_required"},
			{`,"chain":null`, "chain_required"},
			{`,"chain":""`, "chain_required"},
			{`,"chain":"c"`, "unknown_chain"},
			{`,"chain":"A"`, "unknown_chain"}, // names are exact
			{`,"chain":"0x65"`, "unknown_chain"},
			{`,"chain":"303"`, "unknown_chain"},
			{`,"chain":101`, "invalid_type"},
			{`,"chain":["a"]`, "invalid_type"},
		} {
			t.Run(path+c.chain, func(t *testing.T) {
				requireChainError(t, tc.do(http.MethodPost, path, fmt.Sprintf(tmpl, c.chain)), c.code, "chain")
			})
		}
	}
	for _, path := range []string{"/v1/jobs", "/v1/contracts/ctr", "/v1/signers/" + tc.signer.Hex() + "/reconcile"} {
		method := http.MethodGet
		if strings.HasSuffix(path, "/reconcile") {
			method = http.MethodPost
		}
		requireChainError(t, tc.do(method, path, ""), "chain_required", "chain")
		requireChainError(t, tc.do(method, path+"?chain=", ""), "chain_required", "chain")
		requireChainError(t, tc.do(method, path+"?chain=c", ""), "unknown_chain", "chain")
		requireChainError(t, tc.do(method, path+"?chain=1337", ""), "unknown_chain", "chain") // the simulated chain's own id is neither's
	}
	requireChainError(t, tc.do(http.MethodGet, "/v1/signers?chain=c", ""), "unknown_chain", "chain")
	tc.noJobs()
	n, err := tc.rdb.Keys(context.Background(), "t:c*:contract:*").Result()
	require.NoError(t, err)
	require.Empty(t, n, "no contract registered")
	require.Zero(t, tc.nodeA.calls.Load()+tc.nodeB.calls.Load(), "no read reached a node")
}

// A contract registered on one chain is that chain's: the other chain
// does not find it, may register another under the same name, and its jobs
// and reads cannot name it.
func TestChainsContractsArePerChain(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	reg := func(chain, abi string) response {
		return tc.do(http.MethodPost, "/v1/contracts", fmt.Sprintf(`{"name":"ctr","address":%q,"abi":%s,"chain":%q}`, testCounter, abi, chain))
	}
	r := reg("a", contract.ABIJSON)
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	require.Equal(t, "/v1/contracts/ctr?chain=a", r.Header.Get("Location"), "the Location names the chain it is on")

	r = tc.do(http.MethodGet, r.Header.Get("Location"), "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = tc.do(http.MethodGet, "/v1/contracts/ctr?chain=b", "")
	require.Equal(t, http.StatusNotFound, r.Status, string(r.Body))
	require.Equal(t, CodeNotFound, r.err(t).Code)

	r = tc.do(http.MethodPost, "/v1/jobs", `{"contract":"ctr","method":"add","args":[1],"chain":"b"}`)
	requireChainError(t, r, "unknown_contract", "contract")
	r = tc.do(http.MethodPost, "/v1/calls", `{"contract":"ctr","method":"count","chain":"b"}`)
	requireChainError(t, r, "unknown_contract", "contract")
	r = tc.do(http.MethodPost, "/v1/jobs", `{"contract":"ctr","method":"add","args":[1],"chain":"a"}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.EqualValues(t, idA, r.job(t).ChainID)

	// Another contract under the same name on b is new there (201, not
	// 409), and a's stays as it was.
	r = reg("202", `[]`)
	require.Equal(t, http.StatusCreated, r.Status, string(r.Body))
	var ca, cb jobs.Contract
	r = tc.do(http.MethodGet, "/v1/contracts/ctr?chain=101", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.NoError(t, json.Unmarshal(r.Body, &ca))
	r = tc.do(http.MethodGet, "/v1/contracts/ctr?chain=b", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.NoError(t, json.Unmarshal(r.Body, &cb))
	require.NotEqual(t, ca.ABIHash, cb.ABIHash)
	require.JSONEq(t, `[]`, string(cb.ABI))
}

// A batch is on one chain: the top-level chain routes it, an item may
// repeat it (by name or id) but an item naming the other chain refuses the
// batch on that item's field, and chain in items only is not enough.
func TestChainsBatch(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	item := func(chain string) string {
		if chain == "" {
			return `{"to":"` + testCounter + `"}`
		}
		return `{"to":"` + testCounter + `","chain":"` + chain + `"}`
	}
	r := tc.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"a","jobs":[`+item("b")+`]}`)
	requireChainError(t, r, "unknown_chain", "jobs[0].chain")
	require.Contains(t, r.err(t).Message, "jobs[0]: ")
	r = tc.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"a","jobs":[`+item("a")+`,`+item("")+`,`+item("202")+`]}`)
	requireChainError(t, r, "unknown_chain", "jobs[2].chain")
	r = tc.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"a","jobs":[`+item("x")+`]}`)
	requireChainError(t, r, "unknown_chain", "jobs[0].chain")
	r = tc.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[`+item("a")+`]}`)
	requireChainError(t, r, "chain_required", "chain")
	r = tc.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"b","jobs":[{"to":"`+testCounter+`","chain":202}]}`)
	requireChainError(t, r, "invalid_type", "jobs[0].chain")
	tc.noJobs()

	r = tc.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"b","jobs":[`+item("b")+`,`+item("")+`,`+item("202")+`]}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	a := r.batch(t)
	require.Len(t, a.Jobs, 3)
	for _, it := range a.Jobs {
		j, err := tc.storeB.Get(context.Background(), it.ID)
		require.NoError(t, err)
		require.EqualValues(t, idB, j.ChainID)
		require.EqualValues(t, 3, j.Confirmations)
		require.True(t, tc.onQueue(queuesB.Send, it.ID))
	}
	require.EqualValues(t, 3, tc.count(prefixB))
	require.Zero(t, tc.count(prefixA))
}

// An Idempotency-Key is per chain: the same key and body on the other
// chain is another job there, while on the same chain it replays (200) or
// conflicts (409) as with one chain. The same holds for a batch's key.
func TestChainsIdempotencyKeyIsPerChain(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	body := func(chain string) string { return `{"to":"` + testCounter + `","value":"1","chain":"` + chain + `"}` }
	ra := tc.do(http.MethodPost, "/v1/jobs", body("a"), "Idempotency-Key", "k")
	require.Equal(t, http.StatusAccepted, ra.Status, string(ra.Body))
	rb := tc.do(http.MethodPost, "/v1/jobs", body("b"), "Idempotency-Key", "k")
	require.Equal(t, http.StatusAccepted, rb.Status, "the same key on another chain is a new job: %s", rb.Body)
	require.NotEqual(t, ra.job(t).ID, rb.job(t).ID)
	require.EqualValues(t, idB, rb.job(t).ChainID)

	again := tc.do(http.MethodPost, "/v1/jobs", body("101"), "Idempotency-Key", "k")
	require.Equal(t, http.StatusOK, again.Status, string(again.Body))
	require.Equal(t, ra.job(t).ID, again.job(t).ID)
	again = tc.do(http.MethodPost, "/v1/jobs", body("b"), "Idempotency-Key", "k")
	require.Equal(t, http.StatusOK, again.Status, string(again.Body))
	require.Equal(t, rb.job(t).ID, again.job(t).ID)
	conflict := tc.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","value":"2","chain":"b"}`, "Idempotency-Key", "k")
	require.Equal(t, http.StatusConflict, conflict.Status, string(conflict.Body))
	require.EqualValues(t, 1, tc.count(prefixA))
	require.EqualValues(t, 1, tc.count(prefixB))

	batch := func(chain string) string { return `{"chain":"` + chain + `","jobs":[{"to":"` + testCounter + `"}]}` }
	ba := tc.do(http.MethodPost, "/v1/jobs/batch", batch("a"), "Idempotency-Key", "kb")
	require.Equal(t, http.StatusAccepted, ba.Status, string(ba.Body))
	bb := tc.do(http.MethodPost, "/v1/jobs/batch", batch("b"), "Idempotency-Key", "kb")
	require.Equal(t, http.StatusAccepted, bb.Status, string(bb.Body))
	require.NotEqual(t, ba.batch(t).Jobs[0].ID, bb.batch(t).Jobs[0].ID)
	bb2 := tc.do(http.MethodPost, "/v1/jobs/batch", batch("b"), "Idempotency-Key", "kb")
	require.Equal(t, http.StatusOK, bb2.Status, string(bb2.Body))
	require.Equal(t, bb.batch(t).Jobs[0].ID, bb2.batch(t).Jobs[0].ID)
}

// Reads and dry runs go to the node of the request's chain.
func TestChainsReadsGoToTheirNode(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	r := tc.do(http.MethodPost, "/v1/calls", `{"to":"`+testCounter+`","data":"0x","chain":"b"}`)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Zero(t, tc.nodeA.calls.Load())
	require.EqualValues(t, 1, tc.nodeB.calls.Load())

	r = tc.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","simulate":true,"chain":"a"}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))
	require.EqualValues(t, 1, tc.nodeA.calls.Load())
	require.EqualValues(t, 1, tc.nodeB.calls.Load())
}

// GET /v1/signers lists every chain's signers, or one chain's with
// ?chain=; reconcile works on the named chain.
func TestChainsSigners(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	list := func(path string) []signerView {
		t.Helper()
		r := tc.do(http.MethodGet, path, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		var l struct {
			Signers []signerView `json:"signers"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &l))
		return l.Signers
	}
	all := list("/v1/signers")
	require.Len(t, all, 2, "the one key, on each chain")
	require.EqualValues(t, idA, all[0].ChainID)
	require.EqualValues(t, idB, all[1].ChainID)
	require.Equal(t, tc.signer.Hex(), all[0].Address)
	require.Equal(t, tc.signer.Hex(), all[1].Address)
	onB := list("/v1/signers?chain=b")
	require.Len(t, onB, 1)
	require.EqualValues(t, idB, onB[0].ChainID)

	r := tc.do(http.MethodPost, "/v1/signers/"+tc.signer.Hex()+"/reconcile?chain=202", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var v signerView
	require.NoError(t, json.Unmarshal(r.Body, &v))
	require.EqualValues(t, idB, v.ChainID)
	require.NotNil(t, v.Next, "reconcile set b's next nonce")
	onA := list("/v1/signers?chain=a")
	require.Len(t, onA, 1)
	require.Nil(t, onA[0].Next, "a's nonce was not touched")
}

// /readyz reports each chain's node as node_<name>; one node down is still
// ready (200) with that chain's error and the other's ok; every node down
// is 503.
func TestChainsReadyz(t *testing.T) {
	t.Parallel()
	// The probes are cached for a second of this clock: each step moves it.
	clk := &probeClock{now: time.Unix(1_700_000_000, 0)}
	tc := setupTwoChains(t, func(c *Config) { c.ProbeClock = clk.Now })
	s := loadSpec(t)
	o := s.op(t, http.MethodGet, "/readyz")
	r := tc.do(http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.JSONEq(t, `{"redis":"ok","node_a":"ok","node_b":"ok"}`, string(r.Body))
	ptr, ok := s.response(t, o, r.Status, "application/json")
	require.True(t, ok)
	s.validate(t, ptr, r.Body)

	tc.nodeB.down.Store(true)
	clk.Advance(time.Second)
	r = tc.do(http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var got map[string]string
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Equal(t, "ok", got["node_a"])
	require.Contains(t, got["node_b"], "connection refused")
	require.NotContains(t, got, "node")
	ptr, ok = s.response(t, o, r.Status, "application/json")
	require.True(t, ok)
	s.validate(t, ptr, r.Body)

	// A node that answers for another chain is not the chain's node.
	tc.nodeB.down.Store(false)
	tc.nodeB.other.Store(999)
	clk.Advance(time.Second)
	r = tc.do(http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Equal(t, fmt.Sprintf("the node serves chain 999, not %d", idB), got["node_b"])
	tc.nodeB.down.Store(true)

	tc.nodeA.down.Store(true)
	clk.Advance(time.Second)
	r = tc.do(http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Contains(t, got["node_a"], "connection refused")
	require.Contains(t, got["node_b"], "connection refused")
	ptr, ok = s.response(t, o, r.Status, "application/json")
	require.True(t, ok)
	s.validate(t, ptr, r.Body)
}

// A node that does not answer in time shows in /readyz with its own
// chain's error only: each node has the whole probe deadline, so a slow one
// does not leave the others none.
func TestChainsReadyzSlowNode(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	tc.nodeA.hang.Store(true)
	r := tc.do(http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var got map[string]string
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Contains(t, got["node_a"], "deadline exceeded")
	require.Equal(t, "ok", got["node_b"], "b's node answers")
	require.Equal(t, "ok", got["redis"])
}

// With one chain (no Config.Chains) chain may be left out, and when given
// must be the chain's name ("default") or its chain id.
func TestOneChainSelector(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id, err := b.chain.Client().ChainID(context.Background())
	require.NoError(t, err)
	ids := id.String()
	for _, chain := range []string{"", `,"chain":"default"`, `,"chain":"` + ids + `"`, `,"chain":null`} {
		r := b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`"`+chain+`}`)
		require.Equal(t, http.StatusAccepted, r.Status, "%s: %s", chain, r.Body)
		require.Equal(t, id.Uint64(), r.job(t).ChainID)
	}
	requireChainError(t, b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","chain":"x"}`), "unknown_chain", "chain")
	requireChainError(t, b.do(http.MethodPost, "/v1/jobs", `{"to":"`+testCounter+`","chain":1337}`), "invalid_type", "chain")
	requireChainError(t, b.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"x","jobs":[{"to":"`+testCounter+`"}]}`), "unknown_chain", "chain")
	requireChainError(t, b.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"default","jobs":[{"to":"`+testCounter+`","chain":"x"}]}`), "unknown_chain", "jobs[0].chain")
	requireChainError(t, b.do(http.MethodPost, "/v1/calls", `{"to":"`+testCounter+`","data":"0x","chain":"x"}`), "unknown_chain", "chain")
	requireChainError(t, b.do(http.MethodPost, "/v1/contracts", `{"name":"c","address":"`+testCounter+`","abi":[],"chain":"x"}`), "unknown_chain", "chain")
	require.EqualValues(t, 4, b.jobCount())

	for _, path := range []string{"/v1/jobs", "/v1/contracts/c", "/v1/signers"} {
		requireChainError(t, b.do(http.MethodGet, path+"?chain=x", ""), "unknown_chain", "chain")
	}
	requireChainError(t, b.do(http.MethodPost, "/v1/signers/"+b.signer.Hex()+"/reconcile?chain=x", ""), "unknown_chain", "chain")
	for _, q := range []string{"", "?chain=default", "?chain=" + url.QueryEscape(ids)} {
		r := b.do(http.MethodGet, "/v1/jobs"+q, "")
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		require.Contains(t, string(r.Body), `"chain_id":`+ids)
	}
	r := b.do(http.MethodGet, "/readyz", "")
	require.JSONEq(t, `{"redis":"ok","node":"ok"}`, string(r.Body))
}

// Two chains may not share a name or a chain id, and a name may not be
// another chain's id: a number must always mean one chain. An API of no
// chain is refused too: there is no other place a chain is described.
func TestChainsMustBeDistinct(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for name, chains := range map[string][]Chain{
		"same name":            {{Name: "a", Node: &chainNode{Node: b.cfg.Chains[0].Node, id: 1}}, {Name: "a", Node: &chainNode{Node: b.cfg.Chains[0].Node, id: 2}}},
		"same id":              {{Name: "a", Node: &chainNode{Node: b.cfg.Chains[0].Node, id: 1}}, {Name: "b", Node: &chainNode{Node: b.cfg.Chains[0].Node, id: 1}}},
		"name is another's id": {{Name: "a", Node: &chainNode{Node: b.cfg.Chains[0].Node, id: 1}}, {Name: "1", Node: &chainNode{Node: b.cfg.Chains[0].Node, id: 2}}},
		"empty name":           {{Name: "", Node: &chainNode{Node: b.cfg.Chains[0].Node, id: 1}}},
		"no chains":            nil,
	} {
		cfg := b.cfg
		cfg.Chains = chains
		_, err := New(ctx, cfg)
		require.Error(t, err, name)
	}
}

// The document describes what a server of several chains answers: 400
// chain_required on every route that needs a chain, signers of every
// chain, and jobs of one chain fit the documented statuses and schemas.
func TestOpenAPIChainsMatch(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	s := loadSpec(t)
	check := s.checker(t, tc.do)
	job := `{"to":"` + testCounter + `"}`
	for _, c := range []struct{ method, template, path, body string }{
		{"POST", "/v1/jobs", "/v1/jobs", job},
		{"POST", "/v1/jobs/batch", "/v1/jobs/batch", `{"jobs":[` + job + `]}`},
		{"POST", "/v1/calls", "/v1/calls", `{"to":"` + testCounter + `","data":"0x"}`},
		{"POST", "/v1/contracts", "/v1/contracts", `{"name":"c","address":"` + testCounter + `","abi":[]}`},
		{"GET", "/v1/jobs", "/v1/jobs", ""},
		{"GET", "/v1/contracts/{name}", "/v1/contracts/c", ""},
		{"POST", "/v1/signers/{address}/reconcile", "/v1/signers/" + tc.signer.Hex() + "/reconcile", ""},
		{"GET", "/v1/signers", "/v1/signers?chain=c", ""},
	} {
		e := check(c.method, c.template, c.path, c.body, 400).err(t)
		require.Contains(t, []string{"chain_required", "unknown_chain"}, e.Code)
	}
	check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`","chain":"c"}`, 400)
	check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`","chain":5}`, 400)
	created := check("POST", "/v1/jobs", "/v1/jobs", `{"to":"`+testCounter+`","chain":"a"}`, 202).job(t)
	check("POST", "/v1/jobs/batch", "/v1/jobs/batch", `{"chain":"b","jobs":[`+job+`]}`, 202)
	check("POST", "/v1/calls", "/v1/calls", `{"to":"`+testCounter+`","data":"0x","chain":"b"}`, 200)
	check("POST", "/v1/contracts", "/v1/contracts", `{"name":"c","address":"`+testCounter+`","abi":[],"chain":"b"}`, 201)
	check("GET", "/v1/contracts/{name}", "/v1/contracts/c?chain=b", "", 200)
	check("GET", "/v1/contracts/{name}", "/v1/contracts/c?chain=a", "", 404)
	check("GET", "/v1/jobs", "/v1/jobs?chain=a", "", 200)
	check("GET", "/v1/jobs/{id}", "/v1/jobs/"+created.ID, "", 200)
	check("POST", "/v1/jobs/{id}/cancel", "/v1/jobs/"+created.ID+"/cancel", "", 200)
	check("GET", "/v1/signers", "/v1/signers", "", 200)
	check("GET", "/v1/signers", "/v1/signers?chain=a", "", 200)
	check("POST", "/v1/signers/{address}/reconcile", "/v1/signers/"+tc.signer.Hex()+"/reconcile?chain=a", "", 200)

	// The document lists the codes and documents the selector everywhere
	// the server reads it.
	codes, _ := s.at("/components/schemas/Error/properties/error/properties/code/description")
	for _, code := range []string{"chain_required", "unknown_chain", "invalid_type"} {
		require.Contains(t, codes, code)
	}
	for _, schema := range []string{"JobRequest", "BatchRequest", "CallRequest", "ContractRequest"} {
		_, ok := s.at("/components/schemas/" + schema + "/properties/chain")
		require.True(t, ok, "%s documents chain", schema)
	}
	for _, o := range []struct{ method, path string }{
		{"GET", "/v1/jobs"}, {"GET", "/v1/signers"}, {"POST", "/v1/signers/{address}/reconcile"}, {"GET", "/v1/contracts/{name}"},
	} {
		m, _ := s.resolve(t, s.op(t, o.method, o.path).ptr)
		found := false
		for _, p := range m["parameters"].([]any) {
			p := p.(map[string]any)
			if ref, ok := p["$ref"].(string); ok {
				p, _ = s.resolve(t, ref[1:])
			}
			found = found || p["name"] == "chain" && p["in"] == "query"
		}
		require.True(t, found, "%s %s documents ?chain=", o.method, o.path)
	}
}

// A job request refused while its chain is picked is counted as refused,
// with its code, as one refused by the job's own checks is; so is a batch.
// (With several chains byBody reads and checks the body before the handler,
// whose deferred count never ran for these.)
func TestChainsRefusalsAreCounted(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	job := `"to":"` + testCounter + `"`
	requireChainError(t, tc.do(http.MethodPost, "/v1/jobs", `{`+job+`}`), "chain_required", "chain")
	requireChainError(t, tc.do(http.MethodPost, "/v1/jobs", `{`+job+`,"chain":"c"}`), "unknown_chain", "chain")
	requireChainError(t, tc.do(http.MethodPost, "/v1/jobs/batch", `{"jobs":[{`+job+`}]}`), "chain_required", "chain")
	requireChainError(t, tc.do(http.MethodPost, "/v1/jobs/batch", `{"chain":"a","jobs":[{`+job+`,"chain":"b"}]}`), "unknown_chain", "jobs[0].chain")
	r := tc.do(http.MethodPost, "/v1/jobs", `{`+job+`,"chain":"a"}`, "Content-Type", "text/plain")
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	r = tc.do(http.MethodPost, "/v1/jobs", `{`+job+`,"chain":"a"}`)
	require.Equal(t, http.StatusAccepted, r.Status, string(r.Body))

	s := metricstest.Gather(t, tc.cfg.Metrics.Registry())
	require.Equal(t, 2.0, s.Value("relayq_jobs_rejected_total", "code", "chain_required"))
	require.Equal(t, 2.0, s.Value("relayq_jobs_rejected_total", "code", "unknown_chain"))
	require.Equal(t, 1.0, s.Value("relayq_jobs_rejected_total", "code", "unsupported_media_type"))
	require.Equal(t, 1.0, s.Value("relayq_jobs_accepted_total", "outcome", "created"))
}

// Listing every chain's signers while one chain's node is down answers the
// others' and names the one that could not be read; a chain given twice in
// the query, or in the query of a route that takes it in the body, is
// refused and changes nothing.
func TestChainsOneNodeDownAndAmbiguousSelectors(t *testing.T) {
	t.Parallel()
	tc := setupTwoChains(t)
	tc.nodeB.down.Store(true)
	r := tc.do(http.MethodGet, "/v1/signers", "")
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var list struct {
		Signers     []signerView      `json:"signers"`
		Unavailable map[string]string `json:"unavailable"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &list))
	require.Len(t, list.Signers, 1)
	require.EqualValues(t, idA, list.Signers[0].ChainID)
	require.Contains(t, list.Unavailable["b"], "connection refused")
	s := loadSpec(t)
	ptr, ok := s.response(t, s.op(t, http.MethodGet, "/v1/signers"), r.Status, "application/json")
	require.True(t, ok)
	s.validate(t, ptr, r.Body)
	tc.nodeA.down.Store(true)
	r = tc.do(http.MethodGet, "/v1/signers", "")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, string(r.Body))
	tc.nodeA.down.Store(false)

	requireChainError(t, tc.do(http.MethodGet, "/v1/jobs?chain=a&chain=b", ""), "conflicting_fields", "chain")
	requireChainError(t, tc.do(http.MethodGet, "/v1/signers?chain=a&chain=b", ""), "conflicting_fields", "chain")
	requireChainError(t, tc.do(http.MethodPost, "/v1/jobs?chain=b", `{"to":"`+testCounter+`","chain":"a"}`), "unknown_parameter", "chain")
	requireChainError(t, tc.do(http.MethodPost, "/v1/jobs/batch?chain=b", `{"chain":"a","jobs":[{"to":"`+testCounter+`"}]}`), "unknown_parameter", "chain")
	r = tc.do(http.MethodGet, "/v1/jobs?chain=a", "")
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, `{"jobs":[],"next_cursor":""}`, string(r.Body), "nothing was stored")
}
