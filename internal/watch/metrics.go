package watch

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pingpath/pingpath/internal/analyze"
)

// Metric names, as the alert rules and the dashboard use them
// (monitoring/): a test evaluates every expression of both against a
// Prometheus that scraped watch.
const (
	MetricSegment         = "pingpath_segment_seconds"
	MetricPingsSent       = "pingpath_pings_sent_total"
	MetricPingsAnswered   = "pingpath_pings_answered_total"
	MetricPingsLost       = "pingpath_pings_lost_total"
	MetricPingsComplete   = "pingpath_pings_complete_total"
	MetricDrops           = "pingpath_drops_total"
	MetricNodeUp          = "pingpath_node_up"
	MetricNodeDisconnects = "pingpath_node_disconnects_total"
	MetricTracerUp        = "pingpath_tracer_up"
	MetricTracerRestarts  = "pingpath_tracer_restarts_total"
	MetricTracerEvents    = "pingpath_tracer_events_total"
	MetricTracerRingLost  = "pingpath_tracer_ringbuf_lost_total"
	MetricTracerCPU       = "pingpath_tracer_cpu_seconds_total"
	MetricTracerBPF       = "pingpath_tracer_bpf_seconds_total"
	MetricTracerBPFRuns   = "pingpath_tracer_bpf_runs_total"
	MetricTracerDetached  = "pingpath_tracer_detached_total"
	MetricWindowOpen      = "pingpath_window_open_pings"
	MetricWindowLate      = "pingpath_window_late_observations_total"
)

// MetricNames are the series names watch exposes (a histogram's as its
// _bucket, _sum and _count series).
var MetricNames = []string{MetricSegment + "_bucket", MetricSegment + "_sum", MetricSegment + "_count",
	MetricPingsSent, MetricPingsAnswered, MetricPingsLost, MetricPingsComplete, MetricDrops,
	MetricNodeUp, MetricNodeDisconnects, MetricTracerUp, MetricTracerRestarts, MetricTracerEvents, MetricTracerRingLost,
	MetricTracerCPU, MetricTracerBPF, MetricTracerBPFRuns, MetricTracerDetached, MetricWindowOpen, MetricWindowLate}

// Segments are the values exported per ping: the segments of the path
// (with C and J, which only a shared clock gives), the two RTTs and the
// two unmeasured-virtualization residuals.
var Segments = append(append([]int{}, analyze.ReportSegments...),
	analyze.SegC, analyze.SegJ, analyze.ValRTT, analyze.ValPingRTT, analyze.ValResidS, analyze.ValResidR)

// latencyBuckets are the classic histogram buckets (seconds): 1-2-5 steps
// from 1 µs to 2 s. Native histograms (factor 1.1) are exposed beside them
// to scrapers that ask for them.
var latencyBuckets = []float64{
	1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1, 2,
}

// metrics are watch's Prometheus collectors.
type metrics struct {
	segment                        *prometheus.HistogramVec
	sent, answered, lost, complete *prometheus.CounterVec
	drops                          *prometheus.CounterVec
	nodeUp                         *prometheus.GaugeVec
	disconnects                    *prometheus.CounterVec
	restarts                       *prometheus.CounterVec
	events, ringLost, cpu          *prometheus.CounterVec
	bpf, bpfRuns, detached         *prometheus.CounterVec
	windowOpen                     *prometheus.GaugeVec
	windowLate                     *prometheus.CounterVec
	tracerRunning                  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		f(c)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		f(g)
		return g
	}
	m := &metrics{
		segment: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            MetricSegment,
			Help:                            "Per-ping duration of each segment of the round trip (A … M, C and J on a shared clock), the sender VM's RTT, ping's own RTT and the unmeasured virtualization residuals; layer names the segment's layer.",
			Buckets:                         latencyBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"pair", "segment", "layer"}),
		sent:          counter(MetricPingsSent, "Echo requests ping sent.", "pair"),
		answered:      counter(MetricPingsAnswered, "Echo requests ping got a reply for.", "pair"),
		lost:          counter(MetricPingsLost, "Echo requests without a reply.", "pair"),
		complete:      counter(MetricPingsComplete, "Pings every vantage point that ran saw in full (their segments add up).", "pair"),
		drops:         counter(MetricDrops, "Lost pings by where they died (the segment between the last checkpoint that saw them and the first that did not) and the kernel's drop reason (none when no host kernel freed it).", "pair", "location", "reason"),
		nodeUp:        gauge(MetricNodeUp, "1 while watch is connected to the node.", "node"),
		disconnects:   counter(MetricNodeDisconnects, "Connections to the node lost (or refused) since watch started.", "node"),
		restarts:      counter(MetricTracerRestarts, "Tracers (and pings) restarted because they ended by themselves.", "node", "tool"),
		events:        counter(MetricTracerEvents, "Ring-buffer events the tracers read.", "node", "tool"),
		ringLost:      counter(MetricTracerRingLost, "Events the tracers' ring buffers could not take (lost).", "node", "tool"),
		cpu:           counter(MetricTracerCPU, "CPU time of the tracer processes (user space and system, as the tracer reports it).", "node", "tool", "mode"),
		bpf:           counter(MetricTracerBPF, "Run time of the tracers' BPF programs on all CPUs (each tracer times a sample of its runs).", "node", "tool"),
		bpfRuns:       counter(MetricTracerBPFRuns, "Runs of the tracers' BPF programs.", "node", "tool"),
		detached:      counter(MetricTracerDetached, "Tracers that detached themselves because they cost more CPU than --max-cpu (then restarted).", "node", "tool"),
		windowOpen:    gauge(MetricWindowOpen, "Pings waiting for their observations to settle before they are joined.", "pair"),
		windowLate:    counter(MetricWindowLate, "Observations that arrived after their ping was joined (dropped).", "pair"),
		tracerRunning: gauge(MetricTracerUp, "Tracers (and pings) running.", "node", "tool"),
	}
	f(m.segment)
	return m
}

// observe adds one batch of joined pings of pair.
func (m *metrics) observe(pair string, res *analyze.Result) {
	for i := range res.Pings {
		p := &res.Pings[i]
		if p.PingListed {
			m.sent.WithLabelValues(pair).Inc()
			if p.Replied {
				m.answered.WithLabelValues(pair).Inc()
			}
		}
		if p.Lost {
			m.lost.WithLabelValues(pair).Inc()
		}
		if p.Complete {
			m.complete.WithLabelValues(pair).Inc()
		}
		for _, v := range Segments {
			if x, ok := p.Get(v); ok {
				m.segment.WithLabelValues(pair, analyze.ValueNames[v], layerLabel(v)).Observe(float64(x) / 1e9)
			}
		}
	}
	for _, d := range res.Drops {
		if d.Status != "lost" {
			continue
		}
		reason := d.Reason
		if reason == "" {
			reason = "none"
		}
		m.drops.WithLabelValues(pair, d.Segment, reason).Inc()
	}
}

// layerLabel is v's layer, "total" for the RTTs; none (an empty label) for
// C and J, which CJ already counts in the physical network: summed by
// layer, the segments of complete pings add up to the RTT.
func layerLabel(v int) string {
	if v == analyze.ValRTT || v == analyze.ValPingRTT {
		return "total"
	}
	return analyze.LayerOf(v)
}
