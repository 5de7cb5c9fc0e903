package api

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/labstack/echo/v4"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/nonce"
)

// signerView is one signer as GET /v1/signers shows it.
type signerView struct {
	Address  string  `json:"address"`
	ChainID  uint64  `json:"chain_id"`
	Latest   uint64  `json:"latest_nonce"`  // the chain's nonce in its latest block
	Pending  uint64  `json:"pending_nonce"` // the chain's nonce counting its pool
	Next     *uint64 `json:"next_nonce"`    // the next nonce relayq will bind
	InFlight int64   `json:"in_flight"`     // jobs holding a nonce that is not final yet
	Balance  string  `json:"balance"`       // wei
	Paused   bool    `json:"paused"`        // cannot pay: its jobs wait
	Reason   string  `json:"paused_reason,omitempty"`
}

func (s *Server) signerAddrs(ctx context.Context) ([]common.Address, error) {
	set, err := s.signerSet(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := make([]common.Address, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cmp(out[j]) < 0 })
	return out, nil
}

func (s *Server) signerView(ctx context.Context, addr common.Address) (signerView, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	alloc := nonce.New(s.cfg.Redis, s.chain.Prefix, s.chainID, addr)
	v := signerView{Address: addr.Hex(), ChainID: s.chainID}
	var err error
	if v.Latest, err = s.chain.Node.NonceAt(ctx, addr, nil); err != nil {
		return v, err
	}
	if v.Pending, err = s.chain.Node.PendingNonceAt(ctx, addr); err != nil {
		return v, err
	}
	bal, err := s.chain.Node.BalanceAt(ctx, addr, nil)
	if err != nil {
		return v, err
	}
	v.Balance = bal.String()
	if n, ok, err := alloc.Next(ctx); err != nil {
		return v, err
	} else if ok {
		v.Next = &n
	}
	if v.InFlight, err = alloc.Count(ctx); err != nil {
		return v, err
	}
	if v.Reason, err = alloc.Paused(ctx); err != nil {
		return v, err
	}
	v.Paused = v.Reason != ""
	return v, nil
}

// signerViews shows every signer of the chain s serves.
func (s *Server) signerViews(ctx context.Context) ([]signerView, error) {
	addrs, err := s.signerAddrs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]signerView, 0, len(addrs))
	for _, a := range addrs {
		v, err := s.signerView(ctx, a)
		if err != nil {
			return nil, apiError(CodeUnavailable, "could not read signer %s: %v", a.Hex(), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// reconcileSigner raises the signer's next nonce to the chain's pending
// nonce: for after the key was used outside relayq.
func (s *Server) reconcileSigner(c echo.Context) error {
	ctx := c.Request().Context()
	raw := c.Param("address")
	addr, e := parseAddress(raw, "address")
	if e != nil {
		return e
	}
	known, err := s.knownSigner(ctx, addr)
	if err != nil {
		return err
	}
	if !known {
		return apiError(CodeNotFound, "no signer %s", addr.Hex())
	}
	pending, err := s.chain.Node.PendingNonceAt(ctx, addr)
	if err != nil {
		return apiError(CodeUnavailable, "node: %v", err)
	}
	if _, err := nonce.New(s.cfg.Redis, s.chain.Prefix, s.chainID, addr).Reconcile(ctx, pending); err != nil {
		return apiError(CodeUnavailable, "%v", err)
	}
	v, err := s.signerView(ctx, addr)
	if err != nil {
		return apiError(CodeUnavailable, "could not read signer %s: %v", addr.Hex(), err)
	}
	return c.JSON(http.StatusOK, v)
}

// cancelJob cancels a queued job at once; a submitted one is marked, and the
// worker replaces its transaction with a 0-value self-send at the same nonce
// (whichever is mined decides). Anything further along is 409.
func (s *Server) cancelJob(c echo.Context) error {
	id := c.Param("id")
	c.Set(jobIDKey, id)
	j, status, err := s.cancel(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(status, j)
}

// cancel is the one cancel code path, of the API and the UI: it returns the
// job and the HTTP status of the answer (200 cancelled, 202 marked), or an
// API error.
func (s *Server) cancel(ctx context.Context, id string) (*jobs.Job, int, error) {
	if _, ok := jobs.CreatedAt(id); !ok {
		return nil, 0, apiError(CodeNotFound, "no job %q", clip(id))
	}
	for range 3 { // a job may move between our read and our write
		j, err := s.store.Get(ctx, id)
		if errors.Is(err, jobs.ErrNotFound) || err == nil && !principalOf(ctx).owns(j) {
			return nil, 0, apiError(CodeNotFound, "no job %q", id) // another key's job, as getJob
		}
		if err != nil {
			return nil, 0, apiError(CodeUnavailable, "could not load the job: %v", err)
		}
		var bad *jobs.BadTransitionError
		switch j.Status {
		case jobs.Queued:
			err = s.store.TransitionIf(ctx, id, jobs.Queued, jobs.Cancelled, "cancelled by request", nil, nil)
		case jobs.Submitted:
			if j.CancelRequested {
				return j, http.StatusAccepted, nil
			}
			err = s.store.Update(ctx, id, jobs.Submitted, jobs.Fields{"cancel_requested", "1"}, nil)
		default:
			return nil, 0, &Error{Kind: CodeConflict, Code: "not_cancellable", Message: "job " + id + " is " + string(j.Status) + ": only queued or submitted jobs can be cancelled"}
		}
		if errors.As(err, &bad) {
			continue
		}
		if err != nil {
			return nil, 0, apiError(CodeUnavailable, "could not cancel: %v", err)
		}
		j, err = s.store.Get(ctx, id)
		if err != nil {
			return nil, 0, apiError(CodeUnavailable, "could not load the job: %v", err)
		}
		if j.Status == jobs.Cancelled {
			return j, http.StatusOK, nil
		}
		return j, http.StatusAccepted, nil
	}
	return nil, 0, apiError(CodeUnavailable, "job %s kept changing; try again", id)
}
