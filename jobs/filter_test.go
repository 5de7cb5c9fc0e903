package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
)

// idAt is a job id created at t (a UUIDv7 whose timestamp is t's).
func idAt(t time.Time) string {
	ms := uint64(t.UnixMilli())
	return fmt.Sprintf("%08x-%04x", ms>>16, ms&0xffff) + jobs.NewID()[13:]
}

// Every filter selects exactly the jobs it names, and a filtered listing
// pages with its cursor through all of them without repeats.
func TestListFilter(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := context.Background()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	signers := []string{"0x00000000000000000000000000000000000000A1", "0x00000000000000000000000000000000000000b2"}
	byID := map[string]int{}
	for i := range 30 {
		j := newJob()
		j.ID = idAt(base.Add(time.Duration(i) * time.Minute))
		j.Metadata = json.RawMessage(fmt.Sprintf(`{"order":"o-%d","n":%d,"even":%t}`, i, i, i%2 == 0))
		_, _, err := s.Create(ctx, j, "")
		require.NoError(t, err)
		require.NoError(t, s.TransitionIf(ctx, j.ID, jobs.Queued, jobs.Submitted, "", jobs.Fields{"from", signers[i%2]}, nil))
		if i%3 == 0 {
			_, err := s.Transition(ctx, j.ID, jobs.Failed, "", nil, nil)
			require.NoError(t, err)
		}
		byID[j.ID] = i
	}
	all := func(f jobs.Filter, limit int) []int {
		var got []int
		cursor := ""
		for range 100 {
			list, next, err := s.ListFilter(ctx, f, limit, cursor)
			require.NoError(t, err)
			require.LessOrEqual(t, len(list), limit)
			for _, j := range list {
				got = append(got, byID[j.ID])
			}
			if next == "" {
				return got
			}
			cursor = next
		}
		t.Fatal("the cursor never ended")
		return nil
	}
	seq := func(from, to, step int) []int { // newest first
		var out []int
		for i := to; i >= from; i -= step {
			out = append(out, i)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    jobs.Filter
		want []int
	}{
		{"none", jobs.Filter{}, seq(0, 29, 1)},
		{"status", jobs.Filter{Status: jobs.Failed}, seq(0, 27, 3)},
		{"since", jobs.Filter{Since: base.Add(25 * time.Minute)}, seq(25, 29, 1)},
		{"until", jobs.Filter{Until: base.Add(3 * time.Minute)}, seq(0, 2, 1)},
		{"range", jobs.Filter{Since: base.Add(10 * time.Minute), Until: base.Add(10*time.Minute + time.Millisecond)}, []int{10}},
		{"signer any case", jobs.Filter{From: "0x00000000000000000000000000000000000000a1"}, seq(0, 28, 2)},
		{"metadata string", jobs.Filter{MetaKey: "order", MetaValue: "o-7"}, []int{7}},
		{"metadata number", jobs.Filter{MetaKey: "n", MetaValue: "12"}, []int{12}},
		{"metadata bool and status", jobs.Filter{Status: jobs.Submitted, MetaKey: "even", MetaValue: "false"}, []int{29, 25, 23, 19, 17, 13, 11, 7, 5, 1}},
		{"metadata missing key", jobs.Filter{MetaKey: "nope", MetaValue: "1"}, nil},
	} {
		for _, limit := range []int{1, 4, 50} {
			require.Equal(t, tc.want, all(tc.f, limit), "%s, limit %d", tc.name, limit)
		}
	}
}
