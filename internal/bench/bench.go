// Package bench is `relayq bench`: in one run on one machine it measures
// what the node itself can take, what relayq achieves end to end against
// the same kind of node, and what the obvious hand-written loop achieves,
// and reports relayq as a ratio of the node's limit.
package bench

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
)

// Options configure a run. Zero values take the defaults in Defaults.
type Options struct {
	Jobs       int // jobs per relayq scenario and transfers of the raw one
	NaiveJobs  int // jobs of the naive loop (it does about one per block)
	Signers    int // signers of the multi-signer scenario
	APIJobs    int // jobs posted to the API alone, flat out
	APIRate    int // jobs/s of the API's paced phase
	APISeconds int // length of the API's paced phase
	SoakJobs   int // jobs of the soak (only run when asked for: -only soak)
	SoakRate   int // jobs/s posted during the soak
	// SoakArchiveURL, if set, runs the soak with the PostgreSQL archive
	// on (RELAYQ_ARCHIVE_URL) and SoakHotRetention (default 10s) as
	// RELAYQ_HOT_RETENTION: Redis's used_memory stays bounded by the window.
	SoakArchiveURL   string
	SoakHotRetention time.Duration
	Clients          int           // concurrent HTTP clients posting jobs
	BlockTime        int           // anvil --block-time, seconds
	BlockGasLimit    uint64        // anvil --gas-limit; 0: anvil's default (30M)
	PollInterval     time.Duration // relayq's RELAYQ_POLL_INTERVAL
	Timeout          time.Duration // per scenario
	Chart            string        // PNG path; "" for none
	Dir              string        // logs and Redis data; "" for a temporary directory
	Only             []string      // scenarios to run: raw, relayq, relayq-multi, naive, api, fast, soak, kms (all but fast, soak and kms when empty)
	FastJobs         int           // jobs of the fast-chain scenario (its raw limit sends as many calls)
	FastBlockTime    time.Duration // the fast chain's anvil --block-time
	FastGasLimit     uint64        // the fast chain's anvil --gas-limit
	ProfileDir       string        // write CPU profiles of relayq's api and worker here ("": none)
	ProfileFor       time.Duration // how long each profile runs, from the first POST

	AnvilBin, RedisBin, RelayqBin string
	LocalKMSBin                   string        // local-kms, for the kms scenario only
	KMSLatency                    time.Duration // added to each KMS call in the kms scenario (a real KMS's round trip)

	Out io.Writer // the table
	Log io.Writer // progress lines

	// Set on the copy of Options a fast-chain run uses: the block time
	// anvil gets (instead of BlockTime), and jobs that are calls of the
	// sample contract's increment() rather than transfers.
	blockTime     time.Duration
	contractCalls bool
}

