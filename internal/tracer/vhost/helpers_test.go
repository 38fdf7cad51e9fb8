package vhost

import (
	"testing"

	"github.com/pingpath/pingpath/internal/record"
)

type pingOrDrop struct {
	ping *record.Ping
	drop *record.Drop
}

func collect(out *[]*pingOrDrop) Emit {
	return func(rec any) {
		switch r := rec.(type) {
		case *record.Ping:
			*out = append(*out, &pingOrDrop{ping: r})
		case *record.Drop:
			*out = append(*out, &pingOrDrop{drop: r})
		default:
			panic("unexpected record type")
		}
	}
}

func replay(t *testing.T, c *Correlator, evs []Event) {
	t.Helper()
	for _, ev := range evs {
		c.Add(ev)
	}
	c.Close()
}
