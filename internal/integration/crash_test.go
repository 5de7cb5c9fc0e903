package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// A worker killed with SIGKILL at each point of the send path loses
// nothing and executes nothing twice; a fresh worker finishes the job. The
// time from the kill to confirmed is reported.
func TestCrashWindowsOfTheSendPath(t *testing.T) {
	t.Parallel()
	for _, at := range []string{"after_reserve", "after_persist", "after_broadcast"} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			c, counter := newCluster(t, clusterOptions{anvilArgs: []string{"--block-time", "1"}})
			doomed := c.addWorker("RELAYQ_TEST_CRASH_AT=" + at)
			ids := c.post(1, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter))
			deadline := time.Now().Add(60 * time.Second)
			for doomed.Running() {
				require.True(t, time.Now().Before(deadline), "the worker never reached %s", at)
				time.Sleep(20 * time.Millisecond)
			}
			killed := time.Now()
			c.addWorker()
			all := c.waitAll(ids, 4*time.Minute)
			recovery := time.Since(killed)
			j := all[0]
			require.Equal(t, jobs.Confirmed, j.Status, "%+v", j.Error)
			require.Len(t, j.Attempts, 1, "signed once")
			require.Equal(t, uint64(0), *j.Nonce)
			require.Equal(t, uint64(1), counterValue(t, c.node, commonAddr(counter)))
			latest, pending := c.nonces()
			require.Equal(t, uint64(1), latest)
			require.Equal(t, latest, pending)
			t.Logf("crash %s: job confirmed %.1fs after the kill", at, recovery.Seconds())
		})
	}
}

// The chaos run: 300 jobs, two worker processes killed with SIGKILL again
// and again, Redis killed and restarted (AOF always), a burst of RPC
// faults (503, 429, lost answers, timeouts, connection refused), a dropped
// transaction and a base-fee spike that forces fee bumps.
// Afterwards every job is terminal, the contract counted exactly the
// confirmed jobs, and the signer's nonces are contiguous.
func TestChaos(t *testing.T) {
	t.Parallel()
	c, counter := newCluster(t, clusterOptions{workers: 2, anvilArgs: []string{"--block-time", "1"}, proxy: true})
	const n = 300
	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter)

	// Clients post with an Idempotency-Key and retry until answered, as a
	// careful client does while Redis is down.
	ids := make([]string, n)
	var posted sync.WaitGroup
	var next int
	var mu sync.Mutex
	for range 8 {
		posted.Add(1)
		go func() {
			defer posted.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				for try := 0; ; try++ {
					require.Less(t, try, 600, "job %d never accepted", i)
					code, b, err := c.requestWith(http.MethodPost, "/v1/jobs", body, "Idempotency-Key", fmt.Sprintf("chaos-%d", i))
					if err == nil && (code == http.StatusAccepted || code == http.StatusOK) {
						var j jobs.Job
						require.NoError(t, jsonUnmarshal(b, &j))
						ids[i] = j.ID
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				// ~30 jobs/s in all, so the faults below land mid-stream.
				time.Sleep(time.Duration(200+rand.IntN(100)) * time.Millisecond)
			}
		}()
	}

	kills := 0
	killWorker := func(i int) {
		require.NoError(t, c.workers[i].Kill())
		kills++
		time.Sleep(500 * time.Millisecond)
		require.NoError(t, c.workers[i].Restart())
	}
	sleep := func(d time.Duration) { time.Sleep(d) }

	sleep(1500 * time.Millisecond)
	killWorker(0)
	// A burst of RPC faults: the node refuses broadcasts and receipts for a while.
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_sendRawTransaction"}, Status: http.StatusServiceUnavailable, Times: 30})
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_getTransactionReceipt"}, Status: http.StatusTooManyRequests, Times: 10})
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_sendRawTransaction"}, DropAfterForward: true, Times: 5})
	// Broadcasts slower than RELAYQ_RPC_TIMEOUT (3s): the client gives up,
	// the node still takes them.
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_sendRawTransaction"}, Delay: 4 * time.Second, Times: 3})
	sleep(time.Second)
	// The node is unreachable (connection refused) for a second.
	c.proxy.Down()
	sleep(time.Second)
	c.proxy.Up()
	killWorker(1)
	// A base-fee spike: what is pending now cannot be included until bumped.
	c.anvil.RPC(t, "anvil_setNextBlockBaseFeePerGas", hexutil.EncodeBig(hexBig(50e9)))
	sleep(time.Second)
	// Redis dies and comes back with its append-only file.
	c.redis.Kill()
	sleep(time.Second)
	c.redis.Restart()
	dropped := c.dropOnePending()
	for range 3 {
		sleep(time.Duration(1000+rand.IntN(2000)) * time.Millisecond)
		killWorker(rand.IntN(2))
	}
	// A graceful stop under load (SIGTERM) hands back what it holds.
	require.NoError(t, c.workers[0].Stop())
	require.NoError(t, c.workers[0].Restart())
	lastFault := time.Now()
	posted.Wait()

	all := c.waitAll(ids, 6*time.Minute)
	recovery := time.Since(lastFault)
	confirmed, failed := 0, 0
	nonces := map[uint64]string{}
	bumps := 0
	for _, j := range all {
		switch j.Status {
		case jobs.Confirmed:
			confirmed++
			require.Empty(t, nonces[*j.Nonce], "nonce %d confirmed for two jobs", *j.Nonce)
			nonces[*j.Nonce] = j.ID
		case jobs.Failed:
			failed++
		}
		for _, a := range j.Attempts {
			if a.Kind == jobs.KindBump {
				bumps++
			}
		}
	}
	count := counterValue(t, c.node, commonAddr(counter))
	latest, pending := c.nonces()
	t.Logf("chaos: jobs=%d confirmed=%d failed=%d counter=%d duplicates=%d lost=%d kills=%d redis_restarts=1 rpc_faults=%d dropped_tx=%v fee_bumps=%d recovery_after_last_fault=%.1fs latest_nonce=%d pending_nonce=%d",
		n, confirmed, failed, count, int(count)-confirmed, n-confirmed-failed, kills, c.proxy.Faulted(), dropped, bumps, recovery.Seconds(), latest, pending)
	require.Equal(t, uint64(confirmed), count, "the contract counted exactly the confirmed jobs: no duplicate, nothing lost")
	require.Equal(t, n, confirmed, "every job confirmed")
	require.Equal(t, latest, pending, "nothing stuck in the pool")
}

