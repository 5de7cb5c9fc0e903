package integration

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics/metricstest"
	"github.com/relayq/relayq/nonce"
)

// anvilChainID is the chain id anvil runs with by default.
const anvilChainID = 31337

// Only the tracker calls these methods (receipts one by one or a block's
// at once, and "does the node still know this tx"), so a worker whose count
// of them moves is tracking. A tracker that used none of them would fail
// the test ("no worker tracking"), not pass it.
var trackerMethods = []string{"eth_getTransactionReceipt", "eth_getBlockReceipts", "eth_getTransactionByHash"}

// TestManyProcesses runs relayq the way it scales out: three `relayq api`
// and four `relayq worker` processes on one Redis, 1,000 jobs posted
// round-robin across the APIs by concurrent clients, and the worker that is
// tracking the signer's transactions SIGKILLed while jobs are in flight.
// Once with one signer and once with jobs spread over two. Afterwards every
// accepted job is confirmed exactly once, the contract counted each once,
// each signer's nonces are contiguous with nothing left pending, each
// signer was tracked by one worker at a time, another worker took the
// killed one's lease over (never before the old lease expired), and every
// surviving worker sent some of the transactions. The lease takeover time
// and the spread of the work are logged.
//
// It takes about 20 s, or about two minutes when the killed worker held
// tasks whose jobs had no nonce yet: Asynq hands such a task back only
// once its 30 s lease is 30 s past, on a recoverer that runs every minute.
func TestManyProcesses(t *testing.T) {
	t.Parallel()
	for _, signers := range []int{1, 2} {
		t.Run(fmt.Sprintf("signers=%d", signers), func(t *testing.T) {
			runManyProcesses(t, signers)
		})
	}
}

// scaleRun is one many-process deployment and what the test saw of it.
type scaleRun struct {
	t         *testing.T
	c         *cluster
	rdb       *redis.Client
	apis      []string         // base URLs of the API processes
	metrics   []string         // each worker's /metrics URL
	signers   []common.Address // in the order jobs are spread over them
	leaseKeys []string         // each signer's tracker lease key
	hc        *http.Client     // for the test's own requests, with a timeout
	mu        sync.Mutex       // guards samples
	samples   []scaleSample    // taken every samplePeriod until the run ends
}

// scaleSample is one look at the deployment.
type scaleSample struct {
	at      time.Time
	leases  []leaseState // per signer: its tracker lease
	tracker []float64    // per worker: tracker-only RPC calls so far (-1: not answering)
	sends   []float64    // per worker: eth_sendRawTransaction so far (-1: not answering)
}

const samplePeriod = 300 * time.Millisecond

