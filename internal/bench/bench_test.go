package bench_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/bench"
	"github.com/relayq/relayq/internal/testenv"
)

// A small run of every scenario: the bench starts its own anvil nodes,
// redis-servers and relayq processes, every job is mined, the table has a
// row per scenario with a ratio to the raw limit, and the chart is a PNG.
// It checks that the measuring works, not how fast anything is.
func TestBenchRunsEveryScenario(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, log bytes.Buffer
	o := bench.Options{
		Jobs: 30, NaiveJobs: 2, Signers: 2, Clients: 4, APIJobs: 50, APIRate: 100, APISeconds: 1,
		Chart: filepath.Join(dir, "bench.png"), Dir: filepath.Join(dir, "run"),
		AnvilBin: testenv.AnvilBinary(t), RelayqBin: testenv.RelayqBinary(t),
		Timeout: 2 * time.Minute, Out: &out, Log: &log,
	}
	rep, err := bench.Run(context.Background(), o)
	require.NoError(t, err, "log:\n%s", log.String())

	require.NotNil(t, rep.Raw)
	require.Equal(t, 30, rep.Raw.Jobs)
	require.Positive(t, rep.Raw.Rate())
	require.Len(t, rep.Results, 5)
	for _, r := range rep.Results[:2] {
		require.Positive(t, r.Rate(), r.Name)
		require.Len(t, r.Accept, r.Jobs, r.Name)
		require.Len(t, r.Mined, r.Jobs, "%s: every job has a mined stamp", r.Name)
		require.Len(t, r.Broadcast, r.Jobs, r.Name)
		require.Equal(t, r.Jobs, r.Attempts, "%s: one signed transaction per job", r.Name)
		// Estimate and send at least, per job; a receipt batch covers many.
		require.GreaterOrEqual(t, r.RPCMethods["eth_sendRawTransaction"], r.Jobs, r.Name)
		require.GreaterOrEqual(t, r.RPCMethods["eth_estimateGas"], r.Jobs, r.Name)
		require.Positive(t, r.RedisOps, r.Name)
		require.Positive(t, r.PeakRSS, r.Name)
	}
	naive := rep.Results[2]
	require.Equal(t, "naive loop", naive.Name)
	require.Len(t, naive.Mined, 2)
	for i, want := range []int{50, 100} {
		r := rep.Results[3+i]
		require.True(t, r.NoRatio, r.Name)
		require.Equal(t, want, r.Jobs, r.Name)
		require.Len(t, r.Accept, want, r.Name)
		for _, d := range r.Accept {
			require.Positive(t, d, "%s: every request answered", r.Name)
		}
	}
	require.Equal(t, "API alone, 100/s", rep.Results[4].Name)

	table := out.String()
	for _, want := range []string{"raw node limit", "relayq, 1 signer", "relayq, 2 signers", "naive loop", "API alone, flat out", "× raw", "rpc/job"} {
		require.Contains(t, table, want)
	}

	f, err := os.Open(o.Chart)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	require.Greater(t, img.Bounds().Dx(), 500)
}

// The kms scenario (run only when asked for) starts local-kms, creates a
// key, funds it, and runs relayq with that key alone behind a latency
// proxy: every job is mined, one signature each, and the row is in the
// table.
func TestBenchKMSScenario(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, log bytes.Buffer
	o := bench.Options{
		Jobs: 30, Clients: 4, Only: []string{"kms"}, KMSLatency: 5 * time.Millisecond, Dir: filepath.Join(dir, "run"),
		AnvilBin: testenv.AnvilBinary(t), RelayqBin: testenv.RelayqBinary(t), LocalKMSBin: testenv.LocalKMSBinary(t),
		Timeout: 2 * time.Minute, Out: &out, Log: &log,
	}
	rep, err := bench.Run(context.Background(), o)
	require.NoError(t, err, "log:\n%s", log.String())
	require.Len(t, rep.Results, 1)
	r := rep.Results[0]
	require.Equal(t, "relayq, 1 KMS signer", r.Name)
	require.Positive(t, r.Rate())
	require.Len(t, r.Mined, r.Jobs, "every job has a mined stamp")
	require.Equal(t, r.Jobs, r.Attempts, "one signed transaction per job")
	require.Contains(t, out.String(), "relayq, 1 KMS signer")
}

// The fast scenario (run only when asked for) measures its own raw limit
// with counter calls on a fast anvil and relayq against it: both rows see
// all their transactions mined, each relayq job is one estimated and
// signed call, the relayq row is a ratio of the fast raw limit, and it
// reports CPU per job with Redis's and Redis commands by name.
func TestBenchFastScenario(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out, log bytes.Buffer
	o := bench.Options{
		FastJobs: 40, Clients: 4, Only: []string{"fast"}, Dir: filepath.Join(dir, "run"),
		AnvilBin: testenv.AnvilBinary(t), RelayqBin: testenv.RelayqBinary(t),
		Timeout: 2 * time.Minute, Out: &out, Log: &log,
	}
	rep, err := bench.Run(context.Background(), o)
	require.NoError(t, err, "log:\n%s", log.String())
	require.Nil(t, rep.Raw, "the fast raw limit is a row of its own")
	require.Len(t, rep.Results, 2)
	raw, rq := rep.Results[0], rep.Results[1]
	require.Equal(t, "fast: raw node limit", raw.Name)
	require.Equal(t, 40, raw.Jobs)
	require.Equal(t, "fast: relayq, 1 signer", rq.Name)
	require.Same(t, raw, rq.RawRef)
	require.Len(t, rq.Mined, 40, "every job has a mined stamp")
	require.Equal(t, 40, rq.Attempts, "one signed transaction per job")
	require.Positive(t, rq.RedisCPU)
	require.Positive(t, rq.RedisCommands["hset"], "Redis commands by name")
	require.Equal(t, 40, rq.RPCMethods["eth_estimateGas"], "each job's call is estimated")
	table := out.String()
	for _, want := range []string{"fast chain: anvil --block-time 0.25 --gas-limit 1000000000", "fast: relayq, 1 signer", "µs/job", "Redis commands per job"} {
		require.Contains(t, table, want)
	}
}
