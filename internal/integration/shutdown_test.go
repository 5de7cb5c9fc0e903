//go:build linux

package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

// exitSlack is what the OS may add, on a loaded machine, between the
// process finishing its shutdown and the test seeing it exit. The bounds
// below are correctness bounds (the process promises to exit within
// RELAYQ_SHUTDOWN_TIMEOUT), set far below what an unbounded shutdown would
// take in each scenario.
const exitSlack = 2 * time.Second

// proc is a relayq process this file starts itself rather than through
// testenv.Start, to see its exit status and when it exited.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	exited  time.Time // valid once done is closed
}

func startProc(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logPath: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	require.NoError(t, err)
	defer logf.Close() // the child has its own descriptor
	p.cmd = exec.Command(testenv.RelayqBinary(t), args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// Die with the test binary, whatever happens to it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("log of %s:\n%s", p.name, tail(p.log(), 40))
		}
	})
	return p
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// waitLog waits until the process has logged s.
func (p *proc) waitLog(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.log(), s) {
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before logging %q", p.name, p.cmd.ProcessState, s)
		default:
		}
		require.True(t, time.Now().Before(deadline), "%s did not log %q within %v", p.name, s, within)
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) time.Time {
	t.Helper()
	now := time.Now()
	require.NoError(t, p.cmd.Process.Signal(sig))
	return now
}

// waitExit waits (at most within) for the process to exit and returns its
// exit code and how long after since it exited.
func (p *proc) waitExit(t *testing.T, since time.Time, within time.Duration) (int, time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), p.exited.Sub(since)
	case <-time.After(within):
		t.Fatalf("%s still running %v after the signal", p.name, within)
		return 0, 0
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond every 5 ms for at most within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "waited %v for %s", within, what)
		time.Sleep(5 * time.Millisecond)
	}
}

