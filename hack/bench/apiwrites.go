package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
)

// The API server counts every request it serves in requestsMetric, by verb
// and resource. Read before and after a series, the writes among them say
// what each create costs the cluster besides the object itself: ledger
// updates, events, and whatever else ran meanwhile. Leader election and the
// API server's own lease renewals are time-driven, so a slower series pays
// more of them; the breakdown shows them apart.
const requestsMetric = "apiserver_request_total"

// mutatingVerbs are the verbs of requestsMetric that write. API servers
// report them upper case (POST, PUT, ...); the request verbs of RBAC
// (create, update, ...) are accepted too, in case a version reports those.
var mutatingVerbs = map[string]bool{
	"POST": true, "CREATE": true,
	"PUT": true, "UPDATE": true,
	"PATCH": true, "APPLY": true,
	"DELETE": true, "DELETECOLLECTION": true,
}

// requestKey is what the table tells write counters apart by.
type requestKey struct{ verb, resource, subresource string }

// requestCounts is one reading of the write counters.
type requestCounts map[requestKey]float64

// readWrites reads the API server's write counters. Only the lines of
// requestsMetric are parsed: the whole page is megabytes of histograms.
func readWrites(ctx context.Context, api rest.Interface) (requestCounts, error) {
	raw, err := api.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	var kept bytes.Buffer
	for line := range bytes.Lines(raw) {
		if isRequestsLine(line) {
			kept.Write(line)
			if !bytes.HasSuffix(line, []byte("\n")) {
				kept.WriteByte('\n')
			}
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(&kept)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", requestsMetric, err)
	}
	family := families[requestsMetric]
	if family == nil {
		return nil, fmt.Errorf("the API server's metrics have no %s", requestsMetric)
	}
	counts := requestCounts{}
	for _, m := range family.GetMetric() {
		labels := make(map[string]string, len(m.GetLabel()))
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		verb := strings.ToUpper(labels["verb"])
		if !mutatingVerbs[verb] {
			continue
		}
		counts[requestKey{verb, labels["resource"], labels["subresource"]}] += sampleValue(m)
	}
	return counts, nil
}

// isRequestsLine reports whether a line of the metrics page is a sample,
// HELP or TYPE line of requestsMetric (and not of a longer name sharing
// its prefix).
func isRequestsLine(line []byte) bool {
	for _, prefix := range []string{requestsMetric + "{", requestsMetric + " ", "# HELP " + requestsMetric + " ", "# TYPE " + requestsMetric + " "} {
		if bytes.HasPrefix(line, []byte(prefix)) {
			return true
		}
	}
	return false
}

// sampleValue is a counter's value, or an untyped sample's if the TYPE
// line was missing.
func sampleValue(m *dto.Metric) float64 {
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetUntyped().GetValue()
}

// writes are the write requests between two readings besides the creates
// of a series' own objects.
type writes struct {
	objects    int                // objects the series created
	others     float64            // writes besides their own creates
	byResource map[string]float64 // others, by resource[/subresource]
}

// writesBetween subtracts two readings and sets aside the creates of
// resource itself (subresource-less POSTs): those are the series.
func writesBetween(before, after requestCounts, resource string, objects int) writes {
	w := writes{objects: objects, byResource: map[string]float64{}}
	for k, v := range after {
		d := v - before[k]
		if d <= 0 {
			continue
		}
		if k.resource == resource && k.subresource == "" && (k.verb == "POST" || k.verb == "CREATE") {
			continue
		}
		name := k.resource
		if name == "" {
			name = "non-resource"
		}
		if k.subresource != "" {
			name += "/" + k.subresource
		}
		w.byResource[name] += d
		w.others += d
	}
	return w
}

// perObject is the table's figure: writes besides its own per created
// object.
func (w writes) perObject() float64 {
	if w.objects == 0 {
		return 0
	}
	return w.others / float64(w.objects)
}

// String is the figure and the counts behind it, largest first:
// "0.52 (macblocks=260, leases=6)".
func (w writes) String() string {
	names := make([]string, 0, len(w.byResource))
	for name := range w.byResource {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		if d := w.byResource[b] - w.byResource[a]; d != 0 {
			if d > 0 {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s=%.0f", name, w.byResource[name]))
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	return fmt.Sprintf("%.2f (%s)", w.perObject(), strings.Join(parts, ", "))
}
