package api

import (
	"bytes"
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/relayq/relayq/txmgr"
)

// failure is what a node's error on a call or an estimate means to the
// caller of the API.
type failure int

const (
	failureReverted    failure = iota + 1 // the call reverted: 422 reverted, with the reason
	failureCall                           // the call failed otherwise (halted, out of gas, cannot pay): 422 call_failed
	failureUnavailable                    // the node is unreachable, overloaded or too slow: 503, try again
	failureNode                           // the node answered with an error that is not about the call: 502
)

// transportReasons are txmgr's reasons for a node that did not answer, or
// not yet: the request may succeed later.
var transportReasons = map[string]bool{
	"timeout": true, "canceled": true, "connection failed": true, "rate limited": true,
	"node unavailable": true, "node busy": true, "node behind": true,
}

// classifyNodeError sorts an error from eth_call or eth_estimateGas with
// txmgr's one classification table.
func classifyNodeError(err error) failure {
	if txmgr.IsRevert(err) {
		return failureReverted
	}
	class, reason := txmgr.Explain(err)
	switch {
	case transportReasons[reason] || strings.HasPrefix(reason, "http "):
		return failureUnavailable
	case class == txmgr.ClassPermanent || class == txmgr.ClassPaused ||
		reason == "out of gas" || reason == "gas required exceeds allowance":
		return failureCall
	}
	return failureNode
}

// nodeFailure turns an error from the node into the API's answer: a revert
// with its decoded reason (custom errors by name when cfg.ErrorABI has
// them) and raw data, a failed call, or the node's own trouble.
func (s *Server) nodeFailure(err error, doing string) *Error {
	switch classifyNodeError(err) {
	case failureReverted:
		r, _ := txmgr.RevertFromError(err, s.cfg.ErrorABI)
		return &Error{Kind: CodeReverted, Code: CodeReverted, Message: "execution reverted: " + r.Reason,
			RevertReason: r.Reason, RevertData: hexutil.Encode(r.Data)}
	case failureCall:
		return apiError(CodeCallFailed, "%s failed: %v", doing, err)
	case failureUnavailable:
		return apiError(CodeUnavailable, "the node is unavailable (%s: %v); try again", doing, err)
	}
	return apiError(CodeNodeError, "the node answered %s with an error: %v", doing, err)
}

// simulate dry-runs a job's call with eth_estimateGas, from the signer
// that will probably send it, with gas_limit as the gas when it has one:
// nil when the call would succeed now.
func (s *Server) simulate(ctx context.Context, c *call) *Error {
	from, e := s.simulationSender(ctx, c)
	if e != nil {
		return e
	}
	to := &c.To
	if c.Deploy { // estimated as a creation, constructor and all
		to = nil
	}
	msg := ethereum.CallMsg{From: from, To: to, Data: c.Data, Value: c.Value, Gas: c.GasLimit}
	if _, err := s.chain.Node.EstimateGas(ctx, msg); err != nil {
		return s.callFailure(err, "the dry run", c)
	}
	return nil
}

// simulationSender is the job's from, or else the signer a dry run
// assumes: the first configured one, or the lowest address the workers
// registered, or (no signer known yet) the zero address.
func (s *Server) simulationSender(ctx context.Context, c *call) (common.Address, *Error) {
	if c.From != nil {
		return *c.From, nil
	}
	if len(s.chain.Signers) > 0 {
		return s.chain.Signers[0], nil
	}
	set, err := s.signerSet(ctx, nil)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) {
			return common.Address{}, ae
		}
		return common.Address{}, apiError(CodeUnavailable, "could not read signers: %v", err)
	}
	all := make([]common.Address, 0, len(set))
	for a := range set {
		all = append(all, a)
	}
	if len(all) == 0 {
		return common.Address{}, nil
	}
	sort.Slice(all, func(i, j int) bool { return bytes.Compare(all[i][:], all[j][:]) < 0 })
	return all[0], nil
}

// simulateNew dry-runs c unless idemKey already names a job: a retry of an
// accepted request gets that job back, whatever the chain says now.
func (s *Server) simulateNew(ctx context.Context, c *call, idemKey string) *Error {
	used, err := s.store.IdempotencyKeyUsed(ctx, idemKey)
	if err != nil {
		return apiError(CodeUnavailable, "could not check the Idempotency-Key: %v", err)
	}
	if used {
		return nil
	}
	return s.simulate(ctx, c)
}

// simulateConcurrency bounds the dry runs of one batch in flight at once.
const simulateConcurrency = 8

// simulateMany dry-runs the calls that ask for it, a few at a time, and
// returns the lowest index whose dry run failed with its error, or -1.
func (s *Server) simulateMany(ctx context.Context, calls []*call) (int, *Error) {
	errs := make([]*Error, len(calls))
	sem := make(chan struct{}, simulateConcurrency)
	var wg sync.WaitGroup
	for i, c := range calls {
		if !c.Simulate {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = s.simulate(ctx, c)
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != nil {
			return i, e
		}
	}
	return -1, nil
}