// Shutdown under load loses nothing. 300 jobs are posted by 16 clients in
// a tight loop to an API process that gets SIGTERM while requests are in
// flight: it stops accepting (clients then post to a second API), answers
// the requests it already has, and exits 0 within the bound. Then the only
// worker gets SIGTERM while four of its handlers are stuck broadcasting
// (after the write-ahead, for longer than the drain time): it exits 0
// within the bound, handing their tasks back. A fresh worker finishes:
// every job answered 202 is confirmed exactly once, no job exists that
// was not answered 202, and the signer's nonces are contiguous.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	const (
		n     = 300
		bound = 6 * time.Second // drain 4 s
	)
	c, counter := newCluster(t, clusterOptions{
		anvilArgs: []string{"--block-time", "1"}, proxy: true,
		env: []string{"RELAYQ_SHUTDOWN_TIMEOUT=" + bound.String()},
	})
	port := testenv.FreePort(t)
	apiB := startProc(t, "api-b", append([]string{"RELAYQ_LISTEN=127.0.0.1:" + fmt.Sprint(port), "RELAYQ_API_KEYS=" + testAPIKey}, c.env...), "api")
	urlB := fmt.Sprintf("http://127.0.0.1:%d", port)
	apiB.waitLog(t, `"msg":"api listening"`, 30*time.Second)
	// Broadcasts may hang for 20 s below without the client giving up first.
	w1 := startProc(t, "worker-1", append(append([]string{}, c.env...), "RELAYQ_RPC_TIMEOUT=30s"), "worker")
	w1.waitLog(t, `"msg":"worker started"`, 30*time.Second)

	body := fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter)
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(base string) (int, []byte, error) {
		r, err := testenv.Request(client, base, testAPIKey, http.MethodPost, "/v1/jobs", body)
		return r.Status, r.Body, err
	}

	ids := make([]string, n)
	var (
		next, accepted, refusedByB, answeredAfterSignal atomic.Int64
		signalledB                                      atomic.Int64 // unix nanos of the SIGTERM, 0 before
		posters                                         sync.WaitGroup
		errMu                                           sync.Mutex
		postErrs                                        []string
	)
	for range 16 {
		posters.Add(1)
		go func() {
			defer posters.Done()
			base := urlB
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				for {
					code, b, err := post(base)
					if err != nil && base == urlB {
						// B stopped accepting: a connection error, nothing
						// stored; this client posts to the other API now.
						refusedByB.Add(1)
						base = c.apiURL
						continue
					}
					if err != nil || code != http.StatusAccepted {
						errMu.Lock()
						postErrs = append(postErrs, fmt.Sprintf("job %d via %s: %d %s %v", i, base, code, b, err))
						errMu.Unlock()
						return
					}
					var j jobs.Job
					if err := jsonUnmarshal(b, &j); err != nil {
						errMu.Lock()
						postErrs = append(postErrs, fmt.Sprintf("job %d: %v", i, err))
						errMu.Unlock()
						return
					}
					if s := signalledB.Load(); base == urlB && s != 0 && time.Now().UnixNano() > s {
						answeredAfterSignal.Add(1)
					}
					ids[i] = j.ID
					accepted.Add(1)
					break
				}
			}
		}()
	}

	// SIGTERM the API while its clients have requests in flight.
	waitFor(t, time.Minute, "60 jobs accepted", func() bool { return accepted.Load() >= 60 })
	sentB := apiB.signal(t, syscall.SIGTERM)
	signalledB.Store(sentB.UnixNano())
	codeB, tookB := apiB.waitExit(t, sentB, bound+time.Minute)
	require.Equal(t, 0, codeB, "the API exits cleanly")
	require.Less(t, tookB, bound+exitSlack, "the API exits within RELAYQ_SHUTDOWN_TIMEOUT")
	require.Contains(t, apiB.log(), `"msg":"stopped"`)

	// Four broadcasts hang for 20 s, far past the 4 s drain: their
	// handlers are between the write-ahead and the node's answer.
	waitFor(t, time.Minute, "150 jobs accepted", func() bool { return accepted.Load() >= 150 })
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_sendRawTransaction"}, Delay: 20 * time.Second, Times: 4})
	waitFor(t, time.Minute, "4 broadcasts hanging", func() bool { return c.proxy.Faulted() >= 4 })
	sentW := w1.signal(t, syscall.SIGTERM)
	codeW, tookW := w1.waitExit(t, sentW, bound+time.Minute)
	require.Equal(t, 0, codeW, "the worker exits cleanly")
	require.Less(t, tookW, bound+exitSlack, "the worker exits within RELAYQ_SHUTDOWN_TIMEOUT, not after the 20 s broadcasts")
	log1 := w1.log()
	require.Contains(t, log1, "back to queue", "Asynq handed the unfinished tasks back")
	require.Contains(t, log1, `"msg":"stopped"`)

	c.addWorker()
	posters.Wait()
	require.Empty(t, postErrs)
	require.Equal(t, int64(n), accepted.Load())
	require.NotZero(t, answeredAfterSignal.Load(), "requests in flight at the SIGTERM were answered")

	all := c.waitAll(ids, 4*time.Minute)
	requireOncePerNonce(t, all, n)
	c.requireExecutedOnce(n, counter)
	// No job exists that its client was not told about.
	stored := c.allJobIDs()
	require.Len(t, stored, n)
	for _, id := range ids {
		require.True(t, stored[id], "job %s answered 202 but not stored", id)
	}
	t.Logf("shutdown under load: api exited %v after SIGTERM (%d answered 202 after it, %d posts refused and sent elsewhere); worker exited %v after SIGTERM with 4 broadcasts hanging; %d jobs confirmed once each",
		tookB.Round(time.Millisecond), answeredAfterSignal.Load(), refusedByB.Load(), tookW.Round(time.Millisecond), n)
}

