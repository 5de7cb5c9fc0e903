package txmgr_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/signer"
	"github.com/relayq/relayq/txmgr"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// multiSetup is one anvil chain reached through two proxies: two endpoints
// of the same chain, primary first, behind a Multi.
type multiSetup struct {
	node             *testenv.AnvilNode
	primary, second  *testenv.RPCProxy
	m                *txmgr.Multi
	clock            *fakeClock
	primaryRPC, sRPC *txmgr.RPC
}

// setupMulti starts anvil (or reuses node) and a Multi over two proxies in
// front of it. wrapPrimary, when set, wraps the primary's backend.
func setupMulti(t *testing.T, node *testenv.AnvilNode, timeout time.Duration, wrapPrimary func(txmgr.Backend) txmgr.Backend) *multiSetup {
	t.Helper()
	if node == nil {
		node = testenv.Anvil(t, "--quiet")
	}
	s := &multiSetup{node: node, clock: &fakeClock{now: time.Unix(1_700_000_000, 0)}}
	s.primary = testenv.NewRPCProxy(t, node.URL())
	s.second = testenv.NewRPCProxy(t, node.URL())
	ctx := context.Background()
	var err error
	s.primaryRPC, err = txmgr.Dial(ctx, s.primary.URL(), timeout)
	require.NoError(t, err)
	s.sRPC, err = txmgr.Dial(ctx, s.second.URL(), timeout)
	require.NoError(t, err)
	var primary txmgr.Backend = s.primaryRPC
	if wrapPrimary != nil {
		primary = wrapPrimary(primary)
		t.Cleanup(s.primaryRPC.Close)
	}
	s.m = txmgr.NewMulti([]txmgr.Endpoint{{Name: "primary", Backend: primary}, {Name: "secondary", Backend: s.sRPC}},
		txmgr.MultiConfig{FailThreshold: 3, Cooldown: 5 * time.Second, MaxHeadLag: 3, HeadRefresh: time.Second, Now: s.clock.Now})
	t.Cleanup(s.m.Close)
	return s
}

// health returns the named endpoint's health.
func (s *multiSetup) health(i int) txmgr.EndpointHealth { return s.m.Health()[i] }

// With the primary down, reads are answered by the secondary; after three
// faults in a row the primary's breaker opens and it is not tried; after
// the cool-down one probe goes to it, and once it answers it is used again.
func TestMultiFailsOverAndBreaksCircuit(t *testing.T) {
	t.Parallel()
	s := setupMulti(t, nil, 2*time.Second, nil)
	ctx := context.Background()

	id, err := s.m.ChainID(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(testenv.AnvilChainID), id.Int64())
	require.Equal(t, 1, s.primary.Calls("eth_chainId"))
	require.Equal(t, 0, s.second.Calls("eth_chainId"))

	s.primary.Down()
	for i := 1; i <= 3; i++ {
		_, err := s.m.ChainID(ctx)
		require.NoError(t, err, "call %d falls over to the secondary", i)
		require.Equal(t, i, s.second.Calls("eth_chainId"))
		require.Equal(t, i, s.health(0).ConsecutiveFaults)
	}
	require.Equal(t, "open", s.health(0).State)
	require.NotEmpty(t, s.health(0).LastError)
	callsBefore := s.health(0).Calls
	_, err = s.m.ChainID(ctx)
	require.NoError(t, err)
	require.Equal(t, callsBefore, s.health(0).Calls, "an open breaker keeps calls away")

	// Cool-down over, primary still down: the probe fails and re-opens it.
	s.clock.Advance(5 * time.Second)
	require.Equal(t, "half-open", s.health(0).State)
	_, err = s.m.ChainID(ctx)
	require.NoError(t, err)
	require.Equal(t, callsBefore+1, s.health(0).Calls, "one probe")
	require.Equal(t, "open", s.health(0).State)

	// Primary back: after the cool-down the probe succeeds and closes it.
	s.primary.Up()
	s.clock.Advance(5 * time.Second)
	secondBefore := s.second.Calls("eth_chainId")
	_, err = s.m.ChainID(ctx)
	require.NoError(t, err)
	require.Equal(t, "closed", s.health(0).State)
	require.Equal(t, 0, s.health(0).ConsecutiveFaults)
	require.Equal(t, 2, s.primary.Calls("eth_chainId"))
	_, err = s.m.ChainID(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, s.primary.Calls("eth_chainId"))
	require.Equal(t, secondBefore, s.second.Calls("eth_chainId"), "the primary has the traffic back")
}

