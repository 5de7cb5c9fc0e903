package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RedisServer is a private redis-server started by Redis.
type RedisServer struct {
	t       testing.TB
	port    int
	dataDir string
	proc    *process
	config  redisConfig
}

type redisConfig struct {
	aof  bool
	args []string
}

// RedisOption changes how Redis starts the server.
type RedisOption func(*redisConfig)

// WithoutAOF turns the append-only file off (and keeps RDB snapshots off),
// for tests that want speed and never kill or restart the server: data then
// does not survive Kill or Restart.
func WithoutAOF() RedisOption {
	return func(c *redisConfig) { c.aof = false }
}

// WithRedisArgs appends redis-server command-line options, e.g.
// WithRedisArgs("--maxmemory", "10mb"). Later options override earlier ones.
func WithRedisArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.args = append(c.args, args...) }
}

// Redis starts a redis-server on a free 127.0.0.1 port with its own data
// directory (t.TempDir()) and waits until it answers PING. By default it runs
// with `--save "" --appendonly yes --appendfsync always`, so every
// acknowledged write survives Kill; see WithoutAOF. t.Cleanup kills it.
//
// A missing redis-server fails the test (it does not skip): install it with
// scripts/install-test-deps.sh.
func Redis(t testing.TB, opts ...RedisOption) *RedisServer {
	t.Helper()
	bin, ok := findProgram("redis-server")
	if !ok {
		t.Fatalf("testenv: redis-server is not on PATH; %s", installHint)
	}
	cfg := redisConfig{aof: true}
	for _, opt := range opts {
		opt(&cfg)
	}
	// TempDir first: its removal is a cleanup too, and cleanups run last
	// registered first, so the server is killed before its directory goes.
	dir := t.TempDir()
	s := &RedisServer{
		t:       t,
		dataDir: filepath.Join(dir, "data"),
		config:  cfg,
		proc:    &process{name: "redis-server", bin: bin, logPath: filepath.Join(dir, "redis.log")},
	}
	if err := os.Mkdir(s.dataDir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := s.proc.kill(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		s.proc.logOnFailure(t)
	})

	s.setPort(FreePort(t))
	if err := s.proc.startReady(s.ready, func() error {
		port, err := freePort()
		s.setPort(port)
		return err
	}); err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	return s
}

func (s *RedisServer) setPort(port int) {
	s.port = port
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", s.dataDir,
		"--daemonize", "no",
		"--logfile", "", // to stdout, which is the log file
		"--save", "",
	}
	if s.config.aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	s.proc.args = append(args, s.config.args...)
}

// ready succeeds when our child owns the port and answers PING with PONG
// (a server still loading its AOF answers -LOADING).
func (s *RedisServer) ready() error {
	if err := s.proc.listening(s.port); err != nil {
		return err
	}
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Addr returns the server's host:port, for redis.Options.Addr.
func (s *RedisServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns redis://127.0.0.1:<port>/0, for redis.ParseURL.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Port returns the TCP port the server listens on; it stays the same across
// Restart.
func (s *RedisServer) Port() int { return s.port }

// DataDir returns the server's working directory, which holds its AOF.
func (s *RedisServer) DataDir() string { return s.dataDir }

// Kill sends SIGKILL, as a crash would, and waits until the server is gone.
// With AOF on (the default), every write it acknowledged survives a Restart.
// Kill may be called from any goroutine, e.g. one that crashes the server in
// the middle of a load.
func (s *RedisServer) Kill() {
	if err := s.proc.kill(); err != nil {
		s.t.Errorf("testenv: kill redis-server: %v", err)
	}
}

// Stop shuts the server down gracefully (SIGTERM, then SIGKILL after 10 s)
// and waits until it is gone. Like Kill, it may be called from any goroutine.
func (s *RedisServer) Stop() {
	if err := s.proc.stop(); err != nil {
		s.t.Errorf("testenv: stop redis-server: %v", err)
	}
}

// Restart starts the server again on the same port and data directory and
// waits until it answers PING (having replayed its AOF). A server still
// running is stopped gracefully first; call Kill before Restart to simulate a
// crash. Restart fails the test if the server does not come back, so call it
// from the test's own goroutine.
func (s *RedisServer) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.proc.start(); err != nil {
		s.t.Fatalf("testenv: restart redis-server: %v", err)
	}
	if err := s.proc.waitReady(s.ready); err != nil {
		s.t.Fatalf("testenv: restart redis-server on port %d: %v", s.port, err)
	}
}

// Running reports whether the server process is alive.
func (s *RedisServer) Running() bool { return s.proc.running() }
