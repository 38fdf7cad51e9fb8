package parse

import (
	"github.com/pingpath/pingpath/internal/record"
)

// Stage slots of pingpath's own tracers (docs/record-format.md); see stageSlots.
const (
	rxS1, rxS2, rxS5 = 0, 1, 4
	txKick, txNetif  = 0, 3
)

func applyHeader(f *File, h *record.Header) {
	f.Tool, f.Role, f.Identity = h.Tool, h.Role, "exact"
	f.BootID, f.Hostname, f.Kernel, f.Version = h.BootID, h.Hostname, h.Kernel, h.Version
	f.StartMonoNS, f.StartWallNS = h.StartMonoNS, h.StartWallNS
	f.SrcIP, f.DstIP = h.SrcIP, h.DstIP
}

func applyTrailer(f *File, t *record.Trailer) {
	f.Counters = t.Counters
	if t.Error != "" {
		f.warnf(0, "tracer ended with error: %s", t.Error)
	}
	if n := t.Counters["ringbuf_lost"]; n > 0 {
		f.warnf(0, "tracer lost %d ring-buffer events", n)
	}
}

func addDrop(f *File, d *record.Drop) {
	v, ok := recordVantage(f, d.Role)
	if !ok {
		f.warnf(0, "drop id %d seq %d: unknown role %q", d.ID, d.Seq, d.Role)
		return
	}
	f.Drops = append(f.Drops, DropObs{Vantage: v, ID: d.ID, Seq: d.Seq, LastSeen: d.LastSeen,
		FirstMissed: d.FirstMissed, Location: d.Location, Reason: d.Reason, Device: d.Device,
		Time: f.wall(d.AtNS)})
}

// wall maps a monotonic timestamp of this stream to Unix ns.
func (f *File) wall(mono uint64) int64 {
	if mono == 0 {
		return 0
	}
	return f.StartWallNS + int64(mono-f.StartMonoNS)
}

// recordVantage maps the tool and the per-record (or header) role to a vantage.
func recordVantage(f *File, role string) (Vantage, bool) {
	if role == "" || role == "auto" {
		role = f.Role
	}
	switch f.Tool {
	case record.ToolVM:
		switch role {
		case "tx", "sender":
			return VMTx, true
		case "rx", "receiver":
			return VMRx, true
		}
	case record.ToolHost:
		switch role {
		case "sender":
			return HostSender, true
		case "receiver":
			return HostReceiver, true
		}
	case record.ToolVhostRX:
		switch role {
		case "request":
			return VhostRXRequest, true
		case "reply":
			return VhostRXReply, true
		}
	case record.ToolVhostTX:
		switch role {
		case "request":
			return VhostTXRequest, true
		case "reply":
			return VhostTXReply, true
		}
	}
	return 0, false
}

// recordObs turns one ping record's stages into an observation.
func recordObs(f *File, id, seq uint16, role string, st *stages) (Obs, bool) {
	v, ok := recordVantage(f, role)
	if !ok {
		f.warnf(0, "ping id %d seq %d: unknown tool/role %q/%q", id, seq, f.Tool, role)
		return Obs{}, false
	}
	o := Obs{Vantage: v, ID: id, Seq: seq, HasID: true, TimeWall: true}
	pairs := [NumDur][2]int{{0, 1}, {1, 2}, {2, 3}, {0, 3}}
	first := func() uint64 {
		for k := 0; k < 8; k++ {
			if t, ok := st.get(k); ok {
				return t
			}
		}
		return 0
	}
	switch v {
	case VMTx, VMRx:
		for k, pr := range pairs {
			if d, ok := st.diff(pr[0], pr[1]); ok {
				o.Set(k, d)
			}
		}
		o.Time = f.wall(first())
	case HostSender, HostReceiver:
		for k := 0; k < NumStages; k++ {
			if t, ok := st.get(k); ok {
				o.SetStage(k, t)
				o.Seen |= 1 << k
			}
		}
		for k, pr := range pairs {
			if d, ok := st.diff(pr[0], pr[1]); ok {
				o.Set(k, d)
			}
		}
		o.Time = f.wall(first())
	case VhostRXRequest, VhostRXReply:
		if d, ok := st.diff(rxS1, rxS5); ok {
			o.Set(D3, d)
		}
		if d, ok := st.diff(rxS1, rxS2); ok {
			o.Set(D0, d)
		}
		o.Time = f.wall(first())
	case VhostTXRequest, VhostTXReply:
		if d, ok := st.diff(txKick, txNetif); ok {
			o.Set(D3, d)
		}
		o.Time = f.wall(first())
	}
	if o.Time == 0 {
		o.TimeWall = false
	}
	return o, true
}
