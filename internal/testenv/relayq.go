package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// RelayqBinary builds ./cmd/relayq once per test binary and returns its path,
// for tests that run relayq as separate processes (to kill them for real).
func RelayqBinary(t testing.TB) string {
	SkipShort(t, "builds and runs the relayq binary")
	t.Helper()
	buildOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "relayq-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "relayq")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/relayq")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/relayq: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("testenv: %v", buildErr)
	}
	return buildBin
}

// Process is a program a test started and may kill, restart or stop.
type Process struct {
	p *process
}

// Start runs bin with args and env (added to the test's environment) as a
// child whose output goes to a log file; ready (if not nil) is polled until
// it succeeds. t.Cleanup kills it and, when the test failed, prints the
// tail of its log.
func Start(t testing.TB, name, bin string, env []string, ready func() error, args ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	p := &process{name: name, bin: bin, args: args, env: append(os.Environ(), env...), logPath: filepath.Join(dir, name+".log")}
	t.Cleanup(func() {
		if err := p.kill(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		p.logOnFailure(t)
	})
	if err := p.start(); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if ready != nil {
		if err := p.waitReady(ready); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	return &Process{p: p}
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() error { return p.p.kill() }

// Stop sends SIGTERM, waits, and falls back to SIGKILL.
func (p *Process) Stop() error { return p.p.stop() }

// Restart starts the process again with the same arguments (after it exited).
func (p *Process) Restart() error { return p.p.start() }

// Running reports whether the process is alive.
func (p *Process) Running() bool { return p.p.running() }

// Log returns the tail of the process's log.
func (p *Process) Log() string { return p.p.tail() }

// LogPath is the file the process's output goes to.
func (p *Process) LogPath() string { return p.p.logPath }
