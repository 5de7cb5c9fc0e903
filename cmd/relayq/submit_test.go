package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/internal/testenv"
)

// devAPI is `relayq dev` running in this test process: a real API and
// worker on the in-process chain, which the CLI is pointed at.
type devAPI struct {
	base    string // http://127.0.0.1:port
	counter string // the sample contract's address
	banner  string // what dev printed on stdout
	stderr  *syncBuffer

	cancel  context.CancelFunc
	done    chan error
	stopped bool
	err     error // what run returned, once stopped
}

// stop ends relayq dev (once) and returns what run returned; it fails the
// test if dev does not stop within 30 s.
func (d *devAPI) stop(t *testing.T) error {
	t.Helper()
	if !d.stopped {
		d.stopped = true
		d.cancel()
		select {
		case d.err = <-d.done:
		case <-time.After(30 * time.Second):
			t.Error("relayq dev did not stop after its context ended")
		}
	}
	return d.err
}

// startDev runs `relayq dev` until the test ends and waits until it is ready.
func startDev(t *testing.T) *devAPI { return startDevEnv(t, nil) }

// startDevEnv is startDev with more variables in the environment dev sees,
// as if exported in the shell that runs it.
func startDevEnv(t *testing.T, shell map[string]string) *devAPI {
	testenv.SkipShort(t, "runs relayq dev")
	t.Helper()
	port := testenv.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	env := map[string]string{"RELAYQ_LISTEN": fmt.Sprintf("127.0.0.1:%d", port)}
	for k, v := range shell {
		env[k] = v
	}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"relayq", "dev"}, envOf(env), &out, &errOut)
	}()
	d := &devAPI{base: fmt.Sprintf("http://127.0.0.1:%d", port), cancel: cancel, done: done, stderr: &errOut}
	t.Cleanup(func() { _ = d.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(d.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			d.stopped, d.err = true, err
			t.Fatalf("relayq dev exited: %v\nstderr:\n%s", err, errOut.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "relayq dev not ready: %s", errOut.String())
		time.Sleep(50 * time.Millisecond)
	}
	d.banner = out.String()
	m := regexp.MustCompile(`Counter at (0x[0-9a-fA-F]{40})`).FindStringSubmatch(d.banner)
	require.Len(t, m, 2, d.banner)
	d.counter = m[1]
	return d
}

// waitConfirmed polls GET /v1/jobs/{id} until the job is confirmed; a
// failed job, or one not confirmed within 60 s, fails the test.
func (d *devAPI) waitConfirmed(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(d.base + "/v1/jobs/" + id)
		require.NoError(t, err)
		var j struct {
			Status string `json:"status"`
		}
		require.NoError(t, json.NewDecoder(res.Body).Decode(&j))
		res.Body.Close()
		if j.Status == "confirmed" {
			return
		}
		require.NotEqual(t, "failed", j.Status)
		require.True(t, time.Now().Before(deadline), "job still %s", j.Status)
		time.Sleep(100 * time.Millisecond)
	}
}

// cli runs one relayq command against the dev API and returns its stdout,
// stderr and exit code.
func (d *devAPI) cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"relayq"}, args...), envOf(map[string]string{"RELAYQ_API_URL": d.base}), &out, &errOut)
	if err != nil {
		// What main prints.
		fmt.Fprintln(&errOut, "relayq:", err)
	}
	return out.String(), errOut.String(), exitCode(err)
}

var jobIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// The CLI against a real API: what the README's walkthrough does, without curl.
func TestSubmitAndStatusAgainstARunningAPI(t *testing.T) {
	t.Parallel()
	d := startDev(t)

	var id string
	t.Run("submit prints the id", func(t *testing.T) {
		out, errOut, code := d.cli(t, "submit", "--to", d.counter, "--function", "increment()")
		require.Equal(t, exitOK, code, errOut)
		id = strings.TrimSpace(out)
		require.Regexp(t, jobIDPattern, id, "stdout is the id alone, for ID=$(relayq submit …)")
		require.Contains(t, errOut, "relayq status "+id+" --wait")

		out, errOut, code = d.cli(t, "status", id)
		require.Equal(t, exitOK, code, errOut)
		require.Regexp(t, `(?m)^job +`+id+`$`, out)
		require.Regexp(t, `(?m)^status +(queued|submitted|mined|confirmed)$`, out)
		require.Regexp(t, `(?m)^call +increment\(\) on `+d.counter+`$`, out)
	})

	t.Run("status --wait reaches confirmed", func(t *testing.T) {
		require.NotEmpty(t, id)
		// The flag after the id, as people type it.
		out, errOut, code := d.cli(t, "status", id, "--wait", "--timeout", "60s")
		require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
		require.Regexp(t, `(?m)^ +[0-9.]+s  confirmed +block \d+$`, out, "a progress line for confirmed")
		require.Regexp(t, `(?m)^tx +0x[0-9a-f]{64}$`, out)
		require.Regexp(t, `(?m)^block +\d+ \(1 confirmation required\)$`, out)

		out, _, code = d.cli(t, "status", "--json", id)
		require.Equal(t, exitOK, code)
		var j map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &j), out)
		require.Equal(t, id, j["id"])
		require.Equal(t, "confirmed", j["status"])
	})

	t.Run("--chain names the chain", func(t *testing.T) {
		out, errOut, code := d.cli(t, "submit", "--chain", "default", "--to", d.counter, "--function", "increment()")
		require.Equal(t, exitOK, code, errOut)
		require.Regexp(t, jobIDPattern, strings.TrimSpace(out))
		_, errOut, code = d.cli(t, "submit", "--chain", "mainnet", "--to", d.counter, "--function", "increment()")
		require.NotEqual(t, exitOK, code)
		require.Contains(t, errOut, "unknown_chain")
		require.Contains(t, errOut, `chain "mainnet" is not one this relayq serves: default (1337)`)
	})

	t.Run("submit --deploy deploys through the API", func(t *testing.T) {
		m := regexp.MustCompile(`go run ./cmd/relayq (submit [^\n]*--deploy[^\n]*)`).FindStringSubmatch(d.banner)
		require.Len(t, m, 2, "the banner shows the deploy command: %s", d.banner)
		out, errOut, code := d.cli(t, shellWords(t, m[1])...)
		require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
		require.Regexp(t, `(?m)^status +confirmed$`, out)
		require.Regexp(t, `(?m)^call +deploy \(\d+ bytes of initcode\)$`, out)
		c := regexp.MustCompile(`(?m)^contract +(0x[0-9a-fA-F]{40})$`).FindStringSubmatch(out)
		require.Len(t, c, 2, out)
		require.NotEqual(t, d.counter, c[1], "a new Counter")

		// The new contract takes calls through the API.
		out, errOut, code = d.cli(t, "submit", "--to", c[1], "--function", "increment()", "--wait")
		require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", out, errOut)

		// Tally's constructor takes arguments; a bad one is the API's 400.
		out, errOut, code = d.cli(t, "submit", "--deploy", "--sample", "tally", "--args", `["3", "three"]`, "--json")
		require.Equal(t, exitOK, code, errOut)
		var j map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &j), out)
		require.Nil(t, j["to"])
		require.Equal(t, "constructor(uint256,string)", j["function"])
		_, errOut, code = d.cli(t, "submit", "--deploy", "--sample", "tally", "--args", `["3"]`)
		require.Equal(t, exitError, code)
		require.Contains(t, errOut, "wrong_arg_count")

		// @FILE reads a .bin as solc writes it (hex without 0x).
		bin := t.TempDir() + "/Counter.bin"
		require.NoError(t, os.WriteFile(bin, []byte(strings.TrimPrefix(hexutil.Encode(contract.Bytecode), "0x")+"\n"), 0o600))
		out, errOut, code = d.cli(t, "submit", "--deploy", "--bytecode", "@"+bin)
		require.Equal(t, exitOK, code, errOut)
		require.Regexp(t, jobIDPattern, strings.TrimSpace(out))
	})

	t.Run("the banner's command works as printed", func(t *testing.T) {
		m := regexp.MustCompile(`go run ./cmd/relayq (submit [^\n]*--to[^\n]*)`).FindStringSubmatch(d.banner)
		require.Len(t, m, 2, d.banner)
		args := shellWords(t, m[1])
		out, errOut, code := d.cli(t, args...)
		require.Equal(t, exitOK, code, "%v\nstdout:\n%s\nstderr:\n%s", args, out, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Regexp(t, jobIDPattern, lines[0], "the id comes first")
		require.Regexp(t, `(?m)^status +confirmed$`, out)
	})

	t.Run("the README's walkthrough works as written", func(t *testing.T) {
		readme, err := os.ReadFile("../../README.md")
		require.NoError(t, err)
		walk := string(readme)
		walk = walk[strings.Index(walk, "## Two commands"):]
		walk = walk[:strings.Index(walk[1:], "\n## ")+1]
		var cmds []string
		for _, l := range strings.Split(walk, "\n") {
			if rest, ok := strings.CutPrefix(l, "go run ./cmd/relayq "); ok && !strings.HasPrefix(rest, "dev") {
				if i := strings.Index(rest, "#"); i > 0 {
					rest = rest[:i] // a comment
				}
				cmds = append(cmds, strings.TrimSpace(rest))
			}
		}
		require.Len(t, cmds, 3, "submit --wait, status, status --wait")
		id := ""
		for _, cmd := range cmds {
			cmd = strings.ReplaceAll(cmd, "<Counter address from the banner>", d.counter)
			cmd = strings.ReplaceAll(cmd, "<id>", id)
			args := shellWords(t, cmd)
			out, errOut, code := d.cli(t, args...)
			require.Equal(t, exitOK, code, "%v\nstdout:\n%s\nstderr:\n%s", args, out, errOut)
			if args[0] == "submit" {
				id = strings.SplitN(out, "\n", 2)[0]
			}
			require.Regexp(t, jobIDPattern, id)
			require.Contains(t, out, id)
		}
	})

	t.Run("a bad request prints the API's message and field", func(t *testing.T) {
		_, errOut, code := d.cli(t, "submit", "--to", "0x1234", "--function", "increment()")
		require.Equal(t, exitError, code)
		require.Contains(t, errOut, "to must be a 0x-prefixed 20-byte hex address")
		require.Contains(t, errOut, `(field "to")`)
		require.Contains(t, errOut, "400 invalid_address")
		require.Regexp(t, `\[request [0-9A-Za-z]+\]`, errOut, "the request id to quote to an operator")

		_, errOut, code = d.cli(t, "submit", "--to", d.counter, "--function", "add(uint256)", "--args", `["1", "2"]`)
		require.Equal(t, exitError, code)
		require.Contains(t, errOut, "wrong_arg_count")
		require.Contains(t, errOut, `(field "args")`)

		// Not JSON at all: the CLI cannot build the body and says how.
		_, errOut, code = d.cli(t, "submit", "--to", d.counter, "--function", "add(uint256)", "--args", `[1`)
		require.Equal(t, exitUsage, code)
		require.Contains(t, errOut, "--args is not valid JSON")

		_, errOut, code = d.cli(t, "status", "0190d6b0-0000-7000-8000-000000000000")
		require.Equal(t, exitError, code)
		require.Contains(t, errOut, "404 not_found")
	})

	t.Run("a failed job makes --wait exit with the failed code", func(t *testing.T) {
		out, errOut, code := d.cli(t, "submit", "--to", d.counter, "--function", "fail(string)", "--args", `["out of cheese"]`, "--wait", "--timeout", "60s")
		require.Equal(t, exitFailed, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
		require.Regexp(t, `(?m)^ +[0-9.]+s  failed +reverted_at_estimate: out of cheese$`, out)
		require.Regexp(t, `(?m)^reason +out of cheese$`, out)
		require.Contains(t, errOut, "failed: reverted_at_estimate")
	})

	t.Run("--timeout ends the wait with its own code", func(t *testing.T) {
		// 1000 confirmations take 1000 blocks of a second each.
		out, errOut, code := d.cli(t, "submit", "--to", d.counter, "--function", "increment()", "--confirmations", "1000", "--wait", "--timeout", "1500ms")
		require.Equal(t, exitTimeout, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
		require.Contains(t, errOut, "after 1.5s (--timeout)")
	})

	t.Run("--json prints the API's answer", func(t *testing.T) {
		out, errOut, code := d.cli(t, "submit", "--json", "--to", d.counter, "--function", "add(uint256)", "--args", `["7"]`, "--metadata", `{"order":42}`, "--idempotency-key", "cli-json-1")
		require.Equal(t, exitOK, code, errOut)
		var j struct {
			ID       string          `json:"id"`
			Args     json.RawMessage `json:"args"`
			Metadata json.RawMessage `json:"metadata"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &j), out)
		require.Regexp(t, jobIDPattern, j.ID)
		require.JSONEq(t, `["7"]`, string(j.Args))
		require.JSONEq(t, `{"order":42}`, string(j.Metadata))
		// The same key and request again: the same job, said so.
		out, errOut, code = d.cli(t, "submit", "--to", d.counter, "--function", "add(uint256)", "--args", `["7"]`, "--metadata", `{"order":42}`, "--idempotency-key", "cli-json-1")
		require.Equal(t, exitOK, code, errOut)
		require.Equal(t, j.ID, strings.TrimSpace(out))
		require.Contains(t, errOut, "already accepted with this Idempotency-Key")
	})
}

// shellWords splits a command line the way sh would for the simple quoting
// the banner uses (single quotes, no escapes).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.False(t, quoted, "unbalanced quote in %q", s)
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestSubmitUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"submit", "--to", "0x0", "extra"}, "submit takes no arguments"},
		{[]string{"submit", "--nope"}, "flag provided but not defined: -nope"},
		{[]string{"submit", "--api", "ftp://x", "--to", "0x0"}, `--api "ftp://x" is not an http(s):// URL`},
		{[]string{"submit", "--metadata", "{", "--to", "0x0"}, "--metadata is not valid JSON"},
		{[]string{"submit", "--deploy", "--to", "0x0", "--data", "0x60"}, "has no --to"},
		{[]string{"submit", "--deploy"}, "--deploy needs the contract"},
		{[]string{"submit", "--bytecode", "0x60"}, "add --deploy"},
		{[]string{"submit", "--deploy", "--sample", "nope"}, "the samples are counter and tally"},
		{[]string{"submit", "--deploy", "--sample", "counter", "--data", "0x60"}, "leave out --data"},
		{[]string{"submit", "--deploy", "--bytecode", "@/nonexistent/x.bin"}, "--bytecode: open /nonexistent/x.bin"},
		{[]string{"submit", "--deploy", "--bytecode", "0x60", "--abi", "[{"}, "--abi is not valid JSON"},
		{[]string{"status"}, "status takes one job id"},
		{[]string{"status", "a", "b"}, "status takes one job id"},
		{[]string{"status", "a", "--wait", "--timeout", "0s"}, "--timeout 0s must be positive"},
		{[]string{"status", "a", "--wait", "--interval", "1ms"}, "--interval 1ms is below 50ms"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"relayq"}, c.args...), envOf(nil), &out, &errOut)
		require.Error(t, err, c.args)
		require.Equal(t, exitUsage, exitCode(err), c.args)
		require.Contains(t, err.Error()+errOut.String(), c.want, c.args)
	}
	// -h shows the flags and is not an error.
	var out, errOut bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"relayq", "submit", "-h"}, envOf(nil), &out, &errOut))
	require.Contains(t, errOut.String(), "-function")
	require.Contains(t, errOut.String(), "-idempotency-key")
}
