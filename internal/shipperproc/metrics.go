package shipperproc

import (
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics are one scrape of /metrics.
type Metrics map[string]*dto.MetricFamily

// scrapeClient gives up on a shipper that accepts the connection and
// does not answer, so that a stalled shipper fails the test instead of
// hanging it.
var scrapeClient = http.Client{Timeout: 5 * time.Second}

// Scrape reads the running shipper's /metrics.
func (p *Proc) Scrape() (Metrics, error) {
	resp, err := scrapeClient.Get("http://" + p.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	return fams, nil
}

// MustScrape is Scrape, failing the test on an error.
func (p *Proc) MustScrape() Metrics {
	p.t.Helper()
	m, err := p.Scrape()
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// Value sums the samples of name whose labels include every pair of
// labels (name, value, name, value...); ok is false when the metric is
// missing or no sample matches.
func (m Metrics) Value(name string, labels ...string) (sum float64, ok bool) {
	fam := m[name]
	if fam == nil {
		return 0, false
	}
	for _, mt := range fam.Metric {
		if !hasLabels(mt, labels) {
			continue
		}
		ok = true
		switch {
		case mt.Counter != nil:
			sum += mt.Counter.GetValue()
		case mt.Gauge != nil:
			sum += mt.Gauge.GetValue()
		case mt.Untyped != nil:
			sum += mt.Untyped.GetValue()
		}
	}
	return sum, ok
}

func hasLabels(mt *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range mt.Label {
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
