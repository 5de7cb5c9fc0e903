package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/relayq/relayq/internal/bench"
)

// runBench is `relayq bench`: see internal/bench and docs/benchmarks.md.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relayq bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	var only string
	fs.IntVar(&o.Jobs, "jobs", 2000, "jobs per relayq scenario (and transfers of the raw one)")
	fs.IntVar(&o.NaiveJobs, "naive-jobs", 20, "jobs of the naive loop (about one per block)")
	fs.IntVar(&o.Signers, "signers", 4, "signers of the multi-signer scenario")
	fs.IntVar(&o.APIJobs, "api-jobs", 10000, "jobs posted to the API alone, flat out")
	fs.IntVar(&o.APIRate, "api-rate", 1000, "jobs/s of the API's paced phase (its latency is the one to read)")
	fs.IntVar(&o.APISeconds, "api-seconds", 5, "length of the API's paced phase, in seconds")
	fs.IntVar(&o.SoakJobs, "soak-jobs", 100000, "jobs of the soak (run it with -only soak)")
	fs.IntVar(&o.SoakRate, "soak-rate", 1000, "jobs/s posted during the soak")
	fs.IntVar(&o.FastJobs, "fast-jobs", 10000, "jobs of the fast-chain scenario (run it with -only fast)")
	fs.DurationVar(&o.FastBlockTime, "fast-block-time", 250*time.Millisecond, "the fast chain's anvil --block-time")
	fs.Uint64Var(&o.FastGasLimit, "fast-gas-limit", 1_000_000_000, "the fast chain's anvil --gas-limit")
	fs.StringVar(&o.SoakArchiveURL, "soak-archive", "", "run the soak with the PostgreSQL archive at this postgres:// URL (RELAYQ_ARCHIVE_URL)")
	fs.DurationVar(&o.SoakHotRetention, "soak-hot", 10*time.Second, "RELAYQ_HOT_RETENTION of the soak with -soak-archive")
	fs.IntVar(&o.Clients, "clients", 32, "concurrent HTTP clients posting jobs")
	fs.IntVar(&o.BlockTime, "block-time", 1, "anvil --block-time in seconds")
	fs.Uint64Var(&o.BlockGasLimit, "block-gas-limit", 0, "anvil --gas-limit (0: anvil's default, 30M)")
	fs.DurationVar(&o.PollInterval, "poll-interval", 0, "relayq's RELAYQ_POLL_INTERVAL (default 200ms)")
	fs.DurationVar(&o.Timeout, "timeout", 0, "per-scenario limit (default 10m)")
	fs.StringVar(&o.Chart, "chart", "bench.png", "where to write the PNG chart (\"\" for none)")
	fs.StringVar(&o.Dir, "dir", "", "keep logs and Redis data here (default: a temporary directory, removed)")
	fs.StringVar(&only, "only", "", "comma-separated scenarios: raw,relayq,relayq-multi,naive,api,fast,soak,kms (default all but fast, soak and kms)")
	fs.StringVar(&o.ProfileDir, "profile", "", "write CPU profiles of relayq's api and worker processes into this directory")
	fs.DurationVar(&o.ProfileFor, "profile-for", 5*time.Second, "length of each CPU profile, from the first POST")
	fs.StringVar(&o.AnvilBin, "anvil", "", "anvil binary (default $ANVIL_BIN, .tools/, PATH)")
	fs.StringVar(&o.RedisBin, "redis-server", "", "redis-server binary (default PATH)")
	fs.StringVar(&o.RelayqBin, "relayq", "", "the relayq binary whose api and worker the scenarios run (default: this one; another build measures a before/after)")
	fs.DurationVar(&o.KMSLatency, "kms-latency", 0, "delay added to each KMS call of the kms scenario, as a real KMS's network round trip (e.g. 20ms)")
	fs.StringVar(&o.LocalKMSBin, "local-kms", "", "local-kms binary, for -only kms (default $LOCAL_KMS_BIN, .tools/bin, PATH)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("relayq bench: unexpected argument %q", fs.Arg(0))
	}
	if o.Jobs < 1 || o.NaiveJobs < 1 || o.Signers < 1 || o.Clients < 1 || o.BlockTime < 1 || o.APIJobs < 1 || o.APIRate < 1 || o.APISeconds < 1 || o.SoakJobs < 1 || o.SoakRate < 1 || o.FastJobs < 1 || o.FastBlockTime < time.Millisecond {
		return fmt.Errorf("relayq bench: -jobs, -naive-jobs, -api-jobs, -soak-jobs, -soak-rate, -signers, -clients, -fast-jobs and -block-time must be at least 1, -fast-block-time at least 1ms")
	}
	if o.Signers > 10 {
		return fmt.Errorf("relayq bench: -signers is at most 10 (anvil funds 10 keys)")
	}
	if only != "" {
		o.Only = strings.Split(only, ",")
		for _, n := range o.Only {
			switch n {
			case "raw", "relayq", "relayq-multi", "naive", "api", "fast", "soak", "kms":
			default:
				return fmt.Errorf("relayq bench: unknown scenario %q in -only", n)
			}
		}
	}
	o.Out, o.Log = stdout, stderr
	_, err := bench.Run(ctx, o)
	return err
}
