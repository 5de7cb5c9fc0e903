package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/jobs"
)

// batchRequest is the body of POST /v1/jobs/batch: job requests, each as
// POST /v1/jobs takes it. The items stay raw until each is decoded on its
// own, so that an error names its item.
type batchRequest struct {
	Jobs  []json.RawMessage `json:"jobs"`
	Chain *string           `json:"chain"` // the chain of every job (chains.go)
}

// batchItem is one job of a batch's answer.
type batchItem struct {
	ID     string      `json:"id"`
	Status jobs.Status `json:"status"`
}

// maxBatchJobs bounds a batch: every job of it is written by one script.
const maxBatchJobs = jobs.MaxCreateMany

// defaultBatchBodyLimit is the body limit of POST /v1/jobs/batch: 1,000
// jobs do not fit in the 1 MiB of the other routes.
const defaultBatchBodyLimit = "8M"

// inItem says that e is about item i of a batch: its field and message get
// the item's name ("jobs[3].args[0]").
func inItem(i int, e *Error) *Error {
	out := *e
	name := fmt.Sprintf("jobs[%d]", i)
	out.Field = name
	if e.Field != "" {
		out.Field += "." + e.Field
	}
	out.Message = name + ": " + e.Message
	return &out
}

// createBatch answers POST /v1/jobs/batch: every job is validated (and dry
// run, when it asks) first; one bad job refuses the batch and nothing is
// stored. Then all are written at once (jobs.Store.CreateMany), enqueued,
// and answered with their ids in order.
func (s *Server) createBatch(c echo.Context) (err error) {
	var created []bool
	defer func() { s.countBatch(err, created) }()
	ctx := c.Request().Context()
	body, e := readBody(c)
	if e != nil {
		return e
	}
	idem, e := idempotencyKey(c)
	if e != nil {
		return e
	}
	var req batchRequest
	if e := decodeJSON(body, &req); e != nil {
		return e
	}
	if e := s.checkChain(req.Chain); e != nil {
		return e
	}
	switch {
	case req.Jobs == nil:
		return invalid("missing_field", "jobs", "jobs is required: an array of 1 to %d job requests", maxBatchJobs)
	case len(req.Jobs) == 0:
		return invalid("out_of_range", "jobs", "jobs is empty: send 1 to %d job requests", maxBatchJobs)
	case len(req.Jobs) > maxBatchJobs:
		return invalid("out_of_range", "jobs", "jobs has %d job requests; at most %d", len(req.Jobs), maxBatchJobs)
	}
	calls := make([]*call, len(req.Jobs))
	for i, raw := range req.Jobs {
		call, e := s.validateItem(ctx, raw)
		if e != nil {
			return inItem(i, e)
		}
		calls[i] = call
	}

	// One Idempotency-Key covers the batch: each job gets a key derived
	// from it and its position, and the hash of the whole batch as its body
	// hash, so the same batch again returns the same jobs and any change
	// to it is a 409.
	var keys []string
	batchHash := ""
	if idem != "" {
		keys = make([]string, len(calls))
		h := sha256.New()
		fmt.Fprintf(h, "%d\x00", len(calls))
		for i, call := range calls {
			sum := sha256.Sum256([]byte(fmt.Sprint(caller(c).idemScope, "\x00batch\x00", idem, "\x00", i)))
			keys[i] = hex.EncodeToString(sum[:])
			h.Write([]byte(call.hash()))
			h.Write([]byte{0})
		}
		batchHash = hex.EncodeToString(h.Sum(nil))
	}
	if e := s.simulateBatch(ctx, calls, keys); e != nil {
		return e
	}
	js := make([]*jobs.Job, len(calls))
	for i, call := range calls {
		js[i] = s.newJob(call, caller(c).name)
		if batchHash != "" {
			js[i].BodyHash = batchHash
		}
	}
	out, created, err := s.store.CreateMany(ctx, js, keys)
	var mismatch *jobs.MismatchError
	switch {
	case errors.As(err, &mismatch):
		return &Error{Kind: CodeIdempotencyReuse, Code: CodeIdempotencyReuse, Field: "Idempotency-Key",
			Message: fmt.Sprintf("Idempotency-Key was used for a batch with a different request (its job %d is %s)", mismatch.Index, mismatch.PrevID)}
	case errors.Is(err, jobs.ErrNotReplicated):
		// The jobs stand on the primary and will run if they survive.
		s.enqueueMany(ctx, out, created)
		return apiError(CodeNotReplicated, "the %d jobs are stored on the Redis primary but not yet on enough replicas (%v); "+
			"send the same batch with the same Idempotency-Key again to get them once they are", len(out), err)
	case err != nil:
		return apiError(CodeUnavailable, "could not store the jobs: %v", err)
	}
	s.enqueueMany(ctx, out, created)
	items := make([]batchItem, len(out))
	status := http.StatusOK // every job was there already: a replay
	for i, j := range out {
		items[i] = batchItem{ID: j.ID, Status: j.Status}
		if created[i] {
			status = http.StatusAccepted
		}
	}
	return c.JSON(status, map[string][]batchItem{"jobs": items})
}

