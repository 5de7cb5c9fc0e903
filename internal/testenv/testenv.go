// Package testenv starts the real external programs that relayq's tests run
// against: a private redis-server (Redis), an anvil dev chain (Anvil) and an
// AWS KMS stand-in (StartLocalKMS) and a PostgreSQL server
// (StartPostgres), each on a free loopback port with its own
// temporary directory, torn down by t.Cleanup.
//
// The programs are installed by scripts/install-test-deps.sh (redis-server
// from Debian, anvil from npm into <repo>/.tools, local-kms with go install
// into <repo>/.tools/bin). A missing program fails
// the test rather than skipping it, so CI never passes by testing nothing.
//
// Each child's stdout and stderr go to a log file in its temporary
// directory; when the test has failed, the last lines of that log are
// printed with t.Logf during cleanup. Children are started with
// Pdeathsig = SIGKILL on Linux, so they die with the test binary even when it
// is killed.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// installHint is appended to every "program not found" failure.
	installHint = "run `make test` or scripts/install-test-deps.sh from the repo root to install the test programs"

	// readyTimeout bounds how long a child may take to answer its first request.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds how long a graceful stop may take before SIGKILL.
	stopTimeout = 10 * time.Second
	// logTailLines is how much of a child's log a failed test prints.
	logTailLines = 40
	// startAttempts is how often a first start is tried on a new port when
	// the chosen one was taken in the meantime.
	startAttempts = 3
)

var (
	portsMu sync.Mutex
	// portsGiven remembers every port FreePort returned in this process, so
	// parallel tests are never handed the same port twice.
	portsGiven = map[int]bool{}
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier call in this test binary returned. Another process can still
// take it before it is used; Redis and Anvil retry on a new port when that
// happens.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	return port
}

func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, err
		}
		if !portsGiven[port] {
			portsGiven[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no unused port after 100 tries")
}

// repoRoot returns the nearest directory at or above the working directory
// (a test's package directory) that holds go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// process is one child program whose output goes to a log file. It can be
// stopped and started again with the same arguments.
type process struct {
	name    string // for messages, e.g. "redis-server"
	bin     string
	args    []string
	env     []string // nil: inherit the test's environment
	logPath string
	// cred, if set, runs the child as another user (postgres refuses root).
	cred *syscall.Credential

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current child has exited
	err  error         // the child's exit status, valid once done is closed
}

// start launches the child. The previous child, if any, must have exited.
func (p *process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil && !isClosed(p.done) {
		return fmt.Errorf("%s is already running", p.name)
	}
	logFile, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	// The child holds its own descriptor; ours is only needed until Start.
	defer logFile.Close()
	fmt.Fprintf(logFile, "--- testenv: %s starting %s %s\n", time.Now().Format(time.RFC3339Nano), p.bin, strings.Join(p.args, " "))

	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Credential = p.cred
	cmd.Env = p.env
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// exited returns a channel closed when the current child exits (nil if
// there never was one).
func (p *process) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

func (p *process) running() bool {
	done := p.exited()
	return done != nil && !isClosed(done)
}

func (p *process) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// kill sends SIGKILL and waits until the child is gone. A child that already
// exited is left alone.
func (p *process) kill() error {
	return p.signalAndWait(syscall.SIGKILL, stopTimeout)
}

// stop asks the child to exit with SIGTERM and falls back to SIGKILL after
// stopTimeout.
func (p *process) stop() error {
	if err := p.signalAndWait(syscall.SIGTERM, stopTimeout); err == nil {
		return nil
	}
	return p.kill()
}

func (p *process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil || isClosed(done) {
		return nil
	}
	// An error here means the child exited in the meantime; done tells.
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running %s after %v", p.name, cmd.Process.Pid, timeout, sig)
	}
}

// waitReady polls ready until it succeeds, the child exits, or readyTimeout
// passes. The returned error includes the tail of the child's log.
func (p *process) waitReady(ready func() error) error {
	done := p.exited()
	deadline := time.Now().Add(readyTimeout)
	delay := 5 * time.Millisecond
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready (%v); its log:\n%s", p.name, p.exitErr(), p.tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v; its log:\n%s", p.name, readyTimeout, err, p.tail())
		}
		time.Sleep(delay)
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// tail returns the last logTailLines lines of the log.
func (p *process) tail() string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*logTailLines {
			lines = append(lines[:0], lines[len(lines)-logTailLines:]...)
		}
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "\n")
}

// logOnFailure is registered as a cleanup: when the test failed, it prints
// the tail of the log so CI output shows what the child said.
func (p *process) logOnFailure(t testing.TB) {
	if t.Failed() {
		t.Logf("testenv: last %d lines of %s log (%s):\n%s", logTailLines, p.name, p.logPath, p.tail())
	}
}

// startReady starts the child and waits until ready answers. When the child
// exits early because its port was taken (portTaken reads that from its log),
// it calls newPort for another port and tries again, up to startAttempts
// times in all.
func (p *process) startReady(ready func() error, newPort func() error) error {
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = p.start(); err != nil {
			return err
		}
		if err = p.waitReady(ready); err == nil {
			return nil
		}
		// Not ready: make sure it is gone before deciding what to do.
		_ = p.kill()
		if !p.portTaken() || attempt == startAttempts {
			return err
		}
		if err := newPort(); err != nil {
			return err
		}
	}
	return err
}

// portTaken reports whether the latest start's log says the port was in use.
func (p *process) portTaken() bool {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndex(s, "--- testenv:"); i >= 0 {
		s = s[i:]
	}
	return strings.Contains(strings.ToLower(s), "address already in use")
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// findProgram looks name up on PATH.
func findProgram(name string) (string, bool) {
	path, err := exec.LookPath(name)
	return path, err == nil
}

// listening reports whether the current child holds the listener on port.
func (p *process) listening(port int) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return errors.New("not started")
	}
	if !ownsListener(cmd.Process.Pid, port) {
		return fmt.Errorf("%s (pid %d) is not listening on port %d yet", p.name, cmd.Process.Pid, port)
	}
	return nil
}

// SkipShort skips a test that starts real programs or the whole stack when
// go test runs with -short: the fast inner loop is the decision core and
// the unit tests (real Redis included); make test runs everything.
func SkipShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: " + why)
	}
}
