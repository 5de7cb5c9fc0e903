package lane

import (
	"flag"
	"fmt"
	"maps"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// The model-based test drives the core through randomized sequences against
// a hostile model of a chain: a mempool with replacement rules, blocks,
// nonces and receipts; reorgs of up to two blocks that re-include any
// transaction ever broadcast at a nonce, or drop it; reads that lag the
// head by up to three blocks or answer nothing; endpoints that reject a
// transaction they accepted; permanent rejections of replacements; another
// sender using the signer's nonce; fees that spike; a balance that drains
// and refills; crashes between a nonce reservation and the write-ahead.
// After every step it checks the invariants, and once the chain settles,
// that every job is final and every bound nonce used.

var (
	modelSeed = flag.Uint64("lane.seed", 0, "run only this model seed")
	modelRuns = flag.Int("lane.runs", 0, "model sequences to run (0: 3000, 300 with -short)")
)

func TestModel(t *testing.T) {
	runs := *modelRuns
	if runs == 0 {
		runs = 3000
		if testing.Short() {
			runs = 300
		}
	}
	seeds := make([]uint64, runs)
	base := uint64(time.Now().UnixNano())
	for i := range seeds {
		seeds[i] = base + uint64(i)
	}
	if *modelSeed != 0 {
		seeds = []uint64{*modelSeed}
	}
	stats := map[string]int{}
	for _, seed := range seeds {
		m := newModel(seed)
		if err := m.run(); err != nil {
			t.Fatalf("model seed %d (rerun: go test ./lane -run TestModel -lane.seed=%d -v): %v\n%s", seed, seed, err, m.trace())
		}
		for k, v := range m.stats {
			stats[k] += v
		}
	}
	t.Logf("%d sequences; events: %v", len(seeds), stats)
}

// mtx is a transaction of the signer's key on the model chain.
type mtx struct {
	hash   common.Hash
	nonce  uint64
	job    string // "" for someone else's transaction (or a job-less gap fill)
	noop   bool
	fees   txmgr.Fees
	gas    uint64
	value  *big.Int
	revert bool
}

type mblock struct {
	num  uint64
	hash common.Hash
	txs  []*mtx
}

// mjob is the model's job record: what Redis would hold.
type mjob struct {
	Job
	calls  int  // calls of this job ever signed
	revert bool // its call reverts when executed
	final  jobs.Status
	code   string
	hist   []jobs.Status
}

type model struct {
	rng    *rand.Rand
	seed   uint64
	cfg    Config
	blocks []*mblock // canonical; blocks[0] is genesis
	pool   map[uint64]*mtx
	seen   map[uint64][]*mtx // every transaction ever accepted anywhere, by nonce
	bal    *big.Int
	base   *big.Int // the fee level
	nextH  uint64
	jobs   map[string]*mjob
	order  []string
	bound  map[string]uint64 // the allocator: job → nonce
	next   uint64
	inited bool
	memo   *Memo
	paused string
	txs    map[common.Hash]*mtx
	log    []string
	stats  map[string]int

	// faults, on while the sequence is hostile
	hostile bool
	lag     int
}

func newModel(seed uint64) *model {
	m := &model{
		rng:  rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		seed: seed,
		cfg: Config{StuckBlocks: 3, RebroadcastBlocks: 2, ForeignDepth: 1, BumpPercent: 10,
			MaxFeePerGas: big.NewInt(400)},
		pool:  map[uint64]*mtx{},
		seen:  map[uint64][]*mtx{},
		bal:   big.NewInt(100_000_000),
		base:  big.NewInt(10),
		jobs:  map[string]*mjob{},
		bound: map[string]uint64{},
		memo:  NewMemo(),
		stats: map[string]int{},
	}
	m.blocks = []*mblock{{num: 0, hash: m.newHash()}}
	return m
}

func (m *model) newHash() common.Hash {
	m.nextH++
	return common.BigToHash(new(big.Int).SetUint64(m.nextH))
}

func (m *model) logf(format string, a ...any) {
	m.log = append(m.log, fmt.Sprintf("h%d: ", m.head())+fmt.Sprintf(format, a...))
}

func (m *model) trace() string {
	from := max(0, len(m.log)-80)
	out := strings.Join(m.log[from:], "\n")
	out += fmt.Sprintf("\nhead %d latest %d pending %d next %d balance %s fee %s", m.head(), m.chainNonce(m.head()), m.pendingNonce(), m.next, m.bal, m.base)
	for _, id := range m.order {
		j := m.jobs[id]
		if j.Status.Terminal() {
			continue
		}
		n, b := m.bound[id]
		out += fmt.Sprintf("\n%s %s bound %d/%v cancel %v abandon %q warn %q", id, j.Status, n, b, j.CancelRequested, j.Abandon, j.Warning)
		for _, a := range j.Attempts {
			out += fmt.Sprintf("\n   %s %d fee %s sent %d pool %v", a.Kind, a.Nonce, a.Fees.FeeCap, a.SentBlock, m.pool[a.Nonce] != nil && m.pool[a.Nonce].hash == a.Hash)
		}
	}
	return out
}

func (m *model) head() uint64 { return uint64(len(m.blocks) - 1) }

// chainNonce is the signer's nonce after block b.
func (m *model) chainNonce(b uint64) uint64 {
	var n uint64
	for _, bl := range m.blocks[:b+1] {
		n += uint64(len(bl.txs))
	}
	return n
}

// pendingNonce is the chain's nonce plus the contiguous pool above it.
func (m *model) pendingNonce() uint64 {
	n := m.chainNonce(m.head())
	for m.pool[n] != nil {
		n++
	}
	return n
}

// ---- the chain ----

func (m *model) mine() {
	b := &mblock{num: m.head() + 1, hash: m.newHash()}
	n := m.chainNonce(m.head())
	for nn := range m.pool {
		if nn < n {
			delete(m.pool, nn)
		}
	}
	for len(b.txs) < 6 {
		tx := m.pool[n]
		if tx == nil {
			break
		}
		cost := m.cost(tx)
		if m.bal.Cmp(cost) < 0 {
			break // the pool keeps it until the balance allows
		}
		m.bal.Sub(m.bal, cost)
		delete(m.pool, n)
		b.txs = append(b.txs, tx)
		n++
	}
	m.blocks = append(m.blocks, b)
}

func (m *model) cost(tx *mtx) *big.Int {
	c := new(big.Int).Mul(new(big.Int).SetUint64(tx.gas), tx.fees.FeeCap)
	if tx.value != nil {
		c.Add(c, tx.value)
	}
	return c
}

// reorg takes k blocks away; each nonce they used is re-included (by the
// same or any other transaction ever seen at it) or dropped. Then k+1 new
// blocks are mined.
func (m *model) reorg(k int) {
	k = min(k, len(m.blocks)-1)
	gone := m.blocks[len(m.blocks)-k:]
	m.blocks = m.blocks[:len(m.blocks)-k]
	for _, b := range gone {
		for _, tx := range b.txs {
			m.bal.Add(m.bal, m.cost(tx))
			cands := m.seen[tx.nonce]
			switch r := m.rng.IntN(10); {
			case r < 5:
				m.pool[tx.nonce] = tx
			case r < 8:
				m.pool[tx.nonce] = cands[m.rng.IntN(len(cands))]
			default:
				delete(m.pool, tx.nonce)
			}
		}
	}
	m.logf("reorg of %d blocks", k)
	m.stats["reorg"]++
	for range k + 1 {
		m.mine()
	}
}

// broadcast is a node's answer to a transaction. Faults: an endpoint that
// takes the transaction but answers a timeout, or answers a permanent
// rejection although another endpoint took it.
func (m *model) broadcast(tx *mtx) (accepted bool, permanent bool) {
	if tx.nonce < m.chainNonce(m.head()) {
		return false, false // nonce too low
	}
	if m.bal.Cmp(m.cost(tx)) < 0 {
		return false, false // insufficient funds
	}
	if old := m.pool[tx.nonce]; old != nil && old != tx {
		need := new(big.Int).Div(new(big.Int).Mul(old.fees.FeeCap, big.NewInt(110)), big.NewInt(100))
		if tx.fees.FeeCap.Cmp(need) < 0 {
			return false, false // replacement underpriced
		}
	}
	take := true
	if m.hostile {
		switch r := m.rng.IntN(20); {
		case r == 0:
			m.stats["rejected_after_accept"]++
			permanent = true // endpoint B rejects what endpoint A took
		case r == 1:
			m.stats["rejected"]++
			return false, true
		case r == 2:
			take = false // lost on the way
		}
	}
	if take {
		m.pool[tx.nonce] = tx
		if !slices.Contains(m.seen[tx.nonce], tx) {
			m.seen[tx.nonce] = append(m.seen[tx.nonce], tx)
		}
	}
	return take && !permanent, permanent
}

// ---- reads (a node behind a load balancer: the head is fresh, lookups
// may lag or answer nothing) ----

func (m *model) view() uint64 {
	v := int(m.head()) - m.lag
	return uint64(max(v, 0))
}

func (m *model) find(h common.Hash, upto uint64) (*mblock, bool) {
	for _, b := range m.blocks[:upto+1] {
		for _, tx := range b.txs {
			if tx.hash == h {
				return b, !tx.revert
			}
		}
	}
	return nil, false
}

func (m *model) observe() Observation {
	head := m.head()
	obs := Observation{
		Head: head, Latest: m.chainNonce(head), Balance: new(big.Int).Set(m.bal),
		Fees:     txmgr.Fees{TipCap: new(big.Int).Div(m.base, big.NewInt(5)), FeeCap: new(big.Int).Mul(m.base, big.NewInt(2))},
		Receipts: map[common.Hash]Receipt{}, Canon: map[uint64]common.Hash{},
		Known: map[common.Hash]bool{}, Holders: map[uint64]Holder{},
	}
	js := m.laneJobs()
	plan := PlanReads(js, m.memo, m.cfg, head, obs.Latest)
	view := m.view()
	blind := m.hostile && m.rng.IntN(4) == 0 // receipts and lookups answer null
	if !blind {
		for _, h := range plan.Receipts {
			if b, ok := m.find(h, view); b != nil {
				obs.Receipts[h] = Receipt{TxHash: h, Block: b.num, BlockHash: b.hash, Success: ok}
			}
		}
	}
	for _, n := range plan.Canon {
		if n <= view {
			obs.Canon[n] = m.blocks[n].hash
		}
	}
	for _, h := range plan.Known {
		if blind {
			continue
		}
		b, _ := m.find(h, view)
		known := b != nil
		for _, tx := range m.pool {
			known = known || tx.hash == h
		}
		obs.Known[h] = known
	}
	for _, n := range Disputed(js, obs.Latest, obs.Receipts) {
		if blind || m.chainNonce(view) <= n {
			continue // the lagging node cannot show the block yet
		}
		for _, b := range m.blocks[:view+1] {
			for _, tx := range b.txs {
				if tx.nonce == n {
					obs.Holders[n] = Holder{TxHash: tx.hash, Block: b.num, BlockHash: b.hash}
					obs.Canon[b.num] = b.hash
				}
			}
		}
	}
	return obs
}

func (m *model) laneJobs() []Job {
	var out []Job
	for _, id := range m.order {
		j := m.jobs[id]
		n, ok := m.bound[id]
		if !ok {
			continue
		}
		jj := j.Job
		jj.Nonce = n
		jj.Attempts = slices.Clone(j.Attempts)
		out = append(out, jj)
	}
	return out
}

// ---- the worker: the send path and the tracker's shell ----

func (m *model) newJob() {
	id := fmt.Sprintf("j%d", len(m.order))
	j := &mjob{Job: Job{ID: id, Status: jobs.Queued, Confirmations: 3, Value: big.NewInt(0)}, revert: m.rng.IntN(8) == 0}
	if m.rng.IntN(6) == 0 {
		j.Value = big.NewInt(int64(m.rng.IntN(3_000_000))) // may be more than the signer holds
	}
	j.hist = []jobs.Status{jobs.Queued}
	m.jobs[id] = j
	m.order = append(m.order, id)
	m.logf("new %s value %s", id, j.Value)
}

func (m *model) fees() txmgr.Fees {
	return txmgr.Fees{TipCap: new(big.Int).Div(m.base, big.NewInt(5)), FeeCap: new(big.Int).Mul(m.base, big.NewInt(2))}.Capped(m.cfg.MaxFeePerGas)
}

// send is the send path for a queued job: the cost check before a nonce
// is taken, the reservation, the signature, the write-ahead, the
// broadcast. crash stops it after the reservation.
func (m *model) send(j *mjob, crash bool) {
	fees := m.fees()
	gas := uint64(50_000)
	cost := new(big.Int).Add(j.Value, new(big.Int).Mul(big.NewInt(int64(gas)), fees.FeeCap))
	if _, holds := m.bound[j.ID]; !holds && m.bal.Cmp(cost) < 0 {
		return // waits queued with a warning; takes no nonce
	}
	if !m.inited {
		m.next, m.inited = m.pendingNonce(), true
	}
	n, holds := m.bound[j.ID]
	if !holds {
		n = m.next
		m.next++
		m.bound[j.ID] = n
	}
	if crash {
		m.logf("%s crashed after reserving %d", j.ID, n)
		m.stats["crash_after_reserve"]++
		return
	}
	m.signCall(j, n, jobs.KindOriginal, gas, fees)
	m.move(j, jobs.Submitted, false)
}

func (m *model) signCall(j *mjob, n uint64, kind string, gas uint64, fees txmgr.Fees) {
	tx := &mtx{hash: m.newHash(), nonce: n, job: j.ID, fees: fees, gas: gas, value: j.Value, revert: j.revert}
	j.Attempts = append(j.Attempts, Attempt{Hash: tx.hash, Nonce: n, Kind: kind, Gas: gas, Fees: fees, SentBlock: m.head()})
	nn := n
	j.Signed = &nn
	j.calls++
	m.logf("%s signs %s at %d fee %s", j.ID, kind, n, fees.FeeCap)
	m.send1(j, tx)
}

func (m *model) signNoop(j *mjob, n uint64, kind string, fees txmgr.Fees) {
	tx := &mtx{hash: m.newHash(), nonce: n, job: j.ID, noop: true, fees: fees, gas: NoopGas, value: big.NewInt(0)}
	j.Attempts = append(j.Attempts, Attempt{Hash: tx.hash, Nonce: n, Kind: kind, Gas: NoopGas, Fees: fees, SentBlock: m.head()})
	m.logf("%s signs %s at %d fee %s", j.ID, kind, n, fees.FeeCap)
	m.send1(j, tx)
}

// send1 broadcasts a persisted attempt and handles the answer as the
// worker's broadcastResult does: a permanent rejection of the first call
// at a nonce gives the job up (a no-op will replace it; the chain
// decides); a refused replacement only warns.
func (m *model) send1(j *mjob, tx *mtx) {
	m.txs[tx.hash] = tx
	_, permanent := m.broadcast(tx)
	if permanent && !tx.noop && j.Status == jobs.Submitted && j.Abandon == "" && !j.CancelRequested {
		first := 0
		for _, a := range j.Attempts {
			if a.Nonce == tx.nonce && !a.Noop() {
				first++
			}
		}
		if first == 1 {
			j.Abandon = CodeRejected
			m.logf("%s rejected for good: giving up", j.ID)
		}
	}
}

func (m *model) move(j *mjob, to jobs.Status, back bool) {
	if !jobs.CanTransition(j.Status, to) {
		panic(fmt.Sprintf("%s: %s → %s is not a transition", j.ID, j.Status, to))
	}
	if j.Status == jobs.Mined && to == jobs.Submitted && !back {
		panic(fmt.Sprintf("%s: a step back that is not a reorg", j.ID))
	}
	j.Status = to
	j.hist = append(j.hist, to)
}

// act carries out the core's actions, as the tracker's shell does.
func (m *model) act(acts []Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case MarkMined:
			j := m.jobs[a.ID]
			r := a.Receipt
			j.Mined = &r
			m.move(j, jobs.Mined, false)
			m.logf("%s mined (%s) at block %d", j.ID, a.Kind, r.Block)
		case StepBack:
			j := m.jobs[a.ID]
			j.Mined = nil
			m.move(j, jobs.Submitted, true)
			m.stats["step_back"]++
			m.logf("%s stepped back", j.ID)
		case Finalize:
			j := m.jobs[a.ID]
			m.move(j, a.To, false)
			j.final, j.code = a.To, a.Code
			m.stats["final_"+string(a.To)+"_"+a.Code]++
			m.logf("%s final %s %s", j.ID, a.To, a.Code)
		case Release:
			delete(m.bound, a.ID)
		case Replace:
			j := m.jobs[a.ID]
			if a.Noop() {
				m.signNoop(j, a.Nonce, a.Kind, a.Fees)
			} else {
				m.signCall(j, a.Nonce, a.Kind, a.Gas, a.Fees)
			}
			m.stats["replace_"+a.Kind]++
		case Resign:
			j := m.jobs[a.ID]
			m.next = max(m.next, m.pendingNonce())
			if m.bound[j.ID] != a.Old {
				continue
			}
			n := m.next
			m.next++
			m.bound[j.ID] = n
			m.stats["resign"]++
			m.signCall(j, n, jobs.KindResign, j.gas(), m.fees())
		case Rebroadcast:
			j := m.jobs[a.ID]
			last := j.Attempts[len(j.Attempts)-1]
			m.stats["rebroadcast"]++
			m.send1(j, m.txs[last.Hash])
		case Warn:
			m.jobs[a.ID].Warning = a.Warning
		case GiveUp:
			m.jobs[a.ID].Abandon = a.Code
			m.stats["give_up_"+a.Code]++
		case FinishSubmit:
			j := m.jobs[a.ID]
			m.stats["finish_submit"]++
			m.send(j, false)
		case FillGap:
			tx := &mtx{hash: m.newHash(), nonce: a.Nonce, noop: true, fees: a.Fees, gas: NoopGas, value: big.NewInt(0)}
			m.stats["fill_gap"]++
			m.logf("gap fill at %d", a.Nonce)
			m.broadcast(tx)
		case Pause:
			m.paused = a.Reason
		}
	}
}

