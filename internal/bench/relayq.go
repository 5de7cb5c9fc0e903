package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/jobs"
)

// stack is one relayq deployment of the bench: a fresh anvil behind a
// counting proxy, a fresh redis-server, a `relayq api` and (unless the API
// is measured alone) a `relayq worker`.
type stack struct {
	name    string
	node    *anvilNode
	rds     *redisNode
	rpc     *rpcCounter
	api     *child
	worker  *child
	base    string
	apiKey  string
	addrs   []string // the signers, or none when the API runs alone
	counter string   // the sample contract, when jobs call it (contractCalls)
	hc      *http.Client
	store   *jobs.Store
	pprof   map[string]string // process name → RELAYQ_PPROF_LISTEN
}

// startStack starts a stack whose worker signs with the first signers of
// anvil's funded keys or, with kk, with that KMS key alone (funded here).
func (o *Options) startStack(ctx context.Context, dir, name string, signers int, withWorker bool, kk *kmsKey) (st *stack, err error) {
	st = &stack{name: name, apiKey: "bench-key-0123456789abcdef", pprof: map[string]string{}}
	defer func() {
		if err != nil {
			st.close()
		}
	}()
	if st.node, err = o.startAnvil(ctx, dir, "anvil-"+name); err != nil {
		return st, err
	}
	if st.rds, err = o.startRedis(ctx, dir, "redis-"+name); err != nil {
		return st, err
	}
	if o.contractCalls {
		addr, err := deployCounter(ctx, st.node)
		if err != nil {
			return st, err
		}
		st.counter = addr.Hex()
	}
	if st.rpc, err = newRPCCounter(st.node.url); err != nil {
		return st, err
	}
	if kk != nil {
		if err := st.node.client.Client().CallContext(ctx, nil, "anvil_setBalance", kk.addr, "0x3635C9ADC5DEA00000"); err != nil {
			return st, fmt.Errorf("fund the kms key: %w", err)
		}
		signers = 0
	}
	keys := make([]string, signers)
	for i := range keys {
		keys[i] = devchain.DevKeys[i]
		st.addrs = append(st.addrs, crypto.PubkeyToAddress(devKey(i).PublicKey).Hex())
	}
	port, err := freePort()
	if err != nil {
		return st, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	st.base = "http://" + listen
	env := append(os.Environ(),
		"REDIS_URL="+st.rds.url(),
		"RELAYQ_RPC_URL="+st.rpc.URL(),
		"RELAYQ_PRIVATE_KEYS="+strings.Join(keys, ","),
		"RELAYQ_LISTEN="+listen,
		"RELAYQ_API_KEYS="+st.apiKey,
		"RELAYQ_POLL_INTERVAL="+o.PollInterval.String(),
		"RELAYQ_RATE_LIMIT=0",
		"RELAYQ_LOG_LEVEL=warn",
	)
	if name == "soak" && o.SoakArchiveURL != "" {
		env = append(env, "RELAYQ_ARCHIVE_URL="+o.SoakArchiveURL, "RELAYQ_HOT_RETENTION="+o.SoakHotRetention.String())
	}
	if kk != nil {
		env = append(env, kk.env...) // the later RELAYQ_PRIVATE_KEYS wins
		st.addrs = []string{kk.addr}
	}
	procEnv := func(proc string) ([]string, error) {
		if o.ProfileDir == "" {
			return env, nil
		}
		pp, err := freePort()
		if err != nil {
			return nil, err
		}
		st.pprof[proc] = "127.0.0.1:" + strconv.Itoa(pp)
		return append(append([]string(nil), env...), "RELAYQ_PPROF_LISTEN="+st.pprof[proc]), nil
	}
	if withWorker {
		wenv, err := procEnv("worker")
		if err != nil {
			return st, err
		}
		if st.worker, err = start(dir, name+"-worker", o.RelayqBin, wenv, "worker"); err != nil {
			return st, err
		}
	} else {
		st.addrs = nil // no worker registers them: the API would refuse a from
	}
	aenv, err := procEnv("api")
	if err != nil {
		return st, err
	}
	if st.api, err = start(dir, name+"-api", o.RelayqBin, aenv, "api"); err != nil {
		return st, err
	}
	st.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.Clients * 4, MaxConnsPerHost: o.Clients * 4}}
	ready := func() error { return signersReady(ctx, st.hc, st.base, st.apiKey, len(st.addrs)) }
	if err := st.api.waitReady(ctx, ready); err != nil {
		return st, err
	}
	st.store = jobs.NewStore(st.rds.rdb, "relayq:")
	return st, nil
}

func (st *stack) close() {
	if st.hc != nil {
		st.hc.CloseIdleConnections()
	}
	st.api.stop()
	st.worker.stop()
	if st.rpc != nil {
		st.rpc.Close()
	}
	st.rds.close()
	st.node.close()
}