// Defaults fills the zero fields of o.
func (o *Options) Defaults() {
	if o.Jobs == 0 {
		o.Jobs = 2000
	}
	if o.NaiveJobs == 0 {
		o.NaiveJobs = 20
	}
	if o.Signers == 0 {
		o.Signers = 4
	}
	if o.APIJobs == 0 {
		o.APIJobs = 10000
	}
	if o.APIRate == 0 {
		o.APIRate = 1000
	}
	if o.APISeconds == 0 {
		o.APISeconds = 5
	}
	if o.SoakJobs == 0 {
		o.SoakJobs = 100000
	}
	if o.SoakHotRetention == 0 {
		o.SoakHotRetention = 10 * time.Second
	}
	if o.SoakRate == 0 {
		o.SoakRate = 1000
	}
	if o.Clients == 0 {
		o.Clients = 32
	}
	if o.BlockTime == 0 {
		o.BlockTime = 1
	}
	if o.PollInterval == 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.FastJobs == 0 {
		o.FastJobs = 10000
	}
	if o.FastBlockTime == 0 {
		o.FastBlockTime = 250 * time.Millisecond
	}
	if o.FastGasLimit == 0 {
		o.FastGasLimit = 1_000_000_000
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Result is one scenario's measurements.
type Result struct {
	Name       string
	Jobs       int
	Elapsed    time.Duration // first send or POST to all mined
	AcceptedIn time.Duration // first POST to last 202
	Progress   []point

	Accept, Broadcast, Mined []time.Duration
	MinedAt                  []time.Time

	Attempts              int
	RPCCalls, RPCRequests int
	RPCMethods            map[string]int
	RedisOps              int64
	RedisCommands         map[string]int // calls per Redis command during the scenario
	CPU                   time.Duration  // of relayq's processes
	NodeCPU, RedisCPU     time.Duration  // of anvil and redis-server, during the scenario
	PeakRSS               int64          // sum of relayq's processes' peaks
	NoRatio               bool           // not comparable with the raw limit (the API alone, the soak)
	RawRef                *Result        // the raw limit this one is a ratio of (nil: the report's Raw)
	RSS                   []rssPoint     // the soak's memory samples
	Archive               bool           // the soak ran with the archive on
}

// Rate is jobs (or transactions) per second.
func (r *Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Jobs) / r.Elapsed.Seconds()
}

// Report is a whole run.
type Report struct {
	Date    time.Time
	Options Options
	Raw     *Result
	Results []*Result // relayq scenarios and the naive loop
}

func (o *Options) wants(name string) bool {
	if len(o.Only) == 0 {
		// The soak is long; the kms scenario needs local-kms; the fast
		// chain has its own raw limit and 10,000 jobs.
		return name != "soak" && name != "kms" && name != "fast"
	}
	for _, n := range o.Only {
		if n == name {
			return true
		}
	}
	return false
}

// Run runs the scenarios one after another, each on a fresh anvil (and a
// fresh redis-server for relayq's), prints the table and draws the chart.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.Defaults()
	var err error
	root, _ := os.Getwd()
	if o.AnvilBin, err = findBinary(o.AnvilBin, "anvil", os.Getenv("ANVIL_BIN"),
		filepath.Join(root, ".tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")); err != nil {
		return nil, err
	}
	if o.RedisBin, err = findBinary(o.RedisBin, "redis-server"); err != nil {
		return nil, err
	}
	if o.wants("kms") {
		if o.LocalKMSBin, err = findBinary(o.LocalKMSBin, "local-kms", os.Getenv("LOCAL_KMS_BIN"),
			filepath.Join(root, ".tools/bin/local-kms")); err != nil {
			return nil, err
		}
	}
	if o.RelayqBin == "" {
		if o.RelayqBin, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "relayq-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	rep := &Report{Date: time.Now().UTC(), Options: o}
	step := func(name string, f func() (*Result, error)) error {
		if !o.wants(name) {
			return nil
		}
		fmt.Fprintf(o.Log, "bench: %s ...\n", name)
		r, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(o.Log, "bench: %s: %d in %v (%.0f/s)\n", name, r.Jobs, r.Elapsed.Round(time.Millisecond), r.Rate())
		if name == "raw" {
			rep.Raw = r
		} else {
			rep.Results = append(rep.Results, r)
		}
		return nil
	}
	if err := step("raw", func() (*Result, error) { return o.runRaw(ctx, dir) }); err != nil {
		return nil, err
	}
	if err := step("relayq", func() (*Result, error) { return o.runRelayq(ctx, dir, 1, false) }); err != nil {
		return nil, err
	}
	if err := step("kms", func() (*Result, error) { return o.runRelayq(ctx, dir, 1, true) }); err != nil {
		return nil, err
	}
	if o.wants("fast") {
		fmt.Fprintf(o.Log, "bench: fast ...\n")
		rs, err := o.runFast(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("fast: %w", err)
		}
		rep.Results = append(rep.Results, rs...)
	}
	if err := step("relayq-multi", func() (*Result, error) { return o.runRelayq(ctx, dir, o.Signers, false) }); err != nil {
		return nil, err
	}
	if err := step("naive", func() (*Result, error) { return o.runNaive(ctx, dir) }); err != nil {
		return nil, err
	}
	if o.wants("api") {
		fmt.Fprintf(o.Log, "bench: api ...\n")
		rs, err := o.runAPI(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("api: %w", err)
		}
		rep.Results = append(rep.Results, rs...)
	}
	if err := step("soak", func() (*Result, error) { return o.runSoak(ctx, dir) }); err != nil {
		return nil, err
	}
	rep.Print(o.Out)
	if o.Chart != "" {
		if err := rep.Chart(o.Chart); err != nil {
			return rep, fmt.Errorf("chart: %w", err)
		}
		fmt.Fprintf(o.Out, "\nchart: %s\n", o.Chart)
	}
	return rep, nil
}

// Print writes the table.
func (rep *Report) Print(w io.Writer) {
	o := rep.Options
	host, _ := os.Hostname()
	fmt.Fprintf(w, "relayq bench, %s, %s (%d cores), anvil --block-time %d", rep.Date.Format("2006-01-02 15:04 UTC"), host, numCPU(), o.BlockTime)
	if o.BlockGasLimit > 0 {
		fmt.Fprintf(w, " --gas-limit %d", o.BlockGasLimit)
	}
	fmt.Fprintf(w, ", %d jobs (21,000-gas transfers), %d HTTP clients\n", o.Jobs, o.Clients)
	if o.wants("fast") {
		fmt.Fprintf(w, "fast chain: anvil --block-time %v --gas-limit %d, %d jobs (increment() of the sample contract)\n", o.FastBlockTime.Seconds(), o.FastGasLimit, o.FastJobs)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-24s %7s %9s %8s %7s | %-19s | %-19s | %-19s | %9s %9s %9s %9s %8s\n",
		"scenario", "jobs", "time", "per s", "× raw", "accept p50/95/99 ms", "bcast p50/95/99 ms", "mined p50/95/99 s", "rpc/job", "redis/job", "cpu s/1k", "µs/job", "rss MB")
	all := rep.Results
	if rep.Raw != nil {
		all = append([]*Result{rep.Raw}, all...)
	}
	for _, r := range all {
		ratio := "-"
		raw := rep.Raw
		if r.RawRef != nil {
			raw = r.RawRef
		}
		if raw != nil && raw.Rate() > 0 && !r.NoRatio {
			ratio = fmt.Sprintf("%.2f", r.Rate()/raw.Rate())
		}
		// µs/job: relayq's processes and redis-server together, the
		// whole CPU cost of a job on relayq's side.
		fmt.Fprintf(w, "%-24s %7d %9s %8.0f %7s | %-19s | %-19s | %-19s | %9s %9s %9s %9s %8s\n",
			r.Name, r.Jobs, r.Elapsed.Round(time.Millisecond), r.Rate(), ratio,
			pcts(r.Accept, time.Millisecond, 1), pcts(r.Broadcast, time.Millisecond, 0), pcts(r.Mined, time.Second, 2),
			perJob(float64(r.RPCCalls), r.Jobs, r.RPCCalls > 0), perJob(float64(r.RedisOps), r.Jobs, r.RedisOps > 0),
			perJob(r.CPU.Seconds()*1000, r.Jobs, r.CPU > 0), perJob((r.CPU+r.RedisCPU).Seconds()*1e6, r.Jobs, r.CPU > 0), mb(r.PeakRSS))
	}
	for _, r := range all {
		if r.RPCCalls == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s: %d JSON-RPC calls in %d HTTP requests; per job:", r.Name, r.RPCCalls, r.RPCRequests)
		for _, m := range topMethods(r.RPCMethods, r.Jobs, 8) {
			fmt.Fprintf(w, " %s %.2f,", m.Method, m.PerJob)
		}
		if len(r.RedisCommands) > 0 {
			fmt.Fprintf(w, "\n%s: Redis commands per job:", r.Name)
			for _, m := range topMethods(r.RedisCommands, r.Jobs, 14) {
				fmt.Fprintf(w, " %s %.2f,", m.Method, m.PerJob)
			}
		}
		if r.Attempts > 0 {
			fmt.Fprintf(w, " (signed txs per job %.2f)", float64(r.Attempts)/float64(r.Jobs))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, r := range all {
		if r.NodeCPU > 0 || r.CPU > 0 {
			fmt.Fprintf(w, "%s: CPU seconds: relayq %.2f, anvil %.2f, redis-server %.2f\n", r.Name, r.CPU.Seconds(), r.NodeCPU.Seconds(), r.RedisCPU.Seconds())
		}
	}
	for _, r := range rep.Results {
		printSoak(w, r)
	}
	for _, r := range rep.Results {
		if r.AcceptedIn > 0 {
			fmt.Fprintf(w, "%s: the API accepted all %d in %v (%.0f/s)\n", r.Name, r.Jobs, r.AcceptedIn.Round(time.Millisecond), float64(r.Jobs)/r.AcceptedIn.Seconds())
		}
	}
}

func pcts(ds []time.Duration, unit time.Duration, prec int) string {
	if len(ds) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) float64 {
		i := int(p*float64(len(s))+0.5) - 1
		i = max(0, min(i, len(s)-1))
		return float64(s[i]) / float64(unit)
	}
	return fmt.Sprintf("%.*f/%.*f/%.*f", prec, q(0.50), prec, q(0.95), prec, q(0.99))
}

func perJob(total float64, jobs int, ok bool) string {
	if !ok || jobs == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", total/float64(jobs))
}

func mb(b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(b)/(1<<20))
}

func ethereumCall(from common.Address) ethereum.CallMsg {
	return ethereum.CallMsg{From: from, To: &sink, Value: big.NewInt(1)}
}
