//go:build !linux

package testenv

import (
	"os/exec"
	"syscall"
)

// sysProcAttr has no parent-death signal outside Linux; t.Cleanup still
// stops the child when the test ends normally.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func spawn(cmd *exec.Cmd) error { return cmd.Start() }

// ownsListener cannot tell outside Linux and trusts the ready check.
func ownsListener(pid, port int) bool { return true }