// body is job i's request: a 1-wei transfer to the sink, from the signers
// in turn.
func (st *stack) body(i int) string {
	if st.counter != "" {
		return fmt.Sprintf(`{"to":%q,"function":"increment()","from":%q}`, st.counter, st.addrs[i%len(st.addrs)])
	}
	if len(st.addrs) == 0 {
		return fmt.Sprintf(`{"to":%q,"data":"0x","value":"1"}`, sink.Hex())
	}
	return fmt.Sprintf(`{"to":%q,"data":"0x","value":"1","from":%q}`, sink.Hex(), st.addrs[i%len(st.addrs)])
}

// profile fetches CPU profiles (and a goroutine dump a second in) of the
// stack's processes while a scenario runs; wait for the returned group.
func (o *Options) profile(ctx context.Context, st *stack) *sync.WaitGroup {
	var wg sync.WaitGroup
	for proc, addr := range st.pprof {
		wg.Add(2)
		path := filepath.Join(o.ProfileDir, st.name+"-"+proc+".pprof")
		go func() {
			defer wg.Done()
			time.Sleep(time.Second)
			_ = fetchURL(ctx, "http://"+addr+"/debug/pprof/goroutine?debug=1", strings.TrimSuffix(path, ".pprof")+"-goroutines.txt")
		}()
		go func() {
			defer wg.Done()
			if err := fetchProfile(ctx, addr, o.ProfileFor, path); err != nil {
				fmt.Fprintf(o.Log, "bench: profile: %v\n", err)
			}
		}()
	}
	return &wg
}

// post sends jobs [from, to) with o.Clients concurrent clients, recording
// each accept latency and id.
func (o *Options) post(ctx context.Context, st *stack, ids []string, accept []time.Duration) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, o.Clients)
	for range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) {
					return
				}
				t0 := time.Now()
				id, err := postJob(ctx, st.hc, st.base, st.apiKey, st.body(i))
				accept[i] = time.Since(t0)
				if err != nil {
					errc <- err
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// runRelayq runs N jobs through relayq's api and worker processes on
// signers keys, or on one key in a local-kms (withKMS): POSTed over HTTP by
// concurrent clients, from the first POST until relayq reports every job
// mined.
func (o *Options) runRelayq(ctx context.Context, dir string, signers int, withKMS bool) (*Result, error) {
	name, title := fmt.Sprintf("relayq-%dsigner", signers), fmt.Sprintf("relayq, %d signer%s", signers, plural(signers))
	var kk *kmsKey
	if withKMS {
		var err error
		if kk, err = o.startKMS(ctx, dir); err != nil {
			return nil, err
		}
		defer kk.close()
		name, title = "relayq-kms", "relayq, 1 KMS signer"
	}
	st, err := o.startStack(ctx, dir, name, signers, true, kk)
	if err != nil {
		return nil, err
	}
	defer st.close()
	cmd0, err := st.rds.commands(ctx)
	if err != nil {
		return nil, err
	}
	stats0, err := st.rds.commandStats(ctx)
	if err != nil {
		return nil, err
	}
	if err := nextBlock(ctx, st.node.client); err != nil {
		return nil, err
	}
	r := &Result{Name: title, Jobs: o.Jobs}
	nodeCPU0, redisCPU0 := st.node.usage().CPU, st.rds.usage().CPU
	defer o.profile(ctx, st).Wait()

	p := &progress{start: time.Now()}
	ids := make([]string, o.Jobs)
	r.Accept = make([]time.Duration, o.Jobs)
	done := make(chan error, 1)
	go func() { done <- waitMined(ctx, st.store, o.Jobs, p, o.Timeout) }()
	if err := o.post(ctx, st, ids, r.Accept); err != nil {
		return nil, fmt.Errorf("%s: %w", st.name, err)
	}
	r.AcceptedIn = time.Since(p.start)
	if err := <-done; err != nil {
		return nil, fmt.Errorf("%s: %w", st.name, err)
	}
	r.Elapsed = p.points[len(p.points)-1].At
	r.Progress = p.points

	// The probes above cost Redis commands too; they are few (three per
	// poll) and counted out.
	cmd1, err := st.rds.commands(ctx)
	if err != nil {
		return nil, err
	}
	r.RedisOps = cmd1 - cmd0 - int64(3*len(p.points))
	stats1, err := st.rds.commandStats(ctx)
	if err != nil {
		return nil, err
	}
	r.RedisCommands = map[string]int{}
	for k, v := range stats1 {
		if d := v - stats0[k]; d > 0 {
			r.RedisCommands[k] = d
		}
	}
	r.RPCMethods, r.RPCCalls, r.RPCRequests = st.rpc.snapshot()
	r.NodeCPU, r.RedisCPU = st.node.usage().CPU-nodeCPU0, st.rds.usage().CPU-redisCPU0
	for _, c := range []*child{st.api, st.worker} {
		u := c.usage()
		r.CPU += u.CPU
		r.PeakRSS += u.PeakRSS
	}
	if kk != nil {
		fmt.Fprintf(o.Log, "bench: %s: local-kms used %.2f CPU seconds\n", st.name, kk.server.usage().CPU.Seconds())
	}
	if err := jobLatencies(ctx, st.store, ids, r); err != nil {
		return nil, err
	}
	return r, nil
}