// dropOnePending drops one submitted job's transaction from anvil's pool.
func (c *cluster) dropOnePending() bool {
	code, b, err := c.request(http.MethodGet, "/v1/jobs?status=submitted&limit=5", "")
	if err != nil || code != http.StatusOK {
		return false
	}
	var list struct {
		Jobs []jobs.Job `json:"jobs"`
	}
	if jsonUnmarshal(b, &list) != nil || len(list.Jobs) == 0 {
		return false
	}
	_, err = c.anvil.Call(context.Background(), "anvil_dropTransaction", list.Jobs[0].TxHash)
	return err == nil
}

// A worker killed between writing a fee bump and broadcasting it: the
// replacement is durable, so the next worker's tracker sends it (or bumps
// again); the call still executes once.
func TestCrashInTheMiddleOfAFeeBump(t *testing.T) {
	t.Parallel()
	c, counter := newCluster(t, clusterOptions{anvilArgs: []string{"--no-mining"}})
	doomed := c.addWorker("RELAYQ_TEST_CRASH_AT=after_replace_persist")
	ids := c.post(1, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter))
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, b, err := c.request(http.MethodGet, "/v1/jobs/"+ids[0], "")
		require.NoError(t, err)
		var j jobs.Job
		require.NoError(t, jsonUnmarshal(b, &j))
		if j.Status == jobs.Submitted {
			break // signed at today's base fee
		}
		require.True(t, time.Now().Before(deadline), "never submitted")
		time.Sleep(50 * time.Millisecond)
	}
	for doomed.Running() {
		// Every block's base fee is far above what the tx offers: it is stuck.
		c.anvil.RPC(t, "anvil_setNextBlockBaseFeePerGas", hexutil.EncodeBig(hexBig(200e9)))
		c.anvil.RPC(t, "evm_mine")
		require.True(t, time.Now().Before(deadline), "the worker never bumped")
		time.Sleep(250 * time.Millisecond)
	}
	c.addWorker()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				_, _ = c.anvil.Call(context.Background(), "evm_mine")
			}
		}
	}()
	all := c.waitAll(ids, 2*time.Minute)
	close(stop)
	j := all[0]
	require.Equal(t, jobs.Confirmed, j.Status)
	require.GreaterOrEqual(t, len(j.Attempts), 2, "the bump was persisted before the crash")
	require.Equal(t, uint64(1), counterValue(t, c.node, commonAddr(counter)), "one execution")
	latest, pending := c.nonces()
	require.Equal(t, latest, pending)
}
