package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

// sysProcAttr makes the kernel SIGKILL the child when its parent goes away,
// so a killed or crashed test binary leaves no redis-server or anvil behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

type spawnRequest struct {
	cmd   *exec.Cmd
	reply chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnRequest
)

// spawn starts cmd from one OS thread that lives as long as the test binary.
// Pdeathsig fires when the thread that forked the child exits, not the
// process (golang.org/issue/27505), and the Go runtime ends a thread whose
// locked goroutine returns: forking from a thread that is never released
// ties the signal to the death of the whole process.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread must outlive every child
			for req := range spawnCh {
				req.reply <- req.cmd.Start()
			}
		}()
	})
	reply := make(chan error, 1)
	spawnCh <- spawnRequest{cmd: cmd, reply: reply}
	return <-reply
}

// ownsListener reports whether process pid holds the socket listening on
// TCP port (IPv4 or IPv6). It keeps a ready check from being fooled by some
// other server that took the port first, while our child fails to bind.
func ownsListener(pid, port int) bool {
	inodes := listenInodes(port)
	if len(inodes) == 0 {
		return false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
			return true
		}
	}
	return false
}

// listenInodes returns the inodes of the sockets listening on port, read
// from /proc/net/tcp and /proc/net/tcp6.
func listenInodes(port int) map[string]bool {
	const stateListen = "0A"
	suffix := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
			f := strings.Fields(line)
			if len(f) >= 10 && f[3] == stateListen && strings.HasSuffix(f[1], suffix) {
				inodes[f[9]] = true
			}
		}
	}
	return inodes
}
