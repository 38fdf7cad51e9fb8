package vhost

import (
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

type pingOrDrop struct {
	ping *record.Ping
	drop *record.Drop
}

// collector is a tracer.Sink keeping records in the order written.
type collector struct{ out *[]*pingOrDrop }

func (c collector) Ping(p *record.Ping) error {
	*c.out = append(*c.out, &pingOrDrop{ping: p})
	return nil
}
func (c collector) Drop(d *record.Drop) error {
	*c.out = append(*c.out, &pingOrDrop{drop: d})
	return nil
}

func collect(out *[]*pingOrDrop) collector { return collector{out} }

// counted counts records (benchmarks).
type counted struct{ pings, drops int }

func (c *counted) Ping(*record.Ping) error { c.pings++; return nil }
func (c *counted) Drop(*record.Drop) error { c.drops++; return nil }

func replay(t *testing.T, c *Correlator, evs []Event) {
	t.Helper()
	for _, ev := range evs {
		c.Add(ev)
	}
	c.Flush(0)
}
