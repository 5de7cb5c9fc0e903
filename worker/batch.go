package worker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/txmgr"
)

// The send path groups the jobs that concurrent handlers bring to the same
// signer: one script reserves their nonces, their signed transactions are
// persisted together, and one JSON-RPC batch broadcasts them, in nonce
// order. Each job stays its own Asynq task and its own record, and each step
// is the one the single-job path took (reserve → sign → persist → broadcast),
// so the write-ahead rule and the crash recovery are unchanged. A batch
// forms only while an earlier one is in flight: with no load, a job goes out
// alone and waits for nobody.

// maxSendBatch bounds the jobs of one batch.
const maxSendBatch = 256

// signConcurrency bounds the signatures of one batch in progress at once.
const signConcurrency = 16

// sendBatchTimeout bounds one batch's Redis and RPC work. It does not
// depend on any one task's context, since the batch serves many.
const sendBatchTimeout = 30 * time.Second

// errFollow tells a handler that its job moved on while it waited (another
// run of its task got further): load it again and do what its status says.
var errFollow = errors.New("job moved on; follow it")

// sendReq is one job waiting for its batch.
type sendReq struct {
	j      *jobs.Job
	call   txmgr.Call
	gas    uint64
	fees   txmgr.Fees
	taskID string
	done   chan error // buffered: the batch never waits for a handler
}

// combiner collects an account's send requests; at most one batch of an
// account runs at a time, which also keeps its broadcasts in nonce order.
type combiner struct {
	mu      sync.Mutex
	pending []*sendReq
	running bool
}

// sendBatched hands r to a's combiner and waits for its outcome. A handler
// whose context ends stops waiting; its job still goes through the batch,
// and the task's retry finds it submitted.
func (w *Worker) sendBatched(ctx context.Context, a *Account, r *sendReq) error {
	c := &a.comb
	c.mu.Lock()
	c.pending = append(c.pending, r)
	if !c.running {
		c.running = true
		go w.lead(a)
	}
	c.mu.Unlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lead runs batches for a until nothing is pending.
func (w *Worker) lead(a *Account) {
	c := &a.comb
	for {
		c.mu.Lock()
		n := min(len(c.pending), maxSendBatch)
		if n == 0 {
			c.running = false
			c.pending = nil
			c.mu.Unlock()
			return
		}
		batch := make([]*sendReq, n)
		copy(batch, c.pending)
		c.pending = c.pending[n:]
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), sendBatchTimeout)
		w.sendBatch(ctx, a, batch)
		cancel()
	}
}

