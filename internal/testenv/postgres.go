package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresServer is a private PostgreSQL server started by StartPostgres.
type PostgresServer struct {
	t       testing.TB
	port    int
	dataDir string
	proc    *process
}

// postgresBin finds the directory of initdb and postgres: PATH first, then
// Debian's /usr/lib/postgresql/<version>/bin (the newest), where the
// postgresql package puts them without linking them onto PATH.
func postgresBin() (string, bool) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
			return filepath.Dir(p), true
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, true
		}
	}
	return "", false
}

// postgresCred is who runs initdb and postgres: both refuse to run as root,
// so a root test runs them as the postgres system user; anyone else runs
// them as themselves (nil).
func postgresCred() (*syscall.Credential, error) {
	if os.Getuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and there is no postgres user to run PostgreSQL as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// StartPostgres initialises a cluster in a fresh temporary directory and
// starts postgres on a free 127.0.0.1 port (TCP only, trust authentication,
// user postgres, database postgres), then waits until it accepts a
// connection. fsync is off (a killed server keeps what it committed; only
// a machine crash would lose it). t.Cleanup kills it and removes the
// directory.
//
// A missing PostgreSQL fails the test: install it with
// scripts/install-test-deps.sh.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	bin, ok := postgresBin()
	if !ok {
		t.Fatalf("testenv: initdb/postgres not found on PATH or under /usr/lib/postgresql/*/bin; %s", installHint)
	}
	cred, err := postgresCred()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// Not t.TempDir: its parents are private to root, and the postgres
	// user must be able to reach its data directory.
	dir, err := os.MkdirTemp("", "relayq-pg-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	s := &PostgresServer{t: t, dataDir: filepath.Join(dir, "data")}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.dataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "postgres.log")
	if cred != nil {
		// The child opens nothing itself (its output is our descriptor),
		// but keep the log readable to both.
		f, err := os.Create(logPath)
		if err == nil {
			f.Close()
		}
	}
	s.proc = &process{name: "postgres", bin: filepath.Join(bin, "postgres"), logPath: logPath, cred: cred}
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
		t.Fatalf("testenv: start postgres: %v", err)
	}
	return s
}

func (s *PostgresServer) setPort(port int) {
	s.port = port
	s.proc.args = []string{
		"-D", s.dataDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=200",
		"-c", "shared_buffers=32MB",
	}
}

// ready succeeds when the server accepts a connection and answers a query.
func (s *PostgresServer) ready() error {
	if err := s.proc.listening(s.port); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// URL is the server's connection string, for pgx (and RELAYQ_ARCHIVE_URL).
func (s *PostgresServer) URL() string {
	return "postgres://postgres@" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) + "/postgres?sslmode=disable"
}

// Port is the TCP port the server listens on; it stays across Start.
func (s *PostgresServer) Port() int { return s.port }

// Kill sends SIGKILL to the postmaster, as a crash would, and waits until
// it is gone. Committed transactions survive a Start.
func (s *PostgresServer) Kill() {
	if err := s.proc.kill(); err != nil {
		s.t.Errorf("testenv: kill postgres: %v", err)
	}
}

// Stop shuts the server down with a fast shutdown (SIGINT: sessions are
// ended, not waited for) and waits until it is gone.
func (s *PostgresServer) Stop() {
	if err := s.proc.signalAndWait(syscall.SIGINT, stopTimeout); err != nil {
		s.Kill()
	}
}

// Start starts a stopped or killed server again on the same port and data
// directory and waits until it answers. After Kill the backends of the
// old postmaster may still hold its shared memory for a moment, so a
// refused start is tried again.
func (s *PostgresServer) Start() {
	s.t.Helper()
	var err error
	for range 20 {
		if err = s.proc.start(); err != nil {
			break
		}
		if err = s.proc.waitReady(s.ready); err == nil {
			return
		}
		_ = s.proc.kill()
		time.Sleep(250 * time.Millisecond)
	}
	s.t.Fatalf("testenv: start postgres on port %d: %v", s.port, err)
}

// Running reports whether the postmaster is alive.
func (s *PostgresServer) Running() bool { return s.proc.running() }