func runManyProcesses(t *testing.T, nSigners int) {
	const (
		nAPIs    = 3
		nWorkers = 4
		nJobs    = 1000
		perSec   = 200 // posting pace: the run spans several blocks, so the kill lands mid-stream
		clients  = 24
	)
	// keys[1] deploys the Counter, so the signers are keys[0] and keys[2]:
	// both start at nonce 0.
	all := testenv.AnvilKeys()
	keys := []*ecdsa.PrivateKey{all[0], all[2]}[:nSigners]
	hexKeys := make([]string, len(keys))
	for i, k := range keys {
		hexKeys[i] = fmt.Sprintf("%x", crypto.FromECDSA(k))
	}
	c, counter := newCluster(t, clusterOptions{
		anvilArgs: []string{"--block-time", "1"},
		env: []string{
			"RELAYQ_PRIVATE_KEYS=" + strings.Join(hexKeys, ","), // overrides the cluster's one key
			"RELAYQ_RATE_LIMIT=0",                               // one API key posts everything
			"RELAYQ_LOG_LEVEL=warn",
		},
	})
	r := &scaleRun{t: t, c: c, apis: []string{c.apiURL}, hc: &http.Client{Timeout: 15 * time.Second}}
	r.rdb = redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
	t.Cleanup(func() { r.rdb.Close() })
	for _, k := range keys {
		a := crypto.PubkeyToAddress(k.PublicKey)
		r.signers = append(r.signers, a)
		// The worker's tracker lease: worker/track.go names it after the
		// signer's nonce keys, in the same hash slot.
		r.leaseKeys = append(r.leaseKeys, nonce.New(r.rdb, "relayq:", anvilChainID, a).KeyTag()+"tracker")
	}
	for range nAPIs - 1 {
		r.apis = append(r.apis, r.startAPI())
	}
	for range nWorkers {
		port := testenv.FreePort(t)
		c.addWorker(fmt.Sprintf("RELAYQ_METRICS_LISTEN=127.0.0.1:%d", port))
		r.metrics = append(r.metrics, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	}
	for i, u := range r.metrics {
		waitFor(t, 30*time.Second, fmt.Sprintf("worker %d serving metrics", i), func() bool {
			_, err := r.scrape(u)
			return err == nil
		})
	}

	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		r.sample(stopSampling)
	}()
	var once sync.Once
	endSampling := func() {
		once.Do(func() { close(stopSampling) })
		<-sampled
	}
	t.Cleanup(endSampling)

	// Post: job i goes to API i%3 with signer i%nSigners, at a steady pace,
	// with an Idempotency-Key so a retried request cannot make a second job.
	start := time.Now()
	ids := make([]string, nJobs)
	var accepted atomic.Int64
	var next atomic.Int64
	var posted sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		posted.Add(1)
		go func() {
			defer posted.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= nJobs {
					return
				}
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / perSec)))
				body := fmt.Sprintf(`{"to":%q,"function":"increment()","from":%q}`, counter, r.signers[i%nSigners].Hex())
				id, err := r.post(r.apis[i%nAPIs], body, fmt.Sprintf("scale-%d", i))
				if err != nil {
					errs <- fmt.Errorf("job %d: %w", i, err)
					return
				}
				ids[i] = id
				accepted.Add(1)
			}
		}()
	}

	// Kill the worker that is tracking, once two fifths of the jobs are in
	// and while the rest are still arriving.
	waitFor(t, 60*time.Second, "two fifths of the jobs accepted", func() bool { return accepted.Load() >= nJobs*2/5 })
	var victim int
	waitFor(t, 30*time.Second, "a worker tracking", func() bool {
		victim = r.latestTracker(2 * time.Second)
		return victim >= 0
	})
	before := r.readLeases()
	require.NoError(t, c.workers[victim].Kill())
	killedAt := time.Now()
	inAtKill := accepted.Load()
	takeover := r.waitTakeover(before, killedAt)

	posted.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	acceptedIn := time.Since(start)
	done := c.waitAll(ids, 4*time.Minute)
	recovery := time.Since(killedAt)
	elapsed := time.Since(start)
	endSampling()

	// Every accepted job is confirmed exactly once, by its own transaction.
	require.Len(t, done, nJobs)
	perSigner := make([]map[uint64]string, nSigners)
	for s := range perSigner {
		perSigner[s] = map[uint64]string{}
	}
	hashes := make([]common.Hash, 0, nJobs)
	seenHash := map[string]bool{}
	bumps := 0
	for i, j := range done {
		require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
		s := i % nSigners
		require.True(t, strings.EqualFold(r.signers[s].Hex(), j.From), "job %s signed by %s, asked for %s", j.ID, j.From, r.signers[s].Hex())
		require.NotNil(t, j.Nonce)
		require.Empty(t, perSigner[s][*j.Nonce], "nonce %d of signer %d bound to two jobs", *j.Nonce, s)
		perSigner[s][*j.Nonce] = j.ID
		confirmations := 0
		for _, ch := range j.History {
			if ch.To == jobs.Confirmed {
				confirmations++
			}
		}
		require.Equal(t, 1, confirmations, "job %s confirmed %d times", j.ID, confirmations)
		require.NotNil(t, j.BlockNumber)
		require.False(t, seenHash[j.TxHash], "tx %s confirmed for two jobs", j.TxHash)
		seenHash[j.TxHash] = true
		hashes = append(hashes, common.HexToHash(j.TxHash))
		for _, a := range j.Attempts {
			if a.Kind == jobs.KindBump {
				bumps++
			}
		}
	}
	r.checkReceipts(done, hashes)
	require.Equal(t, uint64(nJobs), counterValue(t, c.node, commonAddr(counter)), "the contract counted every accepted job exactly once")
	for s, a := range r.signers {
		n := uint64(len(perSigner[s]))
		for k := range n {
			require.NotEmpty(t, perSigner[s][k], "signer %d: nonce %d unused, the sequence has a gap", s, k)
		}
		latest, err := c.node.NonceAt(context.Background(), a, nil)
		require.NoError(t, err)
		pending, err := c.node.PendingNonceAt(context.Background(), a)
		require.NoError(t, err)
		require.Equal(t, n, latest, "signer %d: every nonce relayq bound was mined", s)
		require.Equal(t, latest, pending, "signer %d: nothing left in the pool", s)
	}

	// The APIs shared the posts; each created its share of the jobs once.
	created := make([]float64, nAPIs)
	total := 0.0
	for i, u := range r.apis {
		m, err := r.scrape(u + "/metrics")
		require.NoError(t, err)
		created[i] = m.Value("relayq_jobs_accepted_total", "outcome", "created")
		total += created[i]
		require.Positive(t, created[i], "API %d created no job", i)
	}
	require.Equal(t, float64(nJobs), total, "each job created once, by one API")

	// The workers shared the sends, and tracking ran on one worker per
	// signer at a time.
	sends, tracked := r.finalCounts()
	for w := range sends {
		if w != victim {
			require.Positive(t, sends[w], "worker %d sent nothing", w)
		}
	}
	excused, stalls := r.checkOneTrackerPerSigner(killedAt, takeover)

	t.Logf("many processes: %d signer(s), %d APIs, %d workers, %d jobs: accepted in %v (%.0f/s paced), all confirmed %v after the first post",
		nSigners, nAPIs, nWorkers, nJobs, acceptedIn.Round(time.Millisecond), float64(nJobs)/acceptedIn.Seconds(), elapsed.Round(time.Millisecond))
	t.Logf("many processes: worker %d (tracking) SIGKILLed with %d of %d jobs accepted; the last job confirmed %v after the kill", victim, inAtKill, nJobs, recovery.Round(time.Millisecond))
	for s := range r.signers {
		if d, ok := takeover[s]; ok {
			t.Logf("many processes: signer %d: tracker lease taken over %v after the kill (lease TTL %v)", s, d.Round(time.Millisecond), trackerLeaseTTL)
		} else {
			t.Logf("many processes: signer %d: its tracker was on a surviving worker; the lease stayed put", s)
		}
	}
	t.Logf("many processes: jobs created per API %v; eth_sendRawTransaction per worker %v (worker %d: until killed); tracker calls per worker %v; fee bumps %d; lease handovers besides the kill %d, overlapping-tracker windows excused by them %d",
		created, sends, victim, tracked, bumps, stalls, excused)
}

