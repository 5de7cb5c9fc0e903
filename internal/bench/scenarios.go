package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/relayq/relayq/internal/devchain"
	"github.com/relayq/relayq/jobs"
)

// sink receives every benchmark transfer: the same 21,000-gas transaction
// in every scenario, so the block holds as many of relayq's as of the raw
// sender's.
var sink = common.HexToAddress("0x000000000000000000000000000000000000bEEF")

func devKey(i int) *ecdsa.PrivateKey {
	k, err := crypto.HexToECDSA(devchain.DevKeys[i])
	if err != nil {
		panic(err)
	}
	return k
}

// progress samples a completion count over time.
type progress struct {
	start  time.Time
	points []point
}

type point struct {
	At   time.Duration // since the scenario's start
	Done int
}

func (p *progress) add(done int) {
	if n := len(p.points); n > 0 && p.points[n-1].Done == done {
		return
	}
	p.points = append(p.points, point{time.Since(p.start), done})
}

// fees returns a tip and a fee cap that stay valid for the whole run.
func fees(ctx context.Context, c *ethclient.Client) (tip, feeCap *big.Int, err error) {
	h, err := c.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	tip = big.NewInt(1_000_000_000)
	base := h.BaseFee
	if base == nil {
		base = new(big.Int)
	}
	return tip, new(big.Int).Add(new(big.Int).Mul(base, big.NewInt(4)), tip), nil
}

func transfer(chainID *big.Int, key *ecdsa.PrivateKey, nonce uint64, tip, feeCap *big.Int) (*types.Transaction, error) {
	return types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
		ChainID: chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: feeCap, Gas: 21000, To: &sink, Value: big.NewInt(1),
	})
}

