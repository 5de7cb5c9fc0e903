package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/internal/testenv"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/txmgr"
)

// envChainFixture is testdata/envchain-0f839f0/fixture.json: a deployment's
// Redis as relayq left it at commit 0f839f0, configured by the environment
// shortcut, with the API's answers of the time (see generate_test.go and
// the README beside it).
type envChainFixture struct {
	Signer    string                     `json:"signer"`
	Counter   string                     `json:"counter"`
	Confirmed []string                   `json:"confirmed"`
	Queued    []string                   `json:"queued"`
	API       map[string]json.RawMessage `json:"api"`
	Keys      []struct {
		Key  string                  `json:"key"`
		Type string                  `json:"type"`
		PTTL int64                   `json:"pttl_ms"`
		Str  *fixtureBytes           `json:"string"`
		Hash map[string]fixtureBytes `json:"hash"`
		List []fixtureBytes          `json:"list"`
		Set  []fixtureBytes          `json:"set"`
		ZSet []struct {
			Member fixtureBytes `json:"member"`
			Score  float64      `json:"score"`
		} `json:"zset"`
	} `json:"keys"`
}

// fixtureBytes is a Redis value: a JSON string when it is UTF-8, else
// {"base64": "..."} (Asynq's task messages are protobuf).
type fixtureBytes string

func (v *fixtureBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*v = fixtureBytes(s)
		return nil
	}
	var bin struct {
		Base64 string `json:"base64"`
	}
	if err := json.Unmarshal(b, &bin); err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(bin.Base64)
	*v = fixtureBytes(raw)
	return err
}

// restore writes the fixture's keys into an empty Redis, with what is left
// of their time to live.
func (f *envChainFixture) restore(ctx context.Context, t *testing.T, rdb *redis.Client) {
	t.Helper()
	n, err := rdb.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, n, "restore into an empty Redis")
	p := rdb.TxPipeline()
	for _, k := range f.Keys {
		switch k.Type {
		case "string":
			p.Set(ctx, k.Key, string(*k.Str), 0)
		case "hash":
			for field, v := range k.Hash {
				p.HSet(ctx, k.Key, field, string(v))
			}
		case "list":
			for _, v := range k.List {
				p.RPush(ctx, k.Key, string(v))
			}
		case "set":
			for _, v := range k.Set {
				p.SAdd(ctx, k.Key, string(v))
			}
		case "zset":
			for _, z := range k.ZSet {
				p.ZAdd(ctx, k.Key, redis.Z{Member: string(z.Member), Score: z.Score})
			}
		default:
			t.Fatalf("key %s: type %s", k.Key, k.Type)
		}
		if k.PTTL > 0 {
			p.PExpire(ctx, k.Key, time.Duration(k.PTTL)*time.Millisecond)
		}
	}
	_, err = p.Exec(ctx)
	require.NoError(t, err)
}

// queues are the Asynq queues the fixture's Redis knows (asynq:queues).
func (f *envChainFixture) queues() []string {
	for _, k := range f.Keys {
		if k.Key == "asynq:queues" {
			var out []string
			for _, q := range k.Set {
				out = append(out, string(q))
			}
			sort.Strings(out)
			return out
		}
	}
	return nil
}