// trackerLeaseTTL is the tracker lease's TTL with the cluster's 200ms poll
// interval (worker/track.go: 5 polls + 2 s).
const trackerLeaseTTL = 5*200*time.Millisecond + 2*time.Second

// startAPI starts one more `relayq api` process and returns its base URL.
func (r *scaleRun) startAPI() string {
	r.t.Helper()
	return r.c.launchAPI(fmt.Sprintf("api-%d", len(r.apis)))
}

// post submits body to the API at base with an Idempotency-Key and returns
// the job id. A request that fails in transit or with a 5xx is sent again
// (the key makes that safe), a few times.
func (r *scaleRun) post(base, body, key string) (string, error) {
	var last error
	for try := range 5 {
		if try > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		res, err := testenv.Request(r.hc, base, testAPIKey, http.MethodPost, "/v1/jobs", body, "Idempotency-Key", key)
		b := res.Body
		switch {
		case err != nil:
			last = err
		case res.Status == http.StatusAccepted || res.Status == http.StatusOK:
			var j jobs.Job
			if err := jsonUnmarshal(b, &j); err != nil {
				return "", err
			}
			return j.ID, nil
		case res.Status >= 500:
			last = fmt.Errorf("POST: %d %s", res.Status, b)
		default:
			return "", fmt.Errorf("POST: %d %s", res.Status, b)
		}
	}
	return "", last
}

// scrape reads and parses a /metrics URL.
func (r *scaleRun) scrape(url string) (metricstest.Snapshot, error) {
	res, err := r.hc.Get(url)
	if err != nil {
		return metricstest.Snapshot{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return metricstest.Snapshot{}, fmt.Errorf("GET %s: %d", url, res.StatusCode)
	}
	return metricstest.Parse(res.Body)
}

// leaseState is a tracker lease as read from Redis.
type leaseState struct {
	token   string    // the holder's token, "" when free
	expires time.Time // not before this unless released: the time before the read + PTTL
	seen    time.Time // the time after the read: the token was set by then
}

// readLeases reads each signer's tracker lease. Both times err on the side
// that cannot make a lease that waited for the expiry look as if it had not.
func (r *scaleRun) readLeases() []leaseState {
	out := make([]leaseState, len(r.leaseKeys))
	for i, k := range r.leaseKeys {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		before := time.Now()
		var get *redis.StringCmd
		var ttl *redis.DurationCmd
		_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			get, ttl = p.Get(ctx, k), p.PTTL(ctx, k)
			return nil
		})
		cancel()
		out[i].seen = time.Now()
		if err == nil && ttl.Val() > 0 {
			out[i].token, out[i].expires = get.Val(), before.Add(ttl.Val())
		}
	}
	return out
}

