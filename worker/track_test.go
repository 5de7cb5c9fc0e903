package worker

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/lane"
)

// The shell writes a job's MarkMined and Finalize as one script only when
// the core asked for exactly that pair, for the same job, in that order.
func TestMinedAndFinal(t *testing.T) {
	t.Parallel()
	mm := lane.MarkMined{ID: "a"}
	fin := lane.Finalize{ID: "a", To: jobs.Confirmed}
	for _, tc := range []struct {
		name string
		as   []lane.Action
		want bool
	}{
		{"mined then final", []lane.Action{mm, fin}, true},
		{"mined, final, release", []lane.Action{mm, fin, lane.Release{ID: "a"}}, true},
		{"mined alone", []lane.Action{mm}, false},
		{"final alone", []lane.Action{fin}, false},
		{"final then mined", []lane.Action{fin, mm}, false},
		{"mined then a warning", []lane.Action{mm, lane.Warn{ID: "a"}}, false},
		{"another job's verdict", []lane.Action{mm, lane.Finalize{ID: "b", To: jobs.Confirmed}}, false},
		{"nothing", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotMM, gotF, ok := minedAndFinal(tc.as)
			require.Equal(t, tc.want, ok)
			if ok {
				require.Equal(t, mm, gotMM)
				require.Equal(t, fin, gotF)
			}
		})
	}
}

// A panic in one job of a batch task becomes that job's error, and the
// others' results are theirs.
func TestRecovered(t *testing.T) {
	t.Parallel()
	require.NoError(t, recovered(func() error { return nil }))
	require.EqualError(t, recovered(func() error { return errors.New("node down") }), "node down")
	require.EqualError(t, recovered(func() error { panic("index out of range") }), "panic: index out of range")
	var m map[string]int
	require.ErrorContains(t, recovered(func() error { m["x"]++; return nil }), "panic: assignment to entry in nil map")
}