// Every kind of fault on the primary sends the read to the secondary.
func TestMultiFailsOverOnFaults(t *testing.T) {
	t.Parallel()
	node := testenv.Anvil(t, "--quiet")
	for _, tc := range []struct {
		name  string
		fault testenv.Fault
	}{
		{"http 503", testenv.Fault{Status: 503}},
		{"http 429", testenv.Fault{Status: 429}},
		{"timeout", testenv.Fault{Delay: 3 * time.Second}},
		{"connection dropped", testenv.Fault{DropAfterForward: true}},
		{"rate limit answer", testenv.Fault{RPCError: &testenv.RPCErrorSpec{Code: -32005, Message: "rate limit exceeded"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := setupMulti(t, node, 500*time.Millisecond, nil)
			s.primary.Inject(tc.fault)
			bal, err := s.m.BalanceAt(context.Background(), common.HexToAddress("0xbeef"), nil)
			require.NoError(t, err)
			require.NotNil(t, bal)
			require.Equal(t, 1, s.primary.Calls("eth_getBalance"))
			require.Equal(t, 1, s.second.Calls("eth_getBalance"))
			require.Equal(t, 1, s.health(0).ConsecutiveFaults)
		})
	}
}

// A node's answer is not a fault: a revert or a nonce error comes back as
// it is, the secondary is not asked and the primary stays healthy.
func TestMultiReturnsNodeAnswers(t *testing.T) {
	t.Parallel()
	s := setupMulti(t, nil, 2*time.Second, nil)
	ctx := context.Background()
	s.primary.Inject(testenv.Fault{Methods: []string{"eth_call"}, RPCError: &testenv.RPCErrorSpec{
		Code: 3, Message: "execution reverted: no", Data: "0x08c379a00000000000000000000000000000000000000000000000000000000000000020000000000000000000000000000000000000000000000000000000000000000026e6f000000000000000000000000000000000000000000000000000000000000",
	}})
	s.primary.Inject(testenv.Fault{Methods: []string{"eth_estimateGas"}, RPCError: &testenv.RPCErrorSpec{Message: "nonce too low: next nonce 5, tx nonce 3"}})
	to := common.HexToAddress("0xbeef")

	_, err := s.m.CallContract(ctx, ethereum.CallMsg{To: &to}, nil)
	require.Error(t, err)
	require.True(t, txmgr.IsRevert(err), "%v", err)
	_, err = s.m.EstimateGas(ctx, ethereum.CallMsg{To: &to})
	require.Equal(t, txmgr.ClassNonceTooLow, txmgr.Classify(err), "%v", err)

	require.Equal(t, 0, s.second.Calls("eth_call"))
	require.Equal(t, 0, s.second.Calls("eth_estimateGas"))
	h := s.health(0)
	require.Equal(t, "closed", h.State)
	require.Zero(t, h.Faults)
	require.Equal(t, uint64(2), h.Calls)
}

// A broadcast reaches both endpoints; it succeeds while the primary is
// down; with no acceptance the most telling answer is returned.
func TestMultiBroadcastsToAll(t *testing.T) {
	t.Parallel()
	s := setupMulti(t, nil, 2*time.Second, nil)
	ctx := context.Background()
	chainID := big.NewInt(testenv.AnvilChainID)
	sg := signer.NewKey(testenv.AnvilKeys()[4], chainID)
	fees, err := txmgr.NewFeeOracle(s.sRPC, big.NewInt(1e12), 0).Fees(ctx)
	require.NoError(t, err)
	sign := func(n uint64, gas uint64) *types.Transaction {
		tx, _, err := txmgr.Sign(context.Background(), sg, chainID, n, gas, fees, txmgr.Call{From: sg.Address(), To: common.HexToAddress("0xbeef"), Value: big.NewInt(1)})
		require.NoError(t, err)
		return tx
	}
	mined := func(n uint64) {
		require.Eventually(t, func() bool {
			got, err := s.sRPC.NonceAt(ctx, sg.Address(), nil)
			return err == nil && got == n
		}, 10*time.Second, 20*time.Millisecond)
	}

	// Both up: both get it; one accepts, the other may say "already known"
	// or "nonce too low" (the same anvil behind both), and that is fine.
	require.NoError(t, s.m.SendTransaction(ctx, sign(0, 21000)))
	require.Equal(t, 1, s.primary.Calls("eth_sendRawTransaction"))
	require.Equal(t, 1, s.second.Calls("eth_sendRawTransaction"))
	mined(1)

	// Batched broadcast reaches both too.
	errs := s.m.SendTransactions(ctx, []*types.Transaction{sign(1, 21000), sign(2, 21000)})
	require.NoError(t, errors.Join(errs...))
	require.Equal(t, 3, s.primary.Calls("eth_sendRawTransaction"))
	require.Equal(t, 3, s.second.Calls("eth_sendRawTransaction"))
	mined(3)

	// Primary down: accepted by the secondary.
	s.primary.Down()
	require.NoError(t, s.m.SendTransaction(ctx, sign(3, 21000)))
	require.Equal(t, 4, s.second.Calls("eth_sendRawTransaction"))
	mined(4)
	s.primary.Up()

	// Primary rejects for good, secondary unreachable: the rejection wins.
	s.primary.Inject(testenv.Fault{Methods: []string{"eth_sendRawTransaction"}, RPCError: &testenv.RPCErrorSpec{Message: "intrinsic gas too low"}, Times: 1})
	s.second.Down()
	err = s.m.SendTransaction(ctx, sign(4, 21000))
	require.Equal(t, txmgr.ClassPermanent, txmgr.Classify(err), "%v", err)

	// Every endpoint down: a transport error, still retryable.
	s.primary.Down()
	err = s.m.SendTransaction(ctx, sign(4, 21000))
	require.Error(t, err)
	require.Equal(t, txmgr.ClassRetryable, txmgr.Classify(err), "%v", err)
	require.True(t, txmgr.IsFault(err), "%v", err)
}

// laggingBackend reports a latest header lag blocks behind the node's.
type laggingBackend struct {
	txmgr.Backend
	lag atomic.Uint64
}

func (l *laggingBackend) HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error) {
	if number != nil || l.lag.Load() == 0 {
		return l.Backend.HeaderByNumber(ctx, number)
	}
	h, err := l.Backend.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, err
	}
	return l.Backend.HeaderByNumber(ctx, new(big.Int).Sub(h.Number, new(big.Int).SetUint64(l.lag.Load())))
}

