package analyze

import (
	"strings"

	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/record"
)

// Classification: which vantage point each parsed file is, which files
// are used (pingpath's own streams are preferred over origin logs of the
// same vantage), and what the report should say about each.

// classify decides each file's vantage(s), resolves the origin host tool's
// role when its interfaces do not tell, and prefers pingpath's own streams
// over origin logs for the same vantage.
func (j *joiner) classify() {
	res := j.res
	sessionSrc := ""
	var ours, origin bool
	for _, f := range j.files {
		if f.Kind == parse.KindRecord {
			ours = true
		} else if f.Kind != parse.KindPing {
			origin = true
		}
		if sessionSrc == "" && (f.Kind == parse.KindVMText || f.Kind == parse.KindHostText ||
			(f.Kind == parse.KindRecord && f.Tool == record.ToolVM)) {
			sessionSrc = f.SrcIP
		}
	}
	switch {
	case ours && origin:
		res.Source = "mixed"
	case ours:
		res.Source = "pingpath"
	case origin:
		res.Source = "origin"
	}
	j.resolveHostRoles()
	j.resolveKVMTunDirection(sessionSrc)
	// Which vantages have pingpath streams.
	var fromRecord [parse.NumVantages]bool
	for _, f := range j.files {
		if f.Kind == parse.KindRecord {
			for i := range f.Obs {
				fromRecord[f.Obs[i].Vantage] = true
			}
		}
	}
	var perV [parse.NumVantages]int
	for _, f := range j.files {
		for i := range f.Obs {
			perV[f.Obs[i].Vantage]++
		}
	}
	for v, n := range perV {
		j.byV[v] = make([]obsRef, 0, n)
	}
	for _, f := range j.files {
		info := FileInfo{Path: baseName(f.Path), Kind: f.Kind.String(), Tool: f.Tool, Role: f.Role,
			Identity: f.Identity, Obs: len(f.Obs), Drops: len(f.Drops), Truncated: f.Truncated,
			Hostname: f.Hostname, Kernel: f.Kernel, Version: f.Version, BootID: f.BootID}
		res.Warnings = append(res.Warnings, f.Warnings...)
		if f.Kind == parse.KindPing {
			info.Obs = len(f.Replies)
			if j.pingFile != nil {
				info.Ignored = "second ping output; the first one is used"
			} else {
				j.pingFile = f
				j.present[parse.PingOwn] = true
				info.Vantage = parse.PingOwn.String()
			}
			res.Files = append(res.Files, info)
			continue
		}
		vs := map[parse.Vantage]bool{}
		kept := f.Obs[:0]
		for i := range f.Obs {
			o := &f.Obs[i]
			if f.Kind != parse.KindRecord && fromRecord[o.Vantage] {
				continue
			}
			vs[o.Vantage] = true
			kept = append(kept, *o)
		}
		if len(kept) < len(f.Obs) {
			info.Ignored = "a pingpath record stream covers the same vantage point"
		}
		f.Obs = kept
		for i := range f.Obs {
			o := &f.Obs[i]
			j.byV[o.Vantage] = append(j.byV[o.Vantage], obsRef{f, o})
			j.present[o.Vantage] = true
		}
		for i := range f.Drops {
			d := f.Drops[i]
			vs[d.Vantage] = true
			j.present[d.Vantage] = true
			res.dropObs = append(res.dropObs, d)
		}
		if len(vs) == 0 {
			// An empty file still tells which vantage ran.
			if v, ok := fileVantage(f); ok {
				vs[v] = true
				j.present[v] = true
			}
		}
		var names []string
		for v := parse.Vantage(0); v < parse.NumVantages; v++ {
			if vs[v] {
				names = append(names, v.String())
				if v == parse.HostSender || v == parse.HostReceiver {
					if j.hostFile[v] == nil {
						j.hostFile[v] = f
					}
				}
			}
		}
		info.Vantage = strings.Join(names, ", ")
		j.noteUnmeasured(f)
		res.Files = append(res.Files, info)
		j.notePairing(f)
	}
}

// noteUnmeasured says why a vhost stream that saw packets gives no segment:
// its records lack an end stage (e.g. no vhost worker in the lab's user
// space backend; the header's probes say why).
func (j *joiner) noteUnmeasured(f *parse.File) {
	if f.Kind != parse.KindRecord || len(f.Obs) == 0 {
		return
	}
	for i := range f.Obs {
		if _, ok := vhostVal[f.Obs[i].Vantage]; !ok {
			return
		}
		if f.Obs[i].Has&(1<<parse.D3) != 0 {
			return
		}
	}
	path, _ := f.Obs[0].Vantage.Record()
	j.notef("%s: %d record(s), none with both end stages (%s and %s), so %s is not measured; the stream's header lists the unavailable probes and why",
		baseName(f.Path), len(f.Obs), path.First(), path.Last(), ValueNames[vhostVal[f.Obs[0].Vantage]])
}

// fileVantage guesses the vantage an empty file would have reported.
func fileVantage(f *parse.File) (parse.Vantage, bool) {
	switch f.Kind {
	case parse.KindVMText:
		if f.Role == "rx" {
			return parse.VMRx, true
		}
		return parse.VMTx, true
	case parse.KindHostText:
		if f.Role == "receiver" {
			return parse.HostReceiver, true
		}
		if f.Role == "sender" {
			return parse.HostSender, true
		}
	case parse.KindTunText:
		if f.Role == "reply" {
			return parse.VhostRXReply, true
		}
		return parse.VhostRXRequest, true
	case parse.KindVhostTX:
		if f.Role == "reply" {
			return parse.VhostTXReply, true
		}
		return parse.VhostTXRequest, true
	case parse.KindRecord:
		for v := parse.Vantage(0); v < parse.NumVantages; v++ {
			if path, role := v.Record(); path != nil && path.Tool == f.Tool && role == f.Role {
				return v, true
			}
		}
	}
	return 0, false
}