// A deployment configured by the environment before Chains replaced the
// flat chain fields is served as it was: its Redis data, written by relayq
// at commit 0f839f0, answers GET /v1/jobs/{id} and the lists byte for byte
// as that relayq answered them; its queued jobs' tasks wait in the same
// queue and run; its signer's nonces go on where they stopped; and no key
// or queue of another name appears.
func TestEnvChainDataOfBefore(t *testing.T) {
	testenv.SkipShort(t, "relayq processes on anvil")
	t.Parallel()
	raw, err := os.ReadFile("testdata/envchain-0f839f0/fixture.json")
	require.NoError(t, err)
	var f envChainFixture
	require.NoError(t, json.Unmarshal(raw, &f))
	require.Len(t, f.Confirmed, 3)
	require.Len(t, f.Queued, 2)
	ctx := context.Background()

	c := &cluster{t: t, bin: testenv.RelayqBinary(t), anvil: testenv.Anvil(t, "--block-time", "1"), redis: testenv.Redis(t)}
	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr()})
	t.Cleanup(func() { rdb.Close() })
	f.restore(ctx, t, rdb)
	c.node, err = txmgr.Dial(ctx, c.anvil.URL(), 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(c.node.Close)

	// The chain again: the sample contract from the same key at the same
	// nonce (so at the same address), then the confirmed jobs' own signed
	// bytes as the fixture persisted them, in nonce order.
	keys := c.anvil.Keys()
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	counter, err := devchain.DeployCounter(dctx, c.node, keys[1], func() { _, _ = c.anvil.Call(dctx, "evm_mine") })
	require.NoError(t, err)
	require.Equal(t, f.Counter, counter.Hex())
	require.Equal(t, f.Signer, crypto.PubkeyToAddress(keys[0].PublicKey).Hex())
	old := jobs.NewStore(rdb, "relayq:")
	confirmed := make([]jobs.Job, len(f.Confirmed))
	for i, id := range f.Confirmed {
		j, err := old.Get(ctx, id)
		require.NoError(t, err)
		require.Equal(t, jobs.Confirmed, j.Status)
		require.NotEmpty(t, j.Raw)
		confirmed[i] = *j
	}
	sort.Slice(confirmed, func(a, b int) bool { return *confirmed[a].Nonce < *confirmed[b].Nonce })
	for i, j := range confirmed {
		require.Equal(t, uint64(i), *j.Nonce, "the fixture's signer used nonces 0..2")
		_, err := c.anvil.Call(dctx, "eth_sendRawTransaction", j.Raw)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { latest, _ := c.nonces(); return latest == 3 }, time.Minute, 200*time.Millisecond)
	require.Equal(t, uint64(3), counterValue(t, c.node, counter))

	// relayq of today, configured as then: the environment shortcut.
	c.env = []string{
		"REDIS_URL=" + c.redis.URL(),
		"RELAYQ_RPC_URL=" + c.anvil.URL(),
		"RELAYQ_PRIVATE_KEYS=" + fmt.Sprintf("%x", crypto.FromECDSA(keys[0])),
		"RELAYQ_POLL_INTERVAL=200ms",
		"RELAYQ_WORKER_CONCURRENCY=16",
		"RELAYQ_RPC_TIMEOUT=3s",
		// The fixture's jobs are as old as the fixture: kept, whenever
		// this test runs.
		"RELAYQ_JOB_RETENTION=0",
	}
	c.startAPI()
	requireAnswers := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			code, b, err := c.request(http.MethodGet, p, "")
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code, "%s: %s", p, b)
			require.JSONEq(t, string(f.API[p]), string(b), "GET %s answers as relayq 0f839f0 did", p)
		}
	}
	var all []string
	for p := range f.API {
		all = append(all, p)
	}
	sort.Strings(all)
	requireAnswers(all...)

	// The queued jobs' tasks wait in the queue they were put in.
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: c.redis.Addr()})
	t.Cleanup(func() { insp.Close() })
	wantQueues := f.queues()
	require.Contains(t, wantQueues, "relayq")
	requireQueues := func() {
		t.Helper()
		qs, err := insp.Queues()
		require.NoError(t, err)
		sort.Strings(qs)
		require.Equal(t, wantQueues, qs, "the environment's chain keeps its queues")
	}
	requireQueues()
	info, err := insp.GetQueueInfo("relayq")
	require.NoError(t, err)
	require.Positive(t, info.Pending, "the queued jobs' tasks are pending in relayq")

	// The worker runs them at the signer's next nonces, then a new job.
	c.addWorker()
	done := c.waitAll(f.Queued, 2*time.Minute)
	code, b, err := c.request(http.MethodPost, "/v1/jobs", fmt.Sprintf(`{"to":%q,"function":"increment()"}`, counter.Hex()))
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code, "%s", b)
	var fresh jobs.Job
	require.NoError(t, jsonUnmarshal(b, &fresh))
	done = append(done, c.waitAll([]string{fresh.ID}, 2*time.Minute)...)
	nonces := map[uint64]bool{}
	for _, j := range done {
		require.Equal(t, jobs.Confirmed, j.Status, "job %s: %+v", j.ID, j.Error)
		require.NotNil(t, j.Nonce)
		nonces[*j.Nonce] = true
	}
	require.Equal(t, map[uint64]bool{3: true, 4: true}, map[uint64]bool{*done[0].Nonce: true, *done[1].Nonce: true}, "the queued jobs take the nonces after the fixture's")
	require.Equal(t, uint64(5), *done[2].Nonce, "a new job takes the next one")
	c.requireExecutedOnce(6, counter.Hex())

	// The confirmed jobs are still answered as then; nothing moved to the
	// namespaced keys or queues of a relayq.yaml chain.
	var confirmedPaths []string
	for _, id := range f.Confirmed {
		confirmedPaths = append(confirmedPaths, "/v1/jobs/"+id)
	}
	requireAnswers(confirmedPaths...)
	requireQueues()
	ks, err := rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range ks {
		require.False(t, strings.HasPrefix(k, "relayq:c"), "key %s: the environment's chain keeps its un-namespaced keys", k)
	}
	next, err := rdb.Get(ctx, "relayq:{31337:"+f.Signer+"}:next").Result()
	require.NoError(t, err)
	require.Equal(t, "6", next, "the signer's allocator is the fixture's key, moved on")
	j, err := old.Get(ctx, fresh.ID)
	require.NoError(t, err, "the new job is under the historical prefix")
	require.Equal(t, jobs.Confirmed, j.Status)
}