func tokens(ls []leaseState) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.token
	}
	return out
}

// sample records the lease holders and each worker's counters every
// samplePeriod until stop is closed.
func (r *scaleRun) sample(stop <-chan struct{}) {
	tick := time.NewTicker(samplePeriod)
	defer tick.Stop()
	for {
		s := scaleSample{at: time.Now(), leases: r.readLeases()}
		for _, u := range r.metrics {
			tr, se := -1.0, -1.0
			if m, err := r.scrape(u); err == nil {
				tr, se = 0, m.Value("relayq_rpc_requests_total", "method", "eth_sendRawTransaction")
				for _, method := range trackerMethods {
					tr += m.Value("relayq_rpc_requests_total", "method", method)
				}
			}
			s.tracker = append(s.tracker, tr)
			s.sends = append(s.sends, se)
		}
		r.mu.Lock()
		r.samples = append(r.samples, s)
		r.mu.Unlock()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// latestTracker returns the worker whose tracker calls moved most recently
// within the last window of samples, or -1.
func (r *scaleRun) latestTracker(window time.Duration) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.samples) - 1; i > 0; i-- {
		cur, prev := r.samples[i], r.samples[i-1]
		if time.Since(cur.at) > window {
			break
		}
		for w := range cur.tracker {
			if prev.tracker[w] >= 0 && cur.tracker[w] > prev.tracker[w] {
				return w
			}
		}
	}
	return -1
}

// leaseMargin allows for the clocks of Redis and the test drifting apart
// when a new holder's arrival is compared with the old holder's expiry.
const leaseMargin = 100 * time.Millisecond

// waitTakeover watches the leases after a kill. A lease the killed worker
// held stops being renewed, expires and is taken by another worker: its
// holder token changes, not before the old one expired, and the time that
// took is returned per signer. A lease still held by the same token once
// the TTL has passed belongs to a live worker (nobody renews for the dead).
// At least one lease must change hands, since the killed worker was
// tracking.
func (r *scaleRun) waitTakeover(before []leaseState, killedAt time.Time) map[int]time.Duration {
	r.t.Helper()
	took := map[int]time.Duration{}
	settled := make([]bool, len(before))
	deadline := killedAt.Add(30 * time.Second) // a correctness bound: TTL 3 s + one poll, with room for a loaded machine
	for {
		now := time.Now()
		cur := r.readLeases()
		left := 0
		for s, b := range before {
			if settled[s] {
				continue
			}
			switch c := cur[s]; {
			case c.token != "" && c.token != b.token:
				require.False(r.t, c.seen.Before(b.expires.Add(-leaseMargin)), "signer %d: a new tracker took the lease %v after the kill, %v before the old holder's lease expired",
					s, c.seen.Sub(killedAt), b.expires.Sub(c.seen))
				took[s] = c.seen.Sub(killedAt)
				settled[s] = true
			case c.token != "" && c.token == b.token && now.Sub(killedAt) > trackerLeaseTTL+time.Second:
				settled[s] = true // renewed past its TTL: a live worker holds it
			default:
				left++
			}
		}
		if left == 0 {
			break
		}
		require.True(r.t, now.Before(deadline), "tracker leases %v not taken over %v after the kill (before %q, now %q)", settled, now.Sub(killedAt), tokens(before), tokens(cur))
		time.Sleep(50 * time.Millisecond)
	}
	require.NotEmpty(r.t, took, "the killed worker was tracking, yet no lease changed hands")
	return took
}

// finalCounts returns each worker's eth_sendRawTransaction and tracker
// calls as last seen (a killed worker: its last answer).
func (r *scaleRun) finalCounts() (sends, tracked []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.metrics)
	sends, tracked = make([]float64, n), make([]float64, n)
	for _, s := range r.samples {
		for w := range n {
			if s.sends[w] >= 0 {
				sends[w], tracked[w] = s.sends[w], s.tracker[w]
			}
		}
	}
	return sends, tracked
}

// overlapWindow is how far apart two samples may be for the workers whose
// tracker calls moved between them to count as tracking at the same time.
// A holder fetches receipts once per 1 s block with jobs mined in it, so with
// broken leases every worker moves in such a window; a takeover after a
// kill comes a lease TTL (3 s) after the dead holder's last call, outside it.
const overlapWindow = 1500 * time.Millisecond

