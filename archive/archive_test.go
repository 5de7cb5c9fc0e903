package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/archive"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
)

func setup(t *testing.T) (*archive.Archive, *testenv.PostgresServer) {
	t.Helper()
	pg := testenv.StartPostgres(t)
	a, err := archive.Open(pg.URL())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a, pg
}

// finalJob is a confirmed job created at at, as the tracker leaves one.
func finalJob(at time.Time, i int) *jobs.Job {
	n, block, used, st := uint64(i), uint64(100+i), uint64(21000), uint64(1)
	keys := []string{"alice", "bob", ""}
	froms := []string{"0x00000000000000000000000000000000000000Bb", "0x00000000000000000000000000000000000000cc"}
	return &jobs.Job{
		ID: jobs.NewIDAt(at), Status: jobs.Confirmed, ChainID: 31337, APIKey: keys[i%3],
		From: froms[i%2], To: fmt.Sprintf("0x%040x", i%5), Function: "set(uint256)",
		Args: json.RawMessage(`[ 7 ]`), Data: "0x60fe47b1", Value: "0", Confirmations: 2,
		Nonce: &n, TxHash: fmt.Sprintf("0x%064x", i), BlockNumber: &block, BlockHash: "0xbb", GasUsed: &used,
		ReceiptStatus: &st, EffectiveGasPrice: "1000000000",
		Metadata:  json.RawMessage(fmt.Sprintf(`{"order": %d, "customer":"c%d"}`, i, i%7)),
		CreatedAt: at.UTC(), UpdatedAt: at.Add(3 * time.Second).UTC(),
		Attempts: []jobs.Attempt{{Hash: fmt.Sprintf("0x%064x", i), Nonce: n, Gas: 30000, GasTipCap: "1", GasFeeCap: "2", Kind: jobs.KindOriginal, SentAt: at.UTC()}},
		History: []jobs.Change{{To: jobs.Queued, At: at.UTC()}, {From: jobs.Queued, To: jobs.Submitted, At: at.Add(time.Second).UTC()},
			{From: jobs.Submitted, To: jobs.Mined, At: at.Add(2 * time.Second).UTC()}, {From: jobs.Mined, To: jobs.Confirmed, At: at.Add(3 * time.Second).UTC()}},
		Webhook: &jobs.WebhookState{Deliveries: 1, LastEvent: "x.3", LastType: "job.confirmed", LastStatus: jobs.WebhookDelivered, LastAttemptAt: at.UTC()},
		Raw:     "0x02f8", BodyHash: fmt.Sprintf("hash%d", i),
	}
}

// A job written once comes back exactly as the API answered it (and with
// its write-ahead bytes and body hash); a repeat writes nothing; a batch
// holding a job that is not final is refused whole.
func TestPutGetRepeat(t *testing.T) {
	t.Parallel()
	a, _ := setup(t)
	ctx := context.Background()
	j := finalJob(time.Now().Add(-2*time.Hour), 1)
	n, err := a.Put(ctx, []*jobs.Job{j})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = a.Put(ctx, []*jobs.Job{j})
	require.NoError(t, err)
	require.Zero(t, n, "a repeat changes nothing")

	got, err := a.Get(ctx, j.ID)
	require.NoError(t, err)
	want, _ := json.Marshal(j)
	have, _ := json.Marshal(got)
	require.JSONEq(t, string(want), string(have))
	require.Equal(t, string(want), string(have), "byte for byte, args and metadata as written")
	require.Equal(t, j.Raw, got.Raw)
	require.Equal(t, j.BodyHash, got.BodyHash)

	_, err = a.Get(ctx, jobs.NewID())
	require.ErrorIs(t, err, jobs.ErrNotFound)
	_, err = a.Get(ctx, "not-an-id")
	require.ErrorIs(t, err, jobs.ErrNotFound)

	live := finalJob(time.Now(), 2)
	live.Status = jobs.Mined
	other := finalJob(time.Now(), 3)
	_, err = a.Put(ctx, []*jobs.Job{other, live})
	require.ErrorIs(t, err, archive.ErrNotFinal)
	_, err = a.Get(ctx, other.ID)
	require.ErrorIs(t, err, jobs.ErrNotFound, "the batch was refused whole")
	c, err := a.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(1), c)

	// A later webhook delivery recorded on the job replaces the record.
	j.Webhook.Deliveries = 2
	n, err = a.Put(ctx, []*jobs.Job{j})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	got, err = a.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, int64(2), got.Webhook.Deliveries)
}

