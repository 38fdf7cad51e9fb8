package parse

import (
	"io"

	"github.com/pingpath/pingpath/internal/parse/origin"
)

// The origin tools' logs are read by package origin, in each tool's own
// terms; here they become observations of the segment model.

func parseVMText(f *File, r io.Reader) error {
	log := origin.ReadVM(r, f.warnf)
	f.Tool, f.Identity = "kernel_icmp_rtt", "exact"
	f.SrcIP, f.DstIP = log.SrcIP, log.DstIP
	switch log.Dir {
	case "TX":
		f.Role = "tx"
	case "RX":
		f.Role = "rx"
	}
	for _, b := range log.Blocks {
		o := Obs{Vantage: VMTx, ID: b.ID, Seq: b.Seq, HasID: true, Time: b.Time, TimeWall: b.Time != 0, Line: b.Line}
		if b.RX {
			o.Vantage = VMRx
		}
		// D0..D3 are the vm tool's spans: path1, inter_path, path2, total.
		setKnown(&o, b.Path1, b.InterPath, b.Path2, b.Total)
		f.Obs = append(f.Obs, o)
	}
	f.Truncated = !log.Ended
	f.scanned(log.Scan)
	return nil
}

func parseHostText(f *File, r io.Reader) error {
	log := origin.ReadHost(r, f.warnf)
	f.Tool, f.Identity = "icmp_path_tracer", "exact"
	f.RxIface, f.TxIface, f.SrcIP, f.DstIP = log.RxIface, log.TxIface, log.SrcIP, log.DstIP
	// Flows whose drop block names them are still in Obs (partial); the
	// analysis uses Seen for drop localisation. A log whose devices do not
	// tell the role is settled by the analysis (sender/receiver totals).
	f.Role = log.Role()
	v := HostSender
	if f.Role == origin.RoleReceiver {
		v = HostReceiver
	}
	for _, fl := range log.Flows {
		o := Obs{Vantage: v, ID: fl.ID, Seq: fl.Seq, HasID: true, Time: fl.Time, TimeWall: true, Line: fl.Line,
			Seen: fl.Seen, StageWall: fl.StageWall}
		// D0..D3 are the host tool's spans: req_internal, external,
		// rep_internal, total.
		setKnown(&o, fl.Latency[:]...)
		f.Obs = append(f.Obs, o)
	}
	if log.Tracked >= 0 {
		f.Counters = map[string]uint64{"flows_tracked": uint64(log.Tracked)}
	}
	for _, d := range log.Drops {
		f.Drops = append(f.Drops, DropObs{Vantage: v, ID: d.ID, Seq: d.Seq, LastSeen: d.LastSeen,
			FirstMissed: d.FirstMissed, Location: d.Location, Time: d.Time, Line: d.Line})
	}
	f.Truncated = !log.Ended
	f.scanned(log.Scan)
	return nil
}

func parseTunText(f *File, r io.Reader) error {
	log := origin.ReadTun(r, f.warnf)
	f.Tool, f.Identity = "tun_tx_to_kvm_irq", "stage1+time-window"
	f.Device, f.SrcIP, f.DstIP = log.Device, log.SrcIP, log.DstIP
	reqs, reps := 0, 0
	for _, p := range log.Packets {
		o := Obs{Vantage: VhostRXReply, ID: p.ID, Seq: p.Seq, HasID: true, Time: p.Time, Line: p.Line, Note: p.Note}
		if p.Type == 8 {
			o.Vantage = VhostRXRequest
			reqs++
		} else {
			reps++
		}
		if f.SrcIP == "" {
			f.SrcIP = p.Src
		}
		setKnown(&o, p.FirstHop, origin.Dur{}, origin.Dur{}, p.Total)
		f.Obs = append(f.Obs, o)
	}
	switch {
	case reqs > 0 && reps == 0:
		f.Role = "request"
	case reps > 0 && reqs == 0:
		f.Role = "reply"
	}
	f.Truncated = !log.Ended
	f.scanned(log.Scan)
	return nil
}

func parseVhostTX(f *File, r io.Reader) error {
	log := origin.ReadKVMTun(r, f.warnf)
	f.Tool, f.Identity = "kvm_vhost_tun_latency", "time-window"
	f.Device, f.SrcIP, f.DstIP = log.Device, log.SrcIP, log.DstIP
	for _, p := range log.Packets {
		// The direction (B_1 or I_1) is settled by the analysis from the
		// flow's source.
		o := Obs{Vantage: VhostTXRequest, Line: p.Line, Time: p.TimeOfDay, Note: p.Note}
		setKnown(&o, p.S0, p.S1, p.S2, p.Total)
		f.Obs = append(f.Obs, o)
	}
	f.Truncated = !log.Ended
	f.scanned(log.Scan)
	return nil
}

// setKnown stores the durations a log printed as D0, D1, ... in order.
func setKnown(o *Obs, ds ...origin.Dur) {
	for k, d := range ds {
		if d.OK {
			o.Set(k, d.NS)
		}
	}
}