// stallGrace is how long around a lease handover the test did not cause
// (a holder stalled past its TTL) an overlap is excused: the stalled
// holder's tick in progress may still finish after the next one started.
const stallGrace = 5 * time.Second

// checkOneTrackerPerSigner reads the samples: in any overlapWindow, the
// workers whose tracker calls moved must be no more than the signers (one
// tracker each), except around a lease handover the test did not cause. It
// also checks that tracking was seen before and after the kill, and returns
// the windows that were excused and the handovers that excused them.
func (r *scaleRun) checkOneTrackerPerSigner(killedAt time.Time, took map[int]time.Duration) (excused, handovers int) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Greater(r.t, len(r.samples), 10, "too few samples")
	nSigners := len(r.leaseKeys)

	// Handovers: a lease going from one holder to another, which must wait
	// until the old holder's lease expired (nothing here releases one). The
	// first holder and the takeover after the kill are expected; any other
	// is a holder that stalled past its TTL.
	var stalls []time.Time
	holder := make([]leaseState, nSigners) // the last holder seen of each lease
	planned := make([]bool, nSigners)      // the kill's takeover was seen
	for _, cur := range r.samples {
		for s, l := range cur.leases {
			if l.token == "" || l.token == holder[s].token {
				if l.token != "" {
					holder[s] = l // renewed: a later expiry
				}
				continue
			}
			if holder[s].token != "" {
				require.False(r.t, l.seen.Before(holder[s].expires.Add(-leaseMargin)),
					"signer %d: lease taken by a new holder %v after the first sample, %v before the old holder's expired",
					s, l.seen.Sub(r.samples[0].at).Round(time.Millisecond), holder[s].expires.Sub(l.seen).Round(time.Millisecond))
			}
			switch _, killed := took[s]; {
			case holder[s].token == "": // the first holder
			case killed && !planned[s] && cur.at.After(killedAt):
				planned[s] = true
			default:
				stalls = append(stalls, cur.at)
			}
			holder[s] = l
		}
	}

	activeBefore, activeAfter := false, false
	var violations []string
	for i := 1; i < len(r.samples); i++ {
		cur, prev := r.samples[i], r.samples[i-1]
		for w := range cur.tracker {
			if prev.tracker[w] >= 0 && cur.tracker[w] > prev.tracker[w] {
				activeBefore = activeBefore || cur.at.Before(killedAt)
				activeAfter = activeAfter || prev.at.After(killedAt)
			}
		}
		j := i - 1
		for j > 0 && cur.at.Sub(r.samples[j-1].at) <= overlapWindow {
			j--
		}
		from := r.samples[j]
		var moving []int
		for w := range cur.tracker {
			if from.tracker[w] >= 0 && cur.tracker[w] > from.tracker[w] {
				moving = append(moving, w)
			}
		}
		if len(moving) <= nSigners {
			continue
		}
		near := false
		for _, at := range stalls {
			near = near || (at.After(from.at.Add(-stallGrace)) && at.Before(cur.at.Add(stallGrace)))
		}
		if near {
			excused++
			continue
		}
		violations = append(violations, fmt.Sprintf("workers %v between %v and %v after the first sample",
			moving, from.at.Sub(r.samples[0].at).Round(time.Millisecond), cur.at.Sub(r.samples[0].at).Round(time.Millisecond)))
	}
	require.True(r.t, activeBefore, "no worker was seen tracking before the kill")
	require.True(r.t, activeAfter, "no worker was seen tracking after the kill")
	require.Empty(r.t, violations, "more workers tracked at once than there are signers (%d)", nSigners)
	return excused, len(stalls)
}

// checkReceipts fetches every confirmed job's receipt from the node: each
// is successful and in the block the job names.
func (r *scaleRun) checkReceipts(done []jobs.Job, hashes []common.Hash) {
	r.t.Helper()
	ctx := context.Background()
	for lo := 0; lo < len(hashes); lo += 200 {
		hi := min(lo+200, len(hashes))
		rs, err := r.c.node.TransactionReceipts(ctx, hashes[lo:hi])
		require.NoError(r.t, err)
		for k, rc := range rs {
			j := done[lo+k]
			require.NotNil(r.t, rc, "job %s: no receipt for %s", j.ID, j.TxHash)
			require.Equal(r.t, types.ReceiptStatusSuccessful, rc.Status, "job %s", j.ID)
			require.Equal(r.t, *j.BlockNumber, rc.BlockNumber.Uint64(), "job %s", j.ID)
		}
	}
}