// Listings page newest first with an exclusive id cursor, as the Redis
// listing does, and every filter is answered.
func TestListFiltersAndCursor(t *testing.T) {
	t.Parallel()
	a, _ := setup(t)
	ctx := context.Background()
	base := time.Now().Add(-10 * time.Hour).Truncate(time.Millisecond)
	var all []*jobs.Job
	for i := range 30 {
		all = append(all, finalJob(base.Add(time.Duration(i)*time.Minute), i))
	}
	other := finalJob(base, 99)
	other.ChainID = 1
	_, err := a.Put(ctx, append(all, other))
	require.NoError(t, err)

	page := func(f jobs.Filter, limit int) []string {
		var ids []string
		cursor := ""
		for {
			list, next, err := a.List(ctx, 31337, f, limit, cursor)
			require.NoError(t, err)
			require.LessOrEqual(t, len(list), limit)
			for _, j := range list {
				ids = append(ids, j.ID)
			}
			if next == "" {
				return ids
			}
			require.Equal(t, list[len(list)-1].ID, next)
			cursor = next
		}
	}
	want := func(keep func(i int, j *jobs.Job) bool) []string {
		var ids []string
		for i := len(all) - 1; i >= 0; i-- {
			if keep(i, all[i]) {
				ids = append(ids, all[i].ID)
			}
		}
		return ids
	}
	require.Equal(t, want(func(int, *jobs.Job) bool { return true }), page(jobs.Filter{}, 7), "another chain's job is not listed")
	require.Equal(t, want(func(i int, _ *jobs.Job) bool { return i%3 == 0 }), page(jobs.Filter{Owner: "alice"}, 4))
	require.Equal(t, want(func(i int, _ *jobs.Job) bool { return i%2 == 0 }), page(jobs.Filter{From: "0x00000000000000000000000000000000000000BB"}, 5))
	require.Equal(t, want(func(i int, _ *jobs.Job) bool { return i%5 == 3 }), page(jobs.Filter{To: fmt.Sprintf("0x%040x", 3)}, 2))
	require.Equal(t, want(func(i int, _ *jobs.Job) bool { return i == 12 }), page(jobs.Filter{MetaKey: "order", MetaValue: "12"}, 5), "a number by its JSON text")
	require.Equal(t, want(func(i int, _ *jobs.Job) bool { return i%7 == 4 }), page(jobs.Filter{MetaKey: "customer", MetaValue: "c4"}, 5))
	require.Equal(t, want(func(i int, _ *jobs.Job) bool { return i >= 10 && i < 20 }),
		page(jobs.Filter{Since: base.Add(10 * time.Minute), Until: base.Add(20 * time.Minute)}, 3))
	require.Empty(t, page(jobs.Filter{Status: jobs.Failed}, 3))
	require.Empty(t, page(jobs.Filter{MetaKey: "order", MetaValue: "nope"}, 3))

	var exported []string
	require.NoError(t, a.Export(ctx, 31337, jobs.Filter{Owner: "bob"}, func(j *jobs.Job) error {
		exported = append(exported, j.ID)
		return nil
	}))
	require.Equal(t, want(func(i int, _ *jobs.Job) bool { return i%3 == 1 }), exported)
}

// While PostgreSQL is down every call fails (nothing is claimed written);
// once it is back the same calls succeed.
func TestOutageFailsCleanly(t *testing.T) {
	t.Parallel()
	a, pg := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	j := finalJob(time.Now().Add(-2*time.Hour), 1)
	pg.Kill()
	_, err := a.Put(ctx, []*jobs.Job{j})
	require.Error(t, err)
	_, err = a.Get(ctx, j.ID)
	require.Error(t, err)
	require.NotErrorIs(t, err, jobs.ErrNotFound, "down is not absent")
	pg.Start()
	n, err := a.Put(ctx, []*jobs.Job{j})
	require.NoError(t, err)
	require.Equal(t, 1, n)
}
