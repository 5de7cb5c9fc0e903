package worker

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/hibiken/asynq"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
)

// notFoundRetries is how often a send task whose job cannot be read is
// retried before it is dropped.
const notFoundRetries = 3

// HandleSendTask handles a tasks.TypeSend task.
func (w *Worker) HandleSendTask(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseSendPayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	if len(p.JobIDs) > 0 {
		return w.sendMany(ctx, p.JobIDs)
	}
	err = w.Send(ctx, p.JobID)
	// Tasks are enqueued with tasks.SendMaxRetry; a smaller configured
	// budget ends the task here, and handleTaskError fails its job.
	if n, _ := asynq.GetRetryCount(ctx); IsFailure(err) && n >= w.cfg.MaxRetries && !errors.Is(err, asynq.SkipRetry) {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	return err
}

// Send moves one job forward: a queued job gets its transaction estimated,
// a nonce, signed once and persisted before broadcast; a submitted job gets
// its persisted bytes broadcast again. Anything further along is left to the
// tracker. Send is idempotent, so a retried or duplicated task is harmless.
func (w *Worker) Send(ctx context.Context, id string) error {
	j, err := w.store.Get(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		// The API writes a job before its task, so a task without its job
		// is a stale read: a Redis failover in progress (a connection still
		// on the old primary, restarted as a replica that has not synced
		// yet, answers reads). Retry a few
		// times; past that give up on the task, but never fail the job on
		// such a read (handleTaskError): if it exists, the sweeper runs it.
		if n, _ := asynq.GetRetryCount(ctx); n >= notFoundRetries {
			return fmt.Errorf("send %s: %w: %w", id, err, asynq.SkipRetry)
		}
		return fmt.Errorf("send %s: %w", id, err)
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", id, err)
	}
	return w.sendJob(ctx, j)
}

// sendJob is Send of a job just loaded.
func (w *Worker) sendJob(ctx context.Context, j *jobs.Job) error {
	switch j.Status {
	case jobs.Queued:
		if j.Expired(w.now()) {
			return w.expire(ctx, j)
		}
		return w.submit(ctx, j)
	case jobs.Submitted:
		return w.rebroadcast(ctx, j)
	default:
		return nil
	}
}

// account returns the account of the signer a job names. A queued job
// without one gets its signer from the pool (pick, pool.go); a later job
// always names one, since reserving a nonce writes it.
func (w *Worker) account(j *jobs.Job) (*Account, error) {
	if j.From == "" {
		return w.accounts[w.order[0]], nil
	}
	a, ok := w.accounts[common.HexToAddress(j.From)]
	if !ok {
		// Another worker process may hold this key; retrying lets it.
		return nil, fmt.Errorf("job %s: this worker holds no key for %s", j.ID, j.From)
	}
	return a, nil
}

func (w *Worker) submit(ctx context.Context, j *jobs.Job) error {
	log := w.log.With("job_id", j.ID)
	a, release, err := w.pick(ctx, j) // the pool's choice when j names no signer
	if err != nil {
		return err
	}
	defer release()
	call, err := jobCall(j, a.Signer.Address())
	if err != nil {
		// The API validated it; a record this broken cannot be retried into shape.
		ferr := w.failQueued(ctx, j.ID, len(j.Attempts), "invalid job record", jobs.Error{Code: jobs.ErrCodeInvalid, Message: err.Error()})
		return errors.Join(fmt.Errorf("%w: %w", err, asynq.SkipRetry), ferr)
	}
	gas := j.GasLimit
	if gas == 0 {
		// Estimate before a nonce is taken, so a call that would revert
		// fails here and leaves no gap in the nonce sequence.
		gas, err = txmgr.Estimate(ctx, w.cfg.Backend, call)
		if err != nil {
			switch txmgr.Classify(err) {
			case txmgr.ClassPermanent:
			case txmgr.ClassPaused:
				// Insufficient funds: this job's value, unless the signer
				// cannot pay for anything (estimateShort).
				return w.estimateShort(ctx, a, j, err)
			default:
				return fmt.Errorf("job %s: %w", j.ID, err)
			}
			// A job that already holds a nonce (an earlier run crashed after
			// reserving it) fails too: the tracker fills that nonce.
			jerr := w.revertErrorAt(ctx, jobs.ErrCodeRevertedAtEstimate, err, j.To)
			log.Info("call reverts at estimate; job failed", "reason", jerr.RevertReason)
			return w.failQueued(ctx, j.ID, len(j.Attempts), "reverted at estimate", jerr, "from", call.From.Hex())
		}
	}
	fees, err := w.fees.Fees(ctx)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	if fees.BlockGasLimit > 0 && gas > fees.BlockGasLimit {
		// No block could hold it: fail before a nonce is taken.
		msg := fmt.Sprintf("gas %d exceeds the block gas limit %d", gas, fees.BlockGasLimit)
		return w.failQueued(ctx, j.ID, len(j.Attempts), "too much gas", jobs.Error{Code: jobs.ErrCodeRejected, Message: msg})
	}
	if j.Expired(w.now()) { // the node may have kept it waiting
		return w.expire(ctx, j)
	}
	// Before a nonce is taken: a job the signer cannot pay for waits
	// queued and holds up none of its other jobs (invariant 7).
	if err := w.checkFunds(ctx, a, j, call.Value, gas, fees); err != nil {
		return err
	}
	taskID, _ := asynq.GetTaskID(ctx) // "" outside a task (the tracker finishing an orphan)
	err = w.sendBatched(ctx, a, &sendReq{j: j, call: call, gas: gas, fees: fees, taskID: taskID, done: make(chan error, 1)})
	if errors.Is(err, errFollow) {
		return w.Send(ctx, j.ID)
	}
	return err
}

func newAttempt(tx *types.Transaction, kind string, head uint64) *jobs.Attempt {
	return &jobs.Attempt{
		Hash: tx.Hash().Hex(), Nonce: tx.Nonce(), Gas: tx.Gas(),
		GasTipCap: tx.GasTipCap().String(), GasFeeCap: tx.GasFeeCap().String(),
		Kind: kind, SentAt: time.Now().UTC(), SentBlock: head,
	}
}

func (w *Worker) rebroadcast(ctx context.Context, j *jobs.Job) error {
	tx, err := txmgr.RawTx(j.Raw)
	if err != nil {
		return fmt.Errorf("job %s: %w: %w", j.ID, err, asynq.SkipRetry)
	}
	a, err := w.account(j)
	if err != nil {
		return err
	}
	// The bytes may have been persisted by a run whose write the replicas
	// never acknowledged: send them only once they would survive a
	// failover (a no-op unless the store waits for replicas).
	if err := w.store.Replicated(ctx, j.ID, "raw", j.Raw); errors.Is(err, jobs.ErrChanged) {
		return nil // replaced meanwhile: the tracker sent the new bytes
	} else if err != nil {
		return fmt.Errorf("rebroadcast %s: %w", j.ID, err)
	}
	w.cfg.Metrics.Rebroadcast(metrics.RebroadcastRetry)
	return w.broadcast(ctx, a, j.ID, tx, firstCall(j, tx))
}

// broadcast sends a persisted transaction and decides from the node's answer
// what happens next. first says whether tx is the job's first signed call
// at its nonce.
func (w *Worker) broadcast(ctx context.Context, a *Account, id string, tx *types.Transaction, first bool) error {
	return w.broadcastResult(ctx, a, id, tx, w.cfg.Backend.SendTransaction(ctx, tx), first)
}

// broadcastResult decides from the node's answer err to a broadcast of tx
// what happens next. No answer decides the job's verdict (DESIGN.md,
// invariant 8): another endpoint may have taken the transaction that this
// one refused, so a job refused for good is given up — a no-op replaces it
// at its nonce and the chain decides which of the two counts — and a
// refused replacement only warns.
func (w *Worker) broadcastResult(ctx context.Context, a *Account, id string, tx *types.Transaction, err error, first bool) error {
	log := w.log.With("job_id", id, "tx_hash", tx.Hash().Hex(), "nonce", tx.Nonce())
	switch c := txmgr.Classify(err); c {
	case txmgr.ClassNone, txmgr.ClassAlreadyKnown:
		a.pause(ctx, "") // it signed and the node took it: whatever paused it is over
		return nil
	case txmgr.ClassNonceTooLow:
		// Either one of this job's own hashes was mined (a retry whose first
		// answer was lost) or another sender used the nonce. Receipts can
		// lag: the tracker decides from the block that holds the nonce.
		log.Info("nonce already used on chain; the tracker will resolve it", "err", err)
		return nil
	case txmgr.ClassPaused:
		// The signer cannot pay for this transaction now. Whether that is
		// this job's problem (its value) or the signer's (it cannot pay for
		// a no-op) the tracker decides from the balance; the job's bytes are
		// persisted and it re-broadcasts them.
		log.Warn("node says the signer cannot pay for this transaction; the tracker decides", "err", err)
		return nil
	case txmgr.ClassPermanent:
		if !first {
			log.Warn("node refused a replacement for good; the job keeps its earlier transaction", "err", err)
			return w.refusedReplacement(ctx, id, err)
		}
		log.Error("node rejected the transaction for good; a no-op will replace it and the chain decides", "err", err)
		return w.giveUp(ctx, id, w.revertError(jobs.ErrCodeRejected, err))
	default:
		return fmt.Errorf("broadcast %s (%s): %w", id, c, err)
	}
}

// giveUp records that relayq gave up on a submitted job: the tracker
// replaces its call with a no-op at the same nonce, and the job fails with
// jerr only if the no-op is mined.
func (w *Worker) giveUp(ctx context.Context, id string, jerr jobs.Error) error {
	err := w.store.Update(ctx, id, jobs.Submitted, jobs.Fields{"abandon", jobs.ErrorField(jerr)}, nil)
	var bad *jobs.BadTransitionError
	if errors.As(err, &bad) {
		return nil // it moved on (mined meanwhile): the chain has decided already
	}
	return err
}

// refusedReplacement records that a node refused a replacement (a fee
// bump) for good: a warning only, since the job's earlier transaction may
// still be mined.
func (w *Worker) refusedReplacement(ctx context.Context, id string, err error) error {
	return w.store.Update(ctx, id, jobs.Submitted, jobs.Fields{"warning", "replacement refused by the node: " + err.Error()}, nil)
}

// firstCall reports whether tx is the only call the job signed at its
// nonce (not a fee bump, re-sign or no-op).
func firstCall(j *jobs.Job, tx *types.Transaction) bool {
	calls := 0
	for _, at := range j.Attempts {
		if at.Nonce == tx.Nonce() && at.Kind != jobs.KindCancel && at.Kind != jobs.KindGapFill {
			calls++
		}
	}
	return calls <= 1 && common.HexToHash(j.TxHash) == tx.Hash() && lastAttempt(j) != nil && lastAttempt(j).Hash == tx.Hash().Hex()
}

// failQueued is the one way the worker fails a job that never had a
// transaction broadcast (a queued job: invalid, reverted at estimate, too
// much gas, unaffordable while holding a nonce, expired, out of retries):
// nothing of it can execute, so no chain verdict is needed. A job holding a
// bound nonce leaves that nonce to the tracker, which fills it. extra are
// more fields to write. It returns the transition's error (a
// *jobs.BadTransitionError when the job left queued meanwhile).
func (w *Worker) failQueued(ctx context.Context, id string, attempts int, note string, jerr jobs.Error, extra ...any) error {
	fields := append(jobs.Fields{"error", jobs.ErrorField(jerr)}, extra...)
	err := w.store.TransitionIf(ctx, id, jobs.Queued, jobs.Failed, note, fields, nil)
	return w.cfg.Metrics.Finished(jobs.Failed, attempts, err)
}

// jobCall turns a job record into the call to sign: a contract creation
// when the job has no to (a deployment, whose data is the initcode).
func jobCall(j *jobs.Job, from common.Address) (txmgr.Call, error) {
	if !j.Deployment() && !common.IsHexAddress(j.To) {
		return txmgr.Call{}, fmt.Errorf("bad to %q", j.To)
	}
	var data []byte
	if j.Data != "" && j.Data != "0x" {
		d, err := hexutil.Decode(j.Data)
		if err != nil {
			return txmgr.Call{}, fmt.Errorf("bad data: %w", err)
		}
		data = d
	}
	value := new(big.Int)
	if j.Value != "" {
		if _, ok := value.SetString(j.Value, 10); !ok {
			return txmgr.Call{}, fmt.Errorf("bad value %q", j.Value)
		}
	}
	if j.Deployment() {
		if len(data) == 0 {
			return txmgr.Call{}, errors.New("a deployment without initcode")
		}
		return txmgr.Call{From: from, Data: data, Value: value, Create: true}, nil
	}
	return txmgr.Call{From: from, To: common.HexToAddress(j.To), Data: data, Value: value}, nil
}

// revertError builds a job error from a node error, decoding revert data
// when there is some (custom errors with the configured ErrorABI).
func (w *Worker) revertError(code string, err error) jobs.Error {
	e := jobs.Error{Code: code, Message: err.Error()}
	if data, ok := txmgr.RevertData(err); ok {
		r := txmgr.DecodeRevert(data, w.cfg.ErrorABI)
		e.RevertReason = r.Reason
		e.RevertData = hexutil.Encode(data)
	}
	return e
}