// An endpoint more than MaxHeadLag blocks behind is passed over while
// another is current, and preferred again once it has caught up.
func TestMultiPrefersEndpointNotLagging(t *testing.T) {
	t.Parallel()
	lagging := &laggingBackend{}
	lagging.lag.Store(5)
	s := setupMulti(t, nil, 2*time.Second, func(b txmgr.Backend) txmgr.Backend { lagging.Backend = b; return lagging })
	s.node.RPC(t, "anvil_mine", "0xa")
	ctx := context.Background()
	addr := common.HexToAddress("0xbeef")

	_, err := s.m.HeaderByNumber(ctx, nil) // the primary answers; the secondary's head is read in the background
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.health(0).Lagging }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, uint64(5), s.health(0).HeadLag)
	_, err = s.m.BalanceAt(ctx, addr, nil)
	require.NoError(t, err)
	require.Equal(t, 0, s.primary.Calls("eth_getBalance"))
	require.Equal(t, 1, s.second.Calls("eth_getBalance"))

	// Caught up: the next head refresh notices, and the primary is used.
	lagging.lag.Store(0)
	s.clock.Advance(time.Second)
	_, err = s.m.HeaderByNumber(ctx, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !s.health(0).Lagging }, 10*time.Second, 10*time.Millisecond)
	_, err = s.m.BalanceAt(ctx, addr, nil)
	require.NoError(t, err)
	require.Equal(t, 1, s.primary.Calls("eth_getBalance"))
	require.Equal(t, 1, s.second.Calls("eth_getBalance"))
}