// ---- the sequence ----

func (m *model) run() (err error) {
	m.txs = map[common.Hash]*mtx{}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	m.hostile = true
	steps := 40 + m.rng.IntN(80)
	for range steps {
		m.step()
		if err := m.check(); err != nil {
			return err
		}
	}
	// The chain settles: no more faults, plenty of funds, no new jobs.
	m.hostile, m.lag = false, 0
	m.bal.Add(m.bal, big.NewInt(1_000_000_000))
	m.base = big.NewInt(10)
	for range 200 {
		m.mine()
		m.tick()
		m.sendQueued()
		if err := m.check(); err != nil {
			return err
		}
	}
	return m.settled()
}

func (m *model) step() {
	switch r := m.rng.IntN(100); {
	case r < 25:
		m.newJob()
	case r < 30:
		m.reorg(1 + m.rng.IntN(2))
	case r < 34:
		// Someone else uses the signer's next nonce, at a high fee.
		n := m.chainNonce(m.head())
		tx := &mtx{hash: m.newHash(), nonce: n, fees: txmgr.Fees{TipCap: big.NewInt(1000), FeeCap: big.NewInt(10_000)}, gas: NoopGas, value: big.NewInt(0)}
		m.pool[n] = tx
		m.seen[n] = append(m.seen[n], tx)
		m.stats["foreign"]++
		m.logf("foreign tx at %d", n)
	case r < 38:
		m.base = new(big.Int).Mul(m.base, big.NewInt(int64(2+m.rng.IntN(3)))) // a fee spike
		m.logf("fees up to %s", m.base)
	case r < 42:
		m.base = big.NewInt(10)
	case r < 46:
		m.bal = big.NewInt(int64(m.rng.IntN(3_000_000))) // drained (or not quite)
		m.stats["drain"]++
		m.logf("balance %s", m.bal)
	case r < 50:
		m.bal.Add(m.bal, big.NewInt(50_000_000))
	case r < 55:
		m.lag = m.rng.IntN(4)
	case r < 60:
		// A user cancels a job.
		if len(m.order) > 0 {
			j := m.jobs[m.order[m.rng.IntN(len(m.order))]]
			m.cancel(j)
		}
	case r < 65:
		// Drop a pending transaction from the pool.
		if ns := slices.Sorted(maps.Keys(m.pool)); len(ns) > 0 {
			n := ns[m.rng.IntN(len(ns))]
			delete(m.pool, n)
			m.stats["drop"]++
			m.logf("pool drops nonce %d", n)
		}
	default:
		m.mine()
		m.tick()
	}
	m.sendQueued()
}

