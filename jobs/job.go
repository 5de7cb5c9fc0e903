// Package jobs keeps relayq's job records in Redis: creating them
// idempotently, loading them, and moving them through their statuses with
// one transition function.
package jobs

import (
	"bytes"
	"encoding/json"
	"time"
)

// Job is one request to execute a contract call, and everything relayq
// learned while doing it. Its JSON form is what the API returns.
type Job struct {
	ID      string `json:"id"`
	Status  Status `json:"status"`
	ChainID uint64 `json:"chain_id"`
	APIKey  string `json:"api_key,omitempty"` // the name (never the key) of the API key that created it; see Store.ListOwned
	From    string `json:"from,omitempty"`
	To      string `json:"to"` // "" for a deployment: null in JSON (MarshalJSON)
	// ContractAddress is where a deployment (a job without To) creates its
	// contract: predicted from From and Nonce (crypto.CreateAddress) while
	// the job waits to be mined, so it follows a re-sign at another nonce;
	// from the receipt once mined. Absent when the mined transaction
	// created nothing (a reverted constructor, a no-op in its place) and
	// on a failed or cancelled job.
	ContractAddress   string          `json:"contract_address,omitempty"`
	Function          string          `json:"function,omitempty"`
	Args              json.RawMessage `json:"args,omitempty"`
	Data              string          `json:"data"`
	Value             string          `json:"value"`
	GasLimit          uint64          `json:"gas_limit,omitempty"` // as requested; 0 means estimate
	Gas               uint64          `json:"gas,omitempty"`       // the limit of the signed tx
	Confirmations     uint64          `json:"confirmations"`
	Nonce             *uint64         `json:"nonce"`
	TxHash            string          `json:"tx_hash,omitempty"`
	Attempts          []Attempt       `json:"attempts"`
	BlockNumber       *uint64         `json:"block_number"`
	BlockHash         string          `json:"block_hash,omitempty"`
	GasUsed           *uint64         `json:"gas_used"`
	EffectiveGasPrice string          `json:"effective_gas_price,omitempty"`
	Error             *Error          `json:"error"`
	CancelRequested   bool            `json:"cancel_requested,omitempty"`
	// Abandon is set when relayq gave up on a job that has a signed call
	// (the node rejected it for good, the signer cannot pay for it): a
	// 0-value self-send replaces it at the same nonce, and the chain
	// decides. If the self-send is mined the job fails with this error; if
	// the call is, the job is confirmed as usual.
	Abandon *Error `json:"abandon,omitempty"`
	// ReceiptStatus is the mined transaction's receipt status (1 success,
	// 0 reverted), known from mined on.
	ReceiptStatus *uint64 `json:"receipt_status,omitempty"`
	// Warning says why the job is held up without having failed, as
	// "<code>: <message>"; the codes are the Warn constants.
	Warning    string          `json:"warning,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	WebhookURL string          `json:"webhook_url,omitempty"`
	// Deadline, if set, is when a job that has not been broadcast yet
	// fails expired instead of being sent; one already broadcast is left
	// to the chain.
	Deadline  *time.Time    `json:"deadline,omitempty"`
	Webhook   *WebhookState `json:"webhook,omitempty"` // delivery of the job's webhook events
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	History   []Change      `json:"history"`

	// Raw is the signed transaction (0x hex) persisted before broadcast:
	// the write-ahead record that a retry re-broadcasts.
	Raw string `json:"-"`
	// BodyHash identifies the request body for idempotency checks.
	BodyHash string `json:"-"`
}

// Deployment reports whether j creates a contract: it has no To.
func (j *Job) Deployment() bool { return j.To == "" }

// MarshalJSON is the job's JSON with "to" null for a deployment. The
// fields before "to" (id, status, chain_id, api_key, from) cannot hold
// `,"to":""`, so its first occurrence is the field itself; keys keep
// their order.
func (j Job) MarshalJSON() ([]byte, error) {
	type plain Job // without this method
	b, err := json.Marshal((*plain)(&j))
	if err != nil || j.To != "" {
		return b, err
	}
	return bytes.Replace(b, []byte(`,"to":"",`), []byte(`,"to":null,`), 1), nil
}

// WebhookState is how the delivery of a job's webhook events is going: two
// counters and the outcome of the latest delivery attempt, of any event.
type WebhookState struct {
	Deliveries    int64     `json:"deliveries"` // events delivered (the receiver answered 2xx)
	Failures      int64     `json:"failures"`   // attempts that failed or were refused
	LastEvent     string    `json:"last_event"`
	LastType      string    `json:"last_type"`
	LastStatus    string    `json:"last_status"` // see the webhook delivery statuses
	LastError     string    `json:"last_error,omitempty"`
	LastAttemptAt time.Time `json:"last_attempt_at"`
}

// Webhook delivery statuses.
const (
	WebhookDelivered = "delivered" // the receiver answered 2xx
	WebhookFailed    = "failed"    // an error or a non-2xx answer; retried with backoff
	WebhookRefused   = "refused"   // the URL resolved to an address the SSRF policy refuses; not retried
)

// Attempt is one signed transaction broadcast for a job. Every hash ever
// broadcast is recorded, since any of them may be the one mined.
type Attempt struct {
	Hash      string    `json:"hash"`
	Nonce     uint64    `json:"nonce"`
	Gas       uint64    `json:"gas"`
	GasTipCap string    `json:"max_priority_fee_per_gas"`
	GasFeeCap string    `json:"max_fee_per_gas"`
	Kind      string    `json:"kind"` // see the Attempt kinds
	SentAt    time.Time `json:"sent_at"`
	SentBlock uint64    `json:"sent_block"` // chain head when it was signed: how stuck is measured
}

// Attempt kinds.
const (
	KindOriginal = "original" // the job's call, first signature
	KindBump     = "bump"     // the same call at the same nonce with higher fees
	KindCancel   = "cancel"   // a 0-value self-send at the same nonce, replacing the call
	KindResign   = "resign"   // the call at a new nonce: the old one was used by a tx that is not relayq's
	KindGapFill  = "gap_fill" // a 0-value self-send that uses a nonce the job bound but can never use
)

// Expired reports whether j's deadline has passed at now: true only for a
// job with a deadline.
func (j *Job) Expired(now time.Time) bool {
	return j.Deadline != nil && !now.Before(*j.Deadline)
}

// Warning codes: the start of a job's warning, before ": ".
const (
	// WarnInsufficientFunds: the signer cannot pay for the job's value plus
	// its gas at the current fee cap; the job waits queued until it can.
	WarnInsufficientFunds = "insufficient_funds"
	// WarnStuck: a higher fee would pass RELAYQ_MAX_FEE_GWEI.
	WarnStuck = "stuck"
)

// Error says why a job failed.
type Error struct {
	Code         string `json:"code"`
	Message      string `json:"message"`
	RevertReason string `json:"revert_reason,omitempty"`
	RevertData   string `json:"revert_data,omitempty"`
}

// Change is one status transition, stamped.
type Change struct {
	From Status    `json:"from,omitempty"`
	To   Status    `json:"to"`
	At   time.Time `json:"at"`
	Note string    `json:"note,omitempty"`
}

// Error codes a job can fail with.
const (
	ErrCodeRevertedAtEstimate = "reverted_at_estimate"
	ErrCodeRevertedOnChain    = "reverted_on_chain"
	ErrCodeRejected           = "rejected_by_node"
	ErrCodeRetriesExhausted   = "retries_exhausted"
	ErrCodeInvalid            = "invalid_job"
	// ErrCodeInsufficientFunds: the job held a nonce its signer could not
	// pay for; the nonce was filled with a no-op instead.
	ErrCodeInsufficientFunds = "insufficient_funds"
	// ErrCodeExpired: the job's deadline passed before it was broadcast.
	ErrCodeExpired = "expired"
	// ErrCodeNonceUsed: the job's nonce was used by a transaction that is
	// not relayq's while the job was being given up.
	ErrCodeNonceUsed = "nonce_used_elsewhere"
)
