package testenv

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// When the chosen port is taken by someone else between FreePort and the
// child's bind, the ready check must not be fooled by the squatter and the
// start must move to another port.
func TestStartMovesOnWhenPortTaken(t *testing.T) {
	t.Parallel()
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer squatter.Close()
	go func() { // answer like a Redis would, to tempt the ready check
		for {
			c, err := squatter.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("+PONG\r\n"))
			_ = c.Close()
		}
	}()
	taken := squatter.Addr().(*net.TCPAddr).Port

	bin, ok := findProgram("redis-server")
	require.True(t, ok, "redis-server not on PATH: %s", installHint)
	dir := t.TempDir()
	s := &RedisServer{
		t:       t,
		dataDir: dir,
		config:  redisConfig{},
		proc:    &process{name: "redis-server", bin: bin, logPath: filepath.Join(dir, "redis.log")},
	}
	t.Cleanup(func() { _ = s.proc.kill() })
	s.setPort(taken)
	require.NoError(t, s.proc.startReady(s.ready, func() error {
		port, err := freePort()
		s.setPort(port)
		return err
	}))
	require.NotEqual(t, taken, s.Port())
	require.NoError(t, s.proc.listening(s.Port()))
	log, err := os.ReadFile(s.proc.logPath)
	require.NoError(t, err)
	require.Contains(t, strings.ToLower(string(log)), "address already in use")
}

func TestTailKeepsLastLines(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.log")
	var b strings.Builder
	for i := range 1000 {
		b.WriteString(strings.Repeat("x", i%7) + "\n")
	}
	b.WriteString("last line")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	p := &process{logPath: path}
	lines := strings.Split(p.tail(), "\n")
	require.Len(t, lines, logTailLines)
	require.Equal(t, "last line", lines[len(lines)-1])
}

func TestKillOfExitedProcessIsHarmless(t *testing.T) {
	t.Parallel()
	p := &process{name: "true", bin: "/bin/true", logPath: filepath.Join(t.TempDir(), "true.log")}
	require.NoError(t, p.kill(), "never started")
	require.NoError(t, p.start())
	select {
	case <-p.exited():
	case <-time.After(10 * time.Second):
		t.Fatal("/bin/true did not exit")
	}
	require.NoError(t, p.kill())
	require.NoError(t, p.stop())
	require.False(t, p.running())
}
