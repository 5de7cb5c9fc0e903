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

	"github.com/relayq/relayq/internal/devchain/contract"
	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/nonce"
	"github.com/relayq/relayq/tasks"
	"github.com/relayq/relayq/txmgr"
)

// HandleSendTask handles a tasks.TypeSend task.
func (w *Worker) HandleSendTask(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseSendPayload(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	return w.Send(ctx, p.JobID)
}

// Send moves one job forward: a queued job gets its transaction estimated,
// a nonce, signed once and persisted before broadcast; a submitted job gets
// its persisted bytes broadcast again. Anything further along is left to the
// tracker. Send is idempotent, so a retried or duplicated task is harmless.
func (w *Worker) Send(ctx context.Context, id string) error {
	j, err := w.store.Get(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) {
		return fmt.Errorf("send %s: %w: %w", id, err, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("send %s: %w", id, err)
	}
	switch j.Status {
	case jobs.Queued:
		return w.submit(ctx, j)
	case jobs.Submitted:
		return w.rebroadcast(ctx, j)
	default:
		return nil
	}
}

// account picks the signer of a job: the one it names, else the first.
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
	a, err := w.account(j)
	if err != nil {
		return err
	}
	call, err := jobCall(j, a.Signer.Address())
	if err != nil {
		// The API validated it; a record this broken cannot be retried into shape.
		ferr := w.store.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Failed, "invalid job record",
			jobs.Fields{"error", jobs.ErrorField(jobs.Error{Code: jobs.ErrCodeInvalid, Message: err.Error()})}, nil)
		return errors.Join(fmt.Errorf("%w: %w", err, asynq.SkipRetry), ferr)
	}
	gas := j.GasLimit
	if gas == 0 {
		// Estimate before a nonce is taken, so a call that would revert
		// fails here and leaves no gap in the nonce sequence.
		gas, err = txmgr.Estimate(ctx, w.cfg.Backend, call)
		if err != nil {
			if txmgr.Classify(err) != txmgr.ClassPermanent {
				return fmt.Errorf("job %s: %w", j.ID, err)
			}
			jerr := revertError(jobs.ErrCodeRevertedAtEstimate, err)
			log.Info("call reverts at estimate; job failed", "reason", jerr.RevertReason)
			ferr := w.store.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Failed, "reverted at estimate", jobs.Fields{"from", call.From.Hex(), "error", jobs.ErrorField(jerr)}, nil)
			if ferr != nil {
				return ferr
			}
			return nil
		}
	}
	fees, err := w.fees.Fees(ctx)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	n, err := a.Nonces.Reserve(ctx, j.ID, w.store.JobKey(j.ID))
	if errors.Is(err, nonce.ErrNotInitialized) {
		if err = w.reconcile(ctx, a); err == nil {
			n, err = a.Nonces.Reserve(ctx, j.ID, w.store.JobKey(j.ID))
		}
	}
	if errors.Is(err, nonce.ErrNotQueued) {
		return w.Send(ctx, j.ID) // another run got further; follow it
	}
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	tx, raw, err := txmgr.Sign(a.Signer, w.chainID, n, gas, fees, call)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	att := &jobs.Attempt{Hash: tx.Hash().Hex(), Nonce: n, Gas: gas, GasTipCap: fees.TipCap.String(), GasFeeCap: fees.FeeCap.String(), Kind: "original", SentAt: time.Now().UTC()}
	// Write-ahead: the signed bytes are durable before any node sees them.
	err = w.store.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Submitted, "signed",
		jobs.Fields{"from", call.From.Hex(), "nonce", n, "gas", gas, "tx_hash", tx.Hash().Hex(), "raw", hexutil.Encode(raw)}, att)
	var bad *jobs.BadTransitionError
	if errors.As(err, &bad) {
		// A concurrent run of this task persisted its own signature of the
		// same nonce first; ours is discarded unbroadcast.
		return w.Send(ctx, j.ID)
	}
	if err != nil {
		return fmt.Errorf("job %s: persist signed tx: %w", j.ID, err)
	}
	log.Debug("signed", "nonce", n, "tx_hash", tx.Hash().Hex())
	return w.broadcast(ctx, j.ID, tx)
}

func (w *Worker) rebroadcast(ctx context.Context, j *jobs.Job) error {
	tx, err := txmgr.RawTx(j.Raw)
	if err != nil {
		return fmt.Errorf("job %s: %w: %w", j.ID, err, asynq.SkipRetry)
	}
	return w.broadcast(ctx, j.ID, tx)
}

// broadcast sends a persisted transaction and decides from the node's answer
// what happens next.
func (w *Worker) broadcast(ctx context.Context, id string, tx *types.Transaction) error {
	err := w.cfg.Backend.SendTransaction(ctx, tx)
	log := w.log.With("job_id", id, "tx_hash", tx.Hash().Hex(), "nonce", tx.Nonce())
	switch c := txmgr.Classify(err); c {
	case txmgr.ClassNone, txmgr.ClassAlreadyKnown:
		return nil
	case txmgr.ClassNonceTooLow:
		// Most often our own tx was mined and this is a retry whose first
		// answer was lost: the tracker will find its receipt.
		rs, rerr := w.cfg.Backend.TransactionReceipts(ctx, []common.Hash{tx.Hash()})
		if rerr == nil && len(rs) == 1 && rs[0] != nil {
			return nil
		}
		log.Error("nonce used by a transaction that is not this job's", "err", err)
		return fmt.Errorf("broadcast %s: %w", id, err)
	case txmgr.ClassPaused:
		log.Warn("signer cannot pay; job waits", "err", err)
		return &PausedError{Err: err}
	case txmgr.ClassPermanent:
		log.Error("node rejected the transaction for good", "err", err)
		jerr := revertError(jobs.ErrCodeRejected, err)
		ferr := w.store.TransitionIf(ctx, id, jobs.Submitted, jobs.Failed, "rejected by node", jobs.Fields{"error", jobs.ErrorField(jerr)}, nil)
		return errors.Join(fmt.Errorf("broadcast %s: %w: %w", id, err, asynq.SkipRetry), ferr)
	default:
		return fmt.Errorf("broadcast %s (%s): %w", id, c, err)
	}
}

// jobCall turns a job record into the call to sign.
func jobCall(j *jobs.Job, from common.Address) (txmgr.Call, error) {
	if !common.IsHexAddress(j.To) {
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
	return txmgr.Call{From: from, To: common.HexToAddress(j.To), Data: data, Value: value}, nil
}

// revertError builds a job error from a node error, decoding revert data
// when there is some. The sample contract's ABI is tried for custom errors,
// which is harmless for other contracts: a selector that matches none of
// its errors decodes as an unknown custom error.
func revertError(code string, err error) jobs.Error {
	e := jobs.Error{Code: code, Message: err.Error()}
	if data, ok := txmgr.RevertData(err); ok {
		r := txmgr.DecodeRevert(data, &contract.ABI)
		e.RevertReason = r.Reason
		e.RevertData = hexutil.Encode(data)
	}
	return e
}