func (m *model) sendQueued() {
	for _, id := range m.order {
		j := m.jobs[id]
		if j.Status != jobs.Queued {
			continue
		}
		if _, holds := m.bound[id]; holds {
			continue // an orphan: the tracker finishes it
		}
		m.send(j, m.hostile && m.rng.IntN(15) == 0)
	}
}

func (m *model) cancel(j *mjob) {
	switch j.Status {
	case jobs.Queued:
		m.move(j, jobs.Cancelled, false)
		j.final = jobs.Cancelled
		m.logf("%s cancelled while queued", j.ID)
	case jobs.Submitted:
		j.CancelRequested = true
		m.logf("%s cancel requested", j.ID)
	}
}

func (m *model) tick() {
	obs := m.observe()
	m.act(Decide(m.laneJobs(), obs, m.memo, m.cfg))
}

// executions counts the canonical calls of each job.
func (m *model) executions() map[string]int {
	out := map[string]int{}
	for _, b := range m.blocks {
		for _, tx := range b.txs {
			if tx.job != "" && !tx.noop {
				out[tx.job]++
			}
		}
	}
	return out
}

// check is the invariants after every step.
func (m *model) check() error {
	for id, n := range m.executions() {
		if n > 1 {
			return fmt.Errorf("job %s executed %d times", id, n)
		}
	}
	owner := map[uint64]string{}
	for id, n := range m.bound {
		if o, dup := owner[n]; dup {
			return fmt.Errorf("nonce %d bound to %s and %s", n, o, id)
		}
		owner[n] = id
	}
	// A verdict never changes once given: a job's history ends at its
	// first final status.
	for _, id := range m.order {
		j := m.jobs[id]
		for i, s := range j.hist {
			if s.Terminal() && i != len(j.hist)-1 {
				return fmt.Errorf("job %s left its final status: %v", id, j.hist)
			}
		}
	}
	return nil
}