// validateItem decodes and validates one job of a batch as POST /v1/jobs
// does its body.
func (s *Server) validateItem(ctx context.Context, raw json.RawMessage) (*call, *Error) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, invalid("invalid_type", "", "each job must be a JSON object")
	}
	var jr jobRequest
	if e := decodeJSON(raw, &jr); e != nil {
		return nil, e
	}
	if e := s.checkChain(jr.Chain); e != nil { // a batch is on one chain
		return nil, e
	}
	call, e := s.validateRequest(ctx, &jr)
	if e != nil {
		return nil, e
	}
	if e := s.checkWebhookURL(ctx, call.WebhookURL); e != nil {
		return nil, e
	}
	if call.From != nil {
		known, err := s.knownSigner(ctx, *call.From)
		if err != nil {
			var ae *Error
			if errors.As(err, &ae) {
				return nil, ae
			}
			return nil, apiError(CodeUnavailable, "could not read signers: %v", err)
		}
		if !known {
			return nil, invalid("unknown_signer", "from", "from %s is not a signer of this relayq", call.From.Hex())
		}
	}
	return call, nil
}

// simulateBatch dry-runs the jobs that ask for it, unless the batch's
// Idempotency-Key was used already (the same batch again gets its jobs
// back), and names the first job that would fail.
func (s *Server) simulateBatch(ctx context.Context, calls []*call, keys []string) *Error {
	wanted := false
	for _, c := range calls {
		wanted = wanted || c.Simulate
	}
	if !wanted {
		return nil
	}
	if keys != nil {
		used, err := s.store.IdempotencyKeyUsed(ctx, keys[0])
		if err != nil {
			return apiError(CodeUnavailable, "could not check the Idempotency-Key: %v", err)
		}
		if used {
			return nil
		}
	}
	if i, e := s.simulateMany(ctx, calls); e != nil {
		return inItem(i, e)
	}
	return nil
}

// newJob is the job record of a validated call, as POST /v1/jobs and each
// job of a batch store it, created by the API key named owner.
func (s *Server) newJob(call *call, owner string) *jobs.Job {
	j := &jobs.Job{
		ID:            jobs.NewID(),
		ChainID:       s.chainID,
		APIKey:        owner,
		To:            call.To.Hex(),
		Function:      call.Function,
		Args:          call.Args,
		Data:          hexutil.Encode(call.Data),
		Value:         call.Value.String(),
		GasLimit:      call.GasLimit,
		Confirmations: s.chain.Confirmations,
		Metadata:      call.Metadata,
		WebhookURL:    call.WebhookURL,
		Deadline:      call.Deadline,
		BodyHash:      call.hash(),
	}
	if call.From != nil {
		j.From = call.From.Hex()
	}
	if call.Deploy {
		j.To = "" // no recipient: the worker signs a contract creation
	}
	if call.Confirmations != nil {
		j.Confirmations = *call.Confirmations
	}
	return j
}

// enqueueMany hands every queued job of a batch request to the workers:
// the new ones in batch tasks, the replayed ones each in its own (see
// enqueue).
func (s *Server) enqueueMany(ctx context.Context, js []*jobs.Job, created []bool) {
	for i, j := range js {
		if j != nil && j.Status == jobs.Queued {
			s.enqueue(ctx, j.ID, i < len(created) && created[i])
		}
	}
}

// countBatch counts a batch's jobs as accepted (created or replayed), or
// the request as refused with its code.
func (s *Server) countBatch(err error, created []bool) {
	var ae *Error
	switch {
	case errors.As(err, &ae):
		s.cfg.Metrics.JobRejected(ae.Code)
	case err != nil:
		s.cfg.Metrics.JobRejected(CodeInternal)
	default:
		for _, c := range created {
			s.cfg.Metrics.JobAccepted(!c)
		}
	}
}
