// Package metricstest reads Prometheus metrics in tests: it scrapes a
// /metrics URL (parsing the exposition format with expfmt) or gathers a
// registry, and looks samples up by name and labels.
package metricstest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Snapshot is every metric family of one scrape, by name.
type Snapshot map[string]*dto.MetricFamily

// Parse reads the Prometheus text exposition format.
func Parse(r io.Reader) (Snapshot, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Snapshot(fams), nil
}

// Scrape GETs url (a /metrics endpoint), requires 200 and parses the answer.
func Scrape(t testing.TB, url string) Snapshot {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("scrape %s: status %d: %s", url, res.StatusCode, b)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: content type %q, want the text format", url, ct)
	}
	s, err := Parse(res.Body)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return s
}

// Gather collects reg directly.
func Gather(t testing.TB, reg prometheus.Gatherer) Snapshot {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	s := Snapshot{}
	for _, f := range fams {
		s[f.GetName()] = f
	}
	return s
}

// Series returns the series of family name whose labels include every
// name/value pair in labels.
func (s Snapshot) Series(name string, labels ...string) []*dto.Metric {
	if len(labels)%2 != 0 {
		panic("metricstest: labels must be name/value pairs")
	}
	f := s[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		if matches(m, labels) {
			out = append(out, m)
		}
	}
	return out
}

// Has reports whether at least one series of name matches labels.
func (s Snapshot) Has(name string, labels ...string) bool {
	return len(s.Series(name, labels...)) > 0
}

// Value sums the values of the counters, gauges or untyped series of name
// that match labels (0 when none does).
func (s Snapshot) Value(name string, labels ...string) float64 {
	var v float64
	for _, m := range s.Series(name, labels...) {
		switch {
		case m.Counter != nil:
			v += m.Counter.GetValue()
		case m.Gauge != nil:
			v += m.Gauge.GetValue()
		case m.Untyped != nil:
			v += m.Untyped.GetValue()
		}
	}
	return v
}

// Count sums the observation counts of the histograms of name that match
// labels.
func (s Snapshot) Count(name string, labels ...string) uint64 {
	var n uint64
	for _, m := range s.Series(name, labels...) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

// Sum sums the observation sums of the histograms of name that match
// labels.
func (s Snapshot) Sum(name string, labels ...string) float64 {
	var v float64
	for _, m := range s.Series(name, labels...) {
		v += m.GetHistogram().GetSampleSum()
	}
	return v
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