// settled checks the end state: every job final and right about the
// chain, every nonce used, latest = pending.
func (m *model) settled() error {
	execs := m.executions()
	ok := map[string]bool{}
	for _, b := range m.blocks {
		for _, tx := range b.txs {
			if tx.job != "" && !tx.noop && !tx.revert {
				ok[tx.job] = true
			}
		}
	}
	for _, id := range m.order {
		j := m.jobs[id]
		switch j.Status {
		case jobs.Confirmed:
			if !ok[id] {
				return fmt.Errorf("job %s confirmed but its call is not on chain", id)
			}
		case jobs.Failed:
			if j.code == CodeReverted && execs[id] != 1 {
				return fmt.Errorf("job %s failed reverted but did not execute", id)
			}
			if j.code != CodeReverted && execs[id] != 0 {
				return fmt.Errorf("job %s failed %s but executed", id, j.code)
			}
		case jobs.Cancelled:
			if execs[id] != 0 {
				return fmt.Errorf("job %s cancelled but executed", id)
			}
		case jobs.Queued:
			return fmt.Errorf("job %s still queued (balance %s, value %s)", id, m.bal, j.Value)
		default:
			return fmt.Errorf("job %s not final: %s", id, j.Status)
		}
	}
	if len(m.bound) != 0 {
		return fmt.Errorf("nonces still bound: %v", m.bound)
	}
	latest := m.chainNonce(m.head())
	if m.inited && m.next > latest {
		return fmt.Errorf("the allocator is at %d but the chain at %d: a gap", m.next, latest)
	}
	if p := m.pendingNonce(); p != latest {
		return fmt.Errorf("latest %d != pending %d", latest, p)
	}
	return nil
}
