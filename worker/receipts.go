package worker

import (
	"context"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/core/types"

	"github.com/relayq/relayq/txmgr"
)

// blockReceipts shares whole blocks' receipts among a process's trackers:
// with several signers each tracker scans the same new blocks, and a block
// of a thousand receipts is worth fetching once. An entry lives a few poll
// intervals, so a block reorganised at the same height is read again soon.
type blockReceipts struct {
	mu      sync.Mutex
	entries map[uint64]*receiptsEntry
}

type receiptsEntry struct {
	ready chan struct{} // closed once rs/err are set
	rs    []*types.Receipt
	err   error
	at    time.Time
}

// get returns block n's receipts, fetching them through br unless another
// tracker did within ttl (or is doing so now).
func (c *blockReceipts) get(ctx context.Context, br txmgr.BlockReceiptser, n uint64, ttl time.Duration) ([]*types.Receipt, error) {
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[uint64]*receiptsEntry{}
	}
	now := time.Now()
	for k, e := range c.entries {
		if now.Sub(e.at) > ttl && isDone(e.ready) {
			delete(c.entries, k)
		}
	}
	e, ok := c.entries[n]
	if ok && isDone(e.ready) && e.err != nil {
		ok = false // a failed read is not shared
	}
	if !ok {
		e = &receiptsEntry{ready: make(chan struct{}), at: now}
		c.entries[n] = e
		c.mu.Unlock()
		e.rs, e.err = br.BlockReceipts(ctx, n)
		close(e.ready)
		return e.rs, e.err
	}
	c.mu.Unlock()
	select {
	case <-e.ready:
		return e.rs, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
