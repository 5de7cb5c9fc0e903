// Command relayq turns contract calls into mined, confirmed transactions:
// an HTTP API that accepts jobs and workers that sign, submit and track them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go onSignals(sigs, stop, os.Stderr, os.Exit)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayq:", err)
	}
	os.Exit(exitCode(err))
}

// onSignals turns the first SIGTERM or SIGINT into a graceful shutdown
// (stop ends run's context) and the second into an immediate exit, for an
// operator who will not wait for the drain.
func onSignals(sigs <-chan os.Signal, stop context.CancelFunc, stderr io.Writer, exit func(int)) {
	<-sigs
	stop()
	sig := <-sigs
	fmt.Fprintf(stderr, "relayq: second signal (%v): exiting without finishing the shutdown\n", sig)
	code := 1
	if s, ok := sig.(syscall.Signal); ok {
		code = 128 + int(s) // what a shell reports for a death by that signal
	}
	exit(code)
}

// Exit codes. Besides these, a forced exit on a second signal is 128 + the
// signal's number (130 for SIGINT, 143 for SIGTERM).
const (
	exitOK        = 0
	exitError     = 1 // anything that went wrong, including an API error
	exitUsage     = 2 // bad flags or arguments
	exitFailed    = 3 // status --wait: the job failed
	exitCancelled = 4 // status --wait: the job was cancelled
	exitTimeout   = 5 // status --wait: --timeout passed before the job finished
)

// codeError is an error that asks for a particular exit code.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

// withCode gives err the exit code code.
func withCode(code int, err error) error { return &codeError{code: code, err: err} }

// exitCode is the process's exit status for run's error.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitError
}

// waitWithin waits for wg, but not longer than d.
func waitWithin(wg *sync.WaitGroup, d time.Duration) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("shutdown did not finish within %v; exiting with work still running", d)
	}
}
