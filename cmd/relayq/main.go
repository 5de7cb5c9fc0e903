// Command relayq turns contract calls into mined, confirmed transactions:
// an HTTP API that accepts jobs and workers that sign, submit and track them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayq:", err)
		os.Exit(1)
	}
}