// sendBatch reserves, signs, persists and broadcasts the jobs of batch, and
// answers each request.
func (w *Worker) sendBatch(ctx context.Context, a *Account, batch []*sendReq) {
	ids := make([]string, len(batch))
	keys := make([]string, len(batch))
	for i, r := range batch {
		ids[i], keys[i] = r.j.ID, w.store.JobKey(r.j.ID)
	}
	res, err := a.Nonces.ReserveMany(ctx, ids, keys)
	if errors.Is(err, nonce.ErrNotInitialized) {
		if err = w.reconcile(ctx, a); err == nil {
			res, err = a.Nonces.ReserveMany(ctx, ids, keys)
		}
	}
	if err != nil {
		for _, r := range batch {
			r.done <- fmt.Errorf("job %s: %w", r.j.ID, err)
		}
		return
	}
	w.crashPoint("after_reserve")

	type signed struct {
		r   *sendReq
		tx  *types.Transaction
		raw []byte
		err error
	}
	// A remote signer (KMS) costs a round trip per signature: the batch's
	// transactions are signed concurrently, signConcurrency at a time, so
	// its latency is paid about once per batch rather than once per job.
	// A signer that cannot sign (signer.ErrUnavailable) stops the rest.
	signCtx, stopSigning := context.WithCancel(ctx)
	defer stopSigning()
	all := make([]*signed, len(batch))
	sem := make(chan struct{}, signConcurrency)
	var wg sync.WaitGroup
	for i, r := range batch {
		if res[i].Err != nil {
			r.done <- errFollow // not queued any more: another run got further
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			tx, raw, err := txmgr.Sign(signCtx, a.Signer, w.chainID, res[i].Nonce, r.gas, r.fees, r.call)
			if txmgr.Classify(err) == txmgr.ClassPaused {
				stopSigning()
			}
			all[i] = &signed{r: r, tx: tx, raw: raw, err: err}
		})
	}
	wg.Wait()
	var out []*signed
	for _, s := range all {
		switch {
		case s == nil: // answered above
		case s.err != nil:
			s.r.done <- w.signFailed(ctx, a, s.r.j.ID, s.err)
		default:
			out = append(out, s)
		}
	}

	// Write-ahead: the signed bytes are durable before any node sees them
	// (with jobs.WithReplicas, on the replicas too: a step they did not
	// acknowledge answers ErrNotReplicated and is not broadcast; its task's
	// retry or the tracker sends it once they have). Each step applies only
	// where its nonce is bound to its job: after a Redis failover between
	// the reservation and this write, the new primary may not have the
	// reservation (ErrNotBound), and the task's retry starts over there.
	steps := make([]jobs.Step, len(out))
	for i, s := range out {
		steps[i] = jobs.Step{ID: s.r.j.ID, From: jobs.Queued, To: jobs.Submitted, Note: "signed",
			Fields:  jobs.Fields{"from", s.r.call.From.Hex(), "nonce", s.tx.Nonce(), "gas", s.tx.Gas(), "tx_hash", s.tx.Hash().Hex(), "raw", hexutil.Encode(s.raw)},
			Attempt: newAttempt(s.tx, jobs.KindOriginal, s.r.fees.Head),
			Binding: a.Nonces.KeyTag() + "bound"}
		if s.r.j.Warning != "" {
			// It waited for funds (checkFunds); it goes through now.
			steps[i].Fields = append(steps[i].Fields, "warning", "")
		}
	}
	for i, err := range w.store.TransitionMany(ctx, steps) {
		out[i].err = err
	}
	var txs []*types.Transaction
	var sent []*signed
	for _, s := range out {
		var bad *jobs.BadTransitionError
		switch {
		case errors.As(s.err, &bad):
			// A concurrent run of this task persisted its own signature of
			// the same nonce first; ours is discarded unbroadcast.
			s.r.done <- errFollow
		case s.err != nil:
			s.r.done <- fmt.Errorf("job %s: persist signed tx: %w", s.r.j.ID, s.err)
		default:
			w.log.Debug("signed", "job_id", s.r.j.ID, "nonce", s.tx.Nonce(), "tx_hash", s.tx.Hash().Hex())
			txs, sent = append(txs, s.tx), append(sent, s)
		}
	}
	if len(sent) == 0 {
		return
	}
	// In nonce order: a job that comes back with a nonce bound earlier (its
	// last run crashed after reserving) goes before the newer ones, since
	// some nodes refuse a nonce beyond the next one.
	sort.SliceStable(sent, func(i, j int) bool { return sent[i].tx.Nonce() < sent[j].tx.Nonce() })
	for i, s := range sent {
		txs[i] = s.tx
	}
	w.crashPoint("after_persist")
	errs := txmgr.SendAll(ctx, w.cfg.Backend, txs)
	w.crashPoint("after_broadcast")
	for i, s := range sent {
		err := w.broadcastResult(ctx, a, s.r.j.ID, s.tx, errs[i], true)
		if err == nil {
			w.log.Info("broadcast", "job_id", s.r.j.ID, "task_id", s.r.taskID, "nonce", s.tx.Nonce(), "tx_hash", s.tx.Hash().Hex())
			w.cfg.Metrics.Stage(metrics.StageBroadcast, s.r.j.CreatedAt) // the first broadcast only
		}
		s.r.done <- err
	}
}

// signFailed is a handler's answer when its job could not be signed. A
// signer that cannot sign now (a KMS outage or throttling past its
// retries) is paused with the reason, which /v1/signers shows, and the job
// keeps its nonce and waits without using up its retries, as it does for
// a signer that cannot pay.
func (w *Worker) signFailed(ctx context.Context, a *Account, id string, err error) error {
	if txmgr.Classify(err) != txmgr.ClassPaused {
		return fmt.Errorf("job %s: %w", id, err)
	}
	w.log.Warn("signer cannot sign; job waits", "job_id", id, "signer", a.Signer.Address().Hex(), "err", err)
	// The batch's deadline may be what ended the signing: the mark gets
	// its own.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	a.pause(pctx, err.Error())
	return &PausedError{Err: fmt.Errorf("job %s: %w", id, err)}
}