// allJobIDs lists every job through the API, page by page.
func (c *cluster) allJobIDs() map[string]bool {
	c.t.Helper()
	out := map[string]bool{}
	cursor := ""
	for range 100 {
		code, b, err := c.request(http.MethodGet, "/v1/jobs?limit=500&cursor="+url.QueryEscape(cursor), "")
		require.NoError(c.t, err)
		require.Equal(c.t, http.StatusOK, code, string(b))
		var page struct {
			Jobs []struct {
				ID string `json:"id"`
			} `json:"jobs"`
			NextCursor string `json:"next_cursor"`
		}
		require.NoError(c.t, jsonUnmarshal(b, &page))
		for _, j := range page.Jobs {
			out[j.ID] = true
		}
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
	c.t.Fatal("more than 100 pages of jobs")
	return nil
}

// A shutdown is bounded even when a handler hangs far longer (its task goes
// back to the queue and another worker takes it) and when Redis hangs (the
// shutdown is abandoned, exit status 1), and a second signal exits at once
// without waiting for the drain.
func TestShutdownIsBoundedAndASecondSignalForcesExit(t *testing.T) {
	t.Parallel()
	const bound = 3 * time.Second
	c, counter := newCluster(t, clusterOptions{anvilArgs: []string{"--block-time", "1"}, proxy: true})
	// The estimate hangs 30 s; the RPC timeout would let it.
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_estimateGas"}, Delay: 30 * time.Second, Times: 1})
	env := append(append([]string{}, c.env...), "RELAYQ_RPC_TIMEOUT=60s")
	w1 := startProc(t, "worker-bounded", append(env, "RELAYQ_SHUTDOWN_TIMEOUT="+bound.String()), "worker")
	w1.waitLog(t, `"msg":"worker started"`, 30*time.Second)
	c.post(1, fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter))
	waitFor(t, time.Minute, "the estimate hanging", func() bool { return c.proxy.Faulted() >= 1 })

	sent := w1.signal(t, syscall.SIGTERM)
	code, took := w1.waitExit(t, sent, time.Minute)
	require.Equal(t, 0, code)
	require.Less(t, took, bound+exitSlack, "exited within RELAYQ_SHUTDOWN_TIMEOUT, not after the 30 s estimate")
	require.Contains(t, w1.log(), "back to queue")

	// The next worker gets the task back, and hangs in the estimate too.
	c.proxy.Inject(testenv.Fault{Methods: []string{"eth_estimateGas"}, Delay: 30 * time.Second, Times: 1})
	w2 := startProc(t, "worker-forced", append(env, "RELAYQ_SHUTDOWN_TIMEOUT=60s"), "worker")
	w2.waitLog(t, `"msg":"worker started"`, 30*time.Second)
	waitFor(t, time.Minute, "the handed-back task hanging in the next worker", func() bool { return c.proxy.Faulted() >= 2 })
	w2.signal(t, syscall.SIGTERM)
	w2.waitLog(t, `"msg":"shutting down"`, 10*time.Second)
	sent = w2.signal(t, syscall.SIGTERM)
	code, took = w2.waitExit(t, sent, time.Minute)
	require.Equal(t, 128+int(syscall.SIGTERM), code, "a second SIGTERM exits at once with 143")
	require.Less(t, took, 10*time.Second, "without waiting for the 40 s drain")
	require.Contains(t, w2.log(), "second signal (terminated)")
	require.NotContains(t, w2.log(), `"msg":"stopped"`)

	// Redis hangs (answers nothing, closes nothing) as a worker stops: its
	// shutdown cannot finish, and is abandoned within the bound.
	gate := newTCPGate(t, c.redis.Addr())
	w3 := startProc(t, "worker-redis-hangs", append(env, "RELAYQ_SHUTDOWN_TIMEOUT="+bound.String(), "REDIS_URL=redis://"+gate.addr()+"/0"), "worker")
	w3.waitLog(t, `"msg":"worker started"`, 30*time.Second)
	gate.freeze()
	sent = w3.signal(t, syscall.SIGTERM)
	code, took = w3.waitExit(t, sent, time.Minute)
	log3 := w3.log()
	require.Equal(t, 1, code, "an abandoned shutdown exits 1")
	require.Less(t, took, bound+exitSlack)
	require.Contains(t, log3, `"msg":"shutdown timed out"`)
	require.NotContains(t, log3, "panic")
}

// tcpGate forwards TCP connections to a server until frozen; from then on
// it moves no more bytes either way and closes nothing, like a server that
// hangs.
type tcpGate struct {
	ln     net.Listener
	frozen chan struct{}
	once   sync.Once
}

func newTCPGate(t *testing.T, upstream string) *tcpGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := &tcpGate{ln: ln, frozen: make(chan struct{})}
	closed := make(chan struct{})
	var conns sync.WaitGroup
	t.Cleanup(func() {
		close(closed)
		ln.Close()
		conns.Wait()
	})
	pipe := func(dst, src net.Conn) {
		defer conns.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-g.frozen:
				<-closed // hold everything until the test ends
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", upstream)
			if err != nil {
				in.Close()
				continue
			}
			conns.Add(2)
			go func() {
				<-closed
				in.Close()
				out.Close()
			}()
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	return g
}

func (g *tcpGate) addr() string { return g.ln.Addr().String() }

func (g *tcpGate) freeze() { g.once.Do(func() { close(g.frozen) }) }
