package metrics_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/relayq/relayq/jobs"
	"github.com/relayq/relayq/metrics"
)

// Totals reads back exactly what the counters were told, and nil Metrics
// reads zero.
func TestTotals(t *testing.T) {
	t.Parallel()
	require.Equal(t, metrics.Totals{}, (*metrics.Metrics)(nil).Totals())
	m := metrics.New()
	m.JobAccepted(false)
	m.JobAccepted(false)
	m.JobAccepted(true) // a replay is not a new job
	require.NoError(t, m.Finished(jobs.Confirmed, 1, nil))
	require.NoError(t, m.Finished(jobs.Failed, 0, nil))
	require.NoError(t, m.Finished(jobs.Cancelled, 2, nil))
	require.NoError(t, m.Finished(jobs.Confirmed, 1, nil))
	require.Equal(t, metrics.Totals{Accepted: 2, Confirmed: 2, Failed: 1, Cancelled: 1}, m.Totals())
}