// waitNonce polls the account's latest nonce until it reaches want,
// recording progress.
func waitNonce(ctx context.Context, c *ethclient.Client, addr common.Address, base, want uint64, p *progress, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		n, err := c.NonceAt(ctx, addr, nil)
		if err == nil {
			p.add(int(n - base))
			if n >= want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d mined after %v", n-base, want-base, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// runRaw measures the node: N transfers from one key, signed beforehand
// with pre-assigned nonces, sent by 16 concurrent senders, until all are
// mined.
func (o *Options) runRaw(ctx context.Context, dir string) (*Result, error) {
	node, err := o.startAnvil(ctx, dir, "anvil-raw")
	if err != nil {
		return nil, err
	}
	defer node.close()
	chainID, err := node.client.ChainID(ctx)
	if err != nil {
		return nil, err
	}
	key := devKey(0)
	from := crypto.PubkeyToAddress(key.PublicKey)
	tip, feeCap, err := fees(ctx, node.client)
	if err != nil {
		return nil, err
	}
	base, err := node.client.NonceAt(ctx, from, nil)
	if err != nil {
		return nil, err
	}
	sign := func(nonce uint64) (*types.Transaction, error) { return transfer(chainID, key, nonce, tip, feeCap) }
	if o.contractCalls {
		counter, err := deployCounter(ctx, node)
		if err != nil {
			return nil, err
		}
		if sign, err = incrementTx(ctx, node.client, chainID, key, counter, tip, feeCap); err != nil {
			return nil, err
		}
	}
	txs := make([]*types.Transaction, o.Jobs)
	for i := range txs {
		if txs[i], err = sign(base + uint64(i)); err != nil {
			return nil, err
		}
	}
	if err := nextBlock(ctx, node.client); err != nil {
		return nil, err
	}
	cpu0 := node.usage().CPU
	p := &progress{start: time.Now()}
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(txs) {
					return
				}
				if err := node.client.SendTransaction(ctx, txs[i]); err != nil {
					errc <- fmt.Errorf("send nonce %d: %w", txs[i].Nonce(), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	if err := waitNonce(ctx, node.client, from, base, base+uint64(o.Jobs), p, o.Timeout); err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	return &Result{Name: "raw node limit", Jobs: o.Jobs, Elapsed: p.points[len(p.points)-1].At, Progress: p.points, NodeCPU: node.usage().CPU - cpu0}, nil
}

// runNaive is the loop a team writes by hand: for each job get the nonce,
// estimate, read fees, sign, send, wait for the receipt.
func (o *Options) runNaive(ctx context.Context, dir string) (*Result, error) {
	node, err := o.startAnvil(ctx, dir, "anvil-naive")
	if err != nil {
		return nil, err
	}
	defer node.close()
	counter, err := newRPCCounter(node.url)
	if err != nil {
		return nil, err
	}
	defer counter.Close()
	c, err := ethclient.DialContext(ctx, counter.URL())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	key := devKey(0)
	from := crypto.PubkeyToAddress(key.PublicKey)
	p := &progress{start: time.Now()}
	r := &Result{Name: "naive loop", Jobs: o.NaiveJobs}
	deadline := time.Now().Add(o.Timeout)
	for i := 0; i < o.NaiveJobs; i++ {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("naive: %d of %d jobs after %v", i, o.NaiveJobs, o.Timeout)
		}
		t0 := time.Now()
		chainID, err := c.ChainID(ctx)
		if err != nil {
			return nil, err
		}
		nonce, err := c.PendingNonceAt(ctx, from)
		if err != nil {
			return nil, err
		}
		gas, err := c.EstimateGas(ctx, ethereumCall(from))
		if err != nil {
			return nil, err
		}
		tip, err := c.SuggestGasTipCap(ctx)
		if err != nil {
			return nil, err
		}
		h, err := c.HeaderByNumber(ctx, nil)
		if err != nil {
			return nil, err
		}
		tx, err := types.SignNewTx(key, types.LatestSignerForChainID(chainID), &types.DynamicFeeTx{
			ChainID: chainID, Nonce: nonce, GasTipCap: tip, GasFeeCap: new(big.Int).Add(new(big.Int).Mul(h.BaseFee, big.NewInt(2)), tip),
			Gas: gas, To: &sink, Value: big.NewInt(1),
		})
		if err != nil {
			return nil, err
		}
		if err := c.SendTransaction(ctx, tx); err != nil {
			return nil, err
		}
		r.Broadcast = append(r.Broadcast, time.Since(t0))
		for {
			rc, err := c.TransactionReceipt(ctx, tx.Hash())
			if err == nil && rc != nil {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("naive: no receipt for job %d after %v", i, o.Timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
		r.Mined = append(r.Mined, time.Since(t0))
		p.add(i + 1)
	}
	r.Elapsed = p.points[len(p.points)-1].At
	r.Progress = p.points
	r.RPCMethods, r.RPCCalls, r.RPCRequests = counter.snapshot()
	return r, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func signersReady(ctx context.Context, hc *http.Client, base, key string, want int) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/signers", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Signers []json.RawMessage `json:"signers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || len(body.Signers) < want {
		return fmt.Errorf("signers: status %d, %d of %d registered", resp.StatusCode, len(body.Signers), want)
	}
	return nil
}

func postJob(ctx context.Context, hc *http.Client, base, key, body string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/jobs", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /v1/jobs: %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var j struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &j); err != nil || j.ID == "" {
		return "", fmt.Errorf("POST /v1/jobs: no id in %s", b)
	}
	return j.ID, nil
}

// waitMined polls the status indexes until n jobs are mined or beyond.
func waitMined(ctx context.Context, store *jobs.Store, n int, p *progress, limit time.Duration) error {
	return waitMinedFn(ctx, store, n, p, limit, nil, nil)
}

// waitMinedFn is waitMined telling seen of each count; archived, if set,
// counts the jobs that already left Redis for the archive.
func waitMinedFn(ctx context.Context, store *jobs.Store, n int, p *progress, limit time.Duration, seen func(int), archived func(context.Context) (int64, error)) error {
	deadline := time.Now().Add(limit)
	for {
		var total int64
		if archived != nil {
			c, err := archived(ctx)
			if err != nil {
				return err
			}
			total += c
		}
		for _, st := range []jobs.Status{jobs.Mined, jobs.Confirmed, jobs.Failed} {
			c, err := store.Count(ctx, st)
			if err != nil {
				return err
			}
			total += c
		}
		p.add(int(total))
		if seen != nil {
			seen(int(total))
		}
		if total >= int64(n) {
			if f, _ := store.Count(ctx, jobs.Failed); f > 0 {
				return fmt.Errorf("%d jobs failed", f)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d jobs mined after %v", total, n, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// jobLatencies reads the jobs' records: accept → first broadcast and
// accept → mined, from relayq's own stamps.
func jobLatencies(ctx context.Context, store *jobs.Store, ids []string, r *Result) error {
	for len(ids) > 0 {
		chunk := ids[:min(500, len(ids))]
		ids = ids[len(chunk):]
		list, err := store.GetMany(ctx, chunk)
		if err != nil {
			return err
		}
		for _, j := range list {
			if j == nil {
				return errors.New("a job vanished")
			}
			if len(j.Attempts) > 0 {
				r.Broadcast = append(r.Broadcast, j.Attempts[0].SentAt.Sub(j.CreatedAt))
			}
			for _, h := range j.History {
				if h.To == jobs.Mined {
					r.Mined = append(r.Mined, h.At.Sub(j.CreatedAt))
					r.MinedAt = append(r.MinedAt, h.At)
					break
				}
			}
			r.Attempts += len(j.Attempts)
		}
	}
	return nil
}

// fetchProfile saves a CPU profile of d seconds from a relayq process's
// RELAYQ_PPROF_LISTEN.
func fetchProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	secs := max(int(d.Seconds()), 1)
	return fetchURL(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs), path)
}

func fetchURL(ctx context.Context, url, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// nextBlock returns just after the node mines its next block, so every
// scenario starts at the same point of the block cycle: with 1 s blocks a
// run of a few seconds is counted in whole blocks, and a random phase would
// add up to a block of noise.
func nextBlock(ctx context.Context, c *ethclient.Client) error {
	n0, err := c.BlockNumber(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		n, err := c.BlockNumber(ctx)
		if err != nil {
			return err
		}
		if n > n0 {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("the node mined no block for a minute")
}
