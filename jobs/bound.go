package jobs

import (
	"context"
	"fmt"
)

// UpdateBound is Update for a write that records a nonce the allocator
// bound to the job (Fields has "nonce"): a re-sign at a new nonce. It
// applies only where binding (the allocator's bound hash) binds the job to
// that nonce, and answers ErrNotBound otherwise, so a rebind lost in a Redis
// failover cannot leave two jobs signed at one nonce.
func (s *Store) UpdateBound(ctx context.Context, id string, in Status, fields Fields, attempt *Attempt, binding string) error {
	keys, args, err := s.prepare(id, in, []Status{in}, "", fields, attempt)
	if err != nil {
		return err
	}
	keys = append(keys, binding)
	from := []Status{in}
	res, werr, err := s.runScript(ctx, boundTransitionScript, keys, args...)
	if err = boundOutcome(id, in, from, res, err); err == nil && werr != nil {
		return fmt.Errorf("update job %s: %w", id, werr)
	}
	return err
}

func boundOutcome(id string, in Status, from []Status, res []any, err error) error {
	if err == nil && len(res) == 2 && res[0] == int64(-2) {
		return fmt.Errorf("update job %s: %w", id, ErrNotBound)
	}
	_, err = outcome(id, in, from, res, err)
	return err
}
