package parse

import (
	"fmt"
	"io"

	"github.com/pingpath/pingpath/internal/record"
)

// Stage names of pingpath's own tracers (docs/record-format.md).
var (
	vmStages    = [4]string{"p1_start", "p1_end", "p2_start", "p2_end"}
	hostStages  = [NumStages]string{"req_in", "req_out", "rep_in", "rep_out"}
	vhostRXFrom = "s1_tun_xmit"
	vhostRXTo   = "s5_kvm_irq"
	vhostTXFrom = "kick"
	vhostTXTo   = "netif_receive"
)

func parseRecord(f *File, r io.Reader) error {
	s, err := record.Read(r)
	if err != nil {
		return err
	}
	for _, p := range s.Problems {
		f.Warnings = append(f.Warnings, fmt.Sprintf("%s: %s", baseName(f.Path), p))
	}
	h := s.Header
	f.Tool, f.Role, f.Identity = h.Tool, h.Role, "exact"
	f.BootID, f.Hostname, f.Kernel, f.Version = h.BootID, h.Hostname, h.Kernel, h.Version
	f.StartMonoNS, f.StartWallNS = h.StartMonoNS, h.StartWallNS
	f.SrcIP, f.DstIP = h.SrcIP, h.DstIP
	f.Obs = make([]Obs, 0, len(s.Pings))
	for i := range s.Pings {
		if o, ok := recordObs(f, &s.Pings[i]); ok {
			f.Obs = append(f.Obs, o)
		}
	}
	for i := range s.Drops {
		d := &s.Drops[i]
		v, ok := recordVantage(f, d.Role)
		if !ok {
			f.warnf(0, "drop id %d seq %d: unknown role %q", d.ID, d.Seq, d.Role)
			continue
		}
		f.Drops = append(f.Drops, DropObs{Vantage: v, ID: d.ID, Seq: d.Seq, LastSeen: d.LastSeen,
			FirstMissed: d.FirstMissed, Location: d.Location, Reason: d.Reason, Device: d.Device,
			Time: f.wall(d.AtNS)})
	}
	if s.Trailer != nil {
		f.Counters = s.Trailer.Counters
		if s.Trailer.Error != "" {
			f.warnf(0, "tracer ended with error: %s", s.Trailer.Error)
		}
		if n := s.Trailer.Counters["ringbuf_lost"]; n > 0 {
			f.warnf(0, "tracer lost %d ring-buffer events", n)
		}
	} else {
		f.Truncated = true
		f.warnf(0, "stream has no trailer (tracer stopped abnormally or file cut short)")
	}
	return nil
}

// wall maps a monotonic timestamp of this stream to Unix ns.
func (f *File) wall(mono uint64) int64 {
	if mono == 0 {
		return 0
	}
	return f.StartWallNS + int64(mono-f.StartMonoNS)
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
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

func diff(st map[string]uint64, from, to string) (int64, bool) {
	a, ok1 := st[from]
	b, ok2 := st[to]
	if !ok1 || !ok2 {
		return 0, false
	}
	return int64(b - a), true
}

func recordObs(f *File, p *record.Ping) (Obs, bool) {
	v, ok := recordVantage(f, p.Role)
	if !ok {
		f.warnf(0, "ping id %d seq %d: unknown tool/role %q/%q", p.ID, p.Seq, f.Tool, p.Role)
		return Obs{}, false
	}
	o := Obs{Vantage: v, ID: p.ID, Seq: p.Seq, HasID: true, TimeWall: true}
	switch v {
	case VMTx, VMRx:
		pairs := [NumDur][2]int{{0, 1}, {1, 2}, {2, 3}, {0, 3}}
		for k, pr := range pairs {
			if d, ok := diff(p.Stages, vmStages[pr[0]], vmStages[pr[1]]); ok {
				o.Set(k, d)
			}
		}
		o.Time = f.wall(firstStage(p.Stages, vmStages[:]))
	case HostSender, HostReceiver:
		for k, name := range hostStages {
			if t, ok := p.Stages[name]; ok {
				o.SetStage(k, t)
				o.Seen |= 1 << k
			}
		}
		pairs := [NumDur][2]int{{0, 1}, {1, 2}, {2, 3}, {0, 3}}
		for k, pr := range pairs {
			if d, ok := diff(p.Stages, hostStages[pr[0]], hostStages[pr[1]]); ok {
				o.Set(k, d)
			}
		}
		o.Time = f.wall(firstStage(p.Stages, hostStages[:]))
	case VhostRXRequest, VhostRXReply:
		if d, ok := diff(p.Stages, vhostRXFrom, vhostRXTo); ok {
			o.Set(D3, d)
		}
		if d, ok := diff(p.Stages, vhostRXFrom, "s2_vhost_recv"); ok {
			o.Set(D0, d)
		}
		o.Time = f.wall(p.Stages[vhostRXFrom])
	case VhostTXRequest, VhostTXReply:
		if d, ok := diff(p.Stages, vhostTXFrom, vhostTXTo); ok {
			o.Set(D3, d)
		}
		o.Time = f.wall(p.Stages[vhostTXFrom])
	}
	if o.Time == 0 {
		o.TimeWall = false
	}
	return o, true
}

func firstStage(st map[string]uint64, names []string) uint64 {
	for _, n := range names {
		if t, ok := st[n]; ok {
			return t
		}
	}
	return 0
}