// DialMany refuses endpoints of different chains.
func TestDialManyRefusesDifferentChains(t *testing.T) {
	t.Parallel()
	a := testenv.Anvil(t, "--quiet")
	b := testenv.Anvil(t, "--quiet", "--chain-id", "4242")
	_, err := txmgr.DialMany(context.Background(), []string{a.URL(), b.URL()}, 2*time.Second)
	require.ErrorContains(t, err, "serves chain 4242")

	m, err := txmgr.DialMany(context.Background(), []string{a.URL(), a.URL() + "/"}, 2*time.Second)
	require.NoError(t, err)
	defer m.Close()
	require.Equal(t, "#1 http://127.0.0.1:"+fmt.Sprint(a.Port()), m.Health()[0].Name)
}

func TestIsFault(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("post: %w", syscall.ECONNREFUSED), true},
		{context.DeadlineExceeded, true},
		{rpc.HTTPError{StatusCode: 503, Status: "503 Service Unavailable"}, true},
		{rpc.HTTPError{StatusCode: 429, Status: "429 Too Many Requests"}, true},
		{errors.New("header not found"), true},
		{errors.New("execution reverted"), false},
		{errors.New("nonce too low"), false},
		{errors.New("already known"), false},
		{errors.New("replacement transaction underpriced"), false},
		{errors.New("insufficient funds for gas * price + value"), false},
		{errors.New("something the node says that nobody knows"), false},
	} {
		require.Equal(t, tc.want, txmgr.IsFault(tc.err), "%v", tc.err)
	}
}

func TestCombineBroadcast(t *testing.T) {
	t.Parallel()
	refused := fmt.Errorf("post: %w", syscall.ECONNREFUSED)
	known := errors.New("already known")
	low := errors.New("nonce too low: next nonce 5, tx nonce 3")
	permanent := errors.New("intrinsic gas too low")
	funds := errors.New("insufficient funds for gas * price + value")
	under := errors.New("transaction underpriced")
	http503 := rpc.HTTPError{StatusCode: 503, Status: "503 Service Unavailable"}
	for _, tc := range []struct {
		name string
		errs []error
		want error
	}{
		{"accepted by the primary", []error{nil, known}, nil},
		{"accepted by the secondary", []error{refused, nil}, nil},
		{"accepted while another rejects", []error{permanent, nil}, nil},
		{"already known beats nonce too low", []error{low, known}, known},
		{"nonce too low beats transport", []error{refused, low}, low},
		{"permanent beats transport", []error{refused, permanent}, permanent},
		{"permanent beats underpriced", []error{under, permanent}, permanent},
		{"funds beat underpriced", []error{under, funds}, funds},
		{"underpriced beats 503", []error{http503, under}, under},
		{"all transport: the first", []error{refused, http503}, refused},
		{"nothing", nil, nil},
	} {
		require.Equal(t, tc.want, txmgr.CombineBroadcast(tc.errs...), tc.name)
	}
}
