package jobs

import (
	"fmt"
	"slices"
)

// Status is where a job is in its life.
type Status string

// The statuses. Queued, Submitted and Mined are in flight; the others are
// terminal.
const (
	Queued    Status = "queued"    // accepted, durable, no transaction signed yet
	Submitted Status = "submitted" // signed tx persisted (write-ahead) and broadcast or about to be
	Mined     Status = "mined"     // included in a block, fewer than the wanted confirmations deep
	Confirmed Status = "confirmed" // included, enough confirmations on the canonical chain
	Failed    Status = "failed"    // will never execute (or executed and reverted); error says why
	Cancelled Status = "cancelled" // cancelled by the user before it executed
)

// Statuses lists every status in lifecycle order.
var Statuses = []Status{Queued, Submitted, Mined, Confirmed, Failed, Cancelled}

// allowedFrom says, for each target status, the statuses a job may leave to
// reach it. This table is the state machine: states move forward only, and
// mined → submitted (a reorg took the block away) is the one step back.
var allowedFrom = map[Status][]Status{
	Submitted: {Queued, Mined},
	Mined:     {Submitted},
	Confirmed: {Mined},
	Failed:    {Queued, Submitted, Mined},
	Cancelled: {Queued, Submitted, Mined},
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool { return slices.Contains(Statuses, s) }

// Terminal reports whether a job in s is finished for good.
func (s Status) Terminal() bool { return s == Confirmed || s == Failed || s == Cancelled }

// CanTransition reports whether a job may move from one status to another.
func CanTransition(from, to Status) bool { return slices.Contains(allowedFrom[to], from) }

// BadTransitionError is returned when a job is not in a status from which
// the wanted transition is allowed.
type BadTransitionError struct {
	ID       string
	Current  Status
	Wanted   Status
	Expected []Status
}

func (e *BadTransitionError) Error() string {
	return fmt.Sprintf("job %s: cannot move from %s to %s", e.ID, e.Current, e.Wanted)
}
