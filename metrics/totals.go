package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Totals are this process's job counters since it started: what the UI's
// throughput chart samples.
type Totals struct {
	Accepted  float64 // jobs created by POST /v1/jobs (not replays)
	Confirmed float64 // jobs this process moved to confirmed
	Failed    float64 // … to failed
	Cancelled float64 // … to cancelled
}

// Totals reads the job counters without gathering the whole registry (which
// would scrape the cluster gauges from Redis and the node). Zero on nil
// Metrics.
func (m *Metrics) Totals() Totals {
	if m == nil {
		return Totals{}
	}
	return Totals{
		Accepted:  counterValue(m.accepted.WithLabelValues("created")),
		Confirmed: counterValue(m.finished.WithLabelValues("confirmed")),
		Failed:    counterValue(m.finished.WithLabelValues("failed")),
		Cancelled: counterValue(m.finished.WithLabelValues("cancelled")),
	}
}

func counterValue(c prometheus.Counter) float64 {
	var d dto.Metric
	if c.Write(&d) != nil || d.Counter == nil {
		return 0
	}
	return d.Counter.GetValue()
}
