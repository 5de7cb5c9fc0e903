package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/stretchr/testify/require"
)

// countingReceipts answers BlockReceipts slowly, counting the calls, and
// fails while fail is set.
type countingReceipts struct {
	calls atomic.Int32
	fail  atomic.Bool
}

func (c *countingReceipts) BlockReceipts(ctx context.Context, n uint64) ([]*types.Receipt, error) {
	c.calls.Add(1)
	time.Sleep(20 * time.Millisecond)
	if c.fail.Load() {
		return nil, errors.New("node down")
	}
	return []*types.Receipt{{TxHash: common.BigToHash(common.Big1), BlockNumber: nil}}, nil
}

// Trackers asking for the same block at once share one call; a failed read
// is not shared; an entry older than its ttl is read again.
func TestBlockReceiptsAreShared(t *testing.T) {
	t.Parallel()
	var c blockReceipts
	node := &countingReceipts{}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs, err := c.get(ctx, node, 7, time.Minute)
			require.NoError(t, err)
			require.Len(t, rs, 1)
		}()
	}
	wg.Wait()
	require.Equal(t, int32(1), node.calls.Load(), "one call for eight trackers")

	node.fail.Store(true)
	_, err := c.get(ctx, node, 8, time.Minute)
	require.Error(t, err)
	node.fail.Store(false)
	_, err = c.get(ctx, node, 8, time.Minute)
	require.NoError(t, err, "a failure is not remembered")
	require.Equal(t, int32(3), node.calls.Load())

	time.Sleep(30 * time.Millisecond)
	_, err = c.get(ctx, node, 7, 10*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, int32(4), node.calls.Load(), "an old entry is read again")
}
