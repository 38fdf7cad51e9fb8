package analyze

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/record"
)

// Classification: which vantage point each parsed file is, which files
// are used (pingpath's own streams are preferred over origin logs of the
// same vantage), and what the report should say about each.

// classify decides each file's vantage(s), resolves the origin host tool's
// role when its interfaces do not tell, prefers pingpath's own streams over
// origin logs for the same vantage, and accounts for every file and every
// vantage point (coverage.go).
func (j *joiner) classify() {
	res := j.res
	sessionSrc := ""
	var ours, theirs bool
	for _, f := range j.files {
		switch f.Kind {
		case parse.KindRecord:
			ours = true
		case parse.KindVMText, parse.KindHostText, parse.KindTunText, parse.KindVhostTX:
			theirs = true
		}
		if sessionSrc == "" && (f.Kind == parse.KindVMText || f.Kind == parse.KindHostText ||
			(f.Kind == parse.KindRecord && f.Tool == record.ToolVM)) {
			sessionSrc = f.SrcIP
		}
	}
	switch {
	case ours && theirs:
		res.Source = "mixed"
	case ours:
		res.Source = "pingpath"
	case theirs:
		res.Source = "origin"
	}
	j.resolveHostRoles()
	j.resolveKVMTunDirection(sessionSrc)
	j.placed = j.placements()
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
	var cov []vantageFile
	var pingFiles []string
	for _, f := range j.files {
		name := baseName(f.Path)
		info := FileInfo{Path: name, Kind: f.Kind.String(), Tool: f.Tool, Role: f.Role,
			Identity: f.Identity, Obs: len(f.Obs), Drops: len(f.Drops), Truncated: f.Truncated,
			Hostname: f.Hostname, Kernel: f.Kernel, Version: f.Version, BootID: f.BootID}
		res.Warnings = append(res.Warnings, f.Warnings...)
		if p, ok := j.stderrOf(name); ok {
			info.Status, info.Note = FileSkipped, "a tracer's stderr"
			if p.by != "" {
				info.Vantage, info.Note = p.v.String(), fmt.Sprintf("stderr of the %s tracer", p.v)
				cov = append(cov, vantageFile{v: p.v, f: f, p: p})
			}
			if ft := failureText(f); ft != "" {
				info.Note += "; " + ft
			}
			res.Files = append(res.Files, info)
			continue
		}
		switch f.Kind {
		case parse.KindPing:
			info.Obs = len(f.Replies)
			if j.pingFile != nil {
				info.Status, info.Ignored = FileSuperseded, "second ping output; the first one is used"
				pingFiles = append(pingFiles, name)
			} else {
				j.pingFile = f
				j.present[parse.PingOwn] = true
				info.Status, info.Vantage = FileUsed, parse.PingOwn.String()
				pingFiles = append(pingFiles, name)
			}
			res.Files = append(res.Files, info)
			continue
		case parse.KindCommands:
			info.Status, info.Note = FileUsed, "the origin workflow's commands: which tool wrote which log"
			res.Files = append(res.Files, info)
			continue
		case parse.KindUnknown, parse.KindToolError:
			j.classifyUnread(f, &info, &cov)
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
		superseded := len(kept) < len(f.Obs)
		if superseded {
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
		for v := range vs {
			cov = append(cov, vantageFile{v: v, f: f, p: placement{v: v, by: "its content"}})
		}
		if len(vs) == 0 {
			// An empty file still tells which vantage ran.
			if p, ok := j.place(f); ok {
				vs[p.v] = true
				cov = append(cov, vantageFile{v: p.v, f: f, p: p})
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
		switch {
		case len(f.Obs) > 0 || len(f.Drops) > 0:
			info.Status = FileUsed
			for _, fl := range f.Failures {
				j.warnf("%s:%d: the tool reported: %s", name, fl.Line, fl.Text)
			}
		case superseded:
			info.Status = FileSuperseded
		case len(f.Failures) > 0:
			info.Status, info.Note = FileFailed, failureText(f)
		default:
			info.Status, info.Note = FileNoObs, whyNoObs(f)
		}
		if f.Partial != "" {
			info.Note = strings.TrimPrefix(info.Note+"; "+f.Partial, "; ")
		}
		j.noteUnmeasured(f)
		res.Files = append(res.Files, info)
		j.notePairing(f)
	}
	for _, info := range j.unread {
		res.Files = append(res.Files, info)
		if info.Status != FileRefused {
			continue
		}
		if p, ok := j.placed[info.Path]; ok {
			cov = append(cov, vantageFile{v: p.v, p: p, refused: info.Path, refusedWhy: info.Note})
		} else if v, ok := nameVantage(info.Path); ok {
			cov = append(cov, vantageFile{v: v, p: placement{v: v, by: "its name"}, refused: info.Path, refusedWhy: info.Note})
		}
	}
	slices.SortFunc(res.Files, func(a, b FileInfo) int { return strings.Compare(a.Path, b.Path) })
	if len(pingFiles) > 1 {
		j.conflicts = append(j.conflicts, conflict{parse.PingOwn, pingFiles})
	}
	j.coverage(cov)
}

// findConflicts lists the vantage points for which more than one file holds
// observations of this run's pings: files of two runs in one directory.
func (j *joiner) findConflicts() {
	for v := range j.byV {
		var names []string
		for _, r := range j.byV[v] {
			if r.o.HasID && !j.ids[r.o.ID] {
				continue
			}
			if n := baseName(r.f.Path); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		if len(names) > 1 {
			slices.Sort(names)
			j.conflicts = append(j.conflicts, conflict{parse.Vantage(v), names})
		}
	}
	slices.SortFunc(j.conflicts, func(a, b conflict) int { return int(a.v) - int(b.v) })
	for _, c := range j.conflicts {
		j.warnf("%s: observed in %d files (%s): two runs in one directory? Observations of the same ping after the first are ignored", c.v, len(c.files), strings.Join(c.files, ", "))
	}
}

// stderrOf tells a tracer's stderr file (named by the manifest, or
// "*.stderr.log") and, when known, whose it is; p.by is empty when not.
func (j *joiner) stderrOf(name string) (placement, bool) {
	if p, ok := j.placed[name]; ok {
		return p, p.stderr
	}
	if !strings.HasSuffix(name, ".stderr.log") {
		return placement{}, false
	}
	if v, ok := nameVantage(strings.TrimSuffix(name, ".stderr.log")); ok {
		return placement{v: v, by: "its name", stderr: true}, true
	}
	return placement{stderr: true}, true
}

// classifyUnread accounts for a file no producer's banner was found in:
// a tool's bare error output, or content no tool writes.
func (j *joiner) classifyUnread(f *parse.File, info *FileInfo, cov *[]vantageFile) {
	name := baseName(f.Path)
	p, placed := j.place(f)
	if f.Kind == parse.KindToolError {
		info.Status, info.Note = FileFailed, failureText(f)
		if !placed {
			info.Note += "; nothing tells which vantage point it was (no manifest or commands.log names it)"
			j.warnf("%s: a tool's error output (%s), of an unknown vantage point", name, f.Failures[len(f.Failures)-1].Text)
			return
		}
	} else {
		info.Status, info.Note = FileNotRecognised, unknownWhat(f)
		if !placed || p.by == "its name" {
			if f.Binary {
				j.warnf("%s: binary data, not any tool's output (corrupt or replaced?)", name)
			}
			return
		}
	}
	info.Vantage = p.v.String()
	if p.by != "its content" {
		info.Note += fmt.Sprintf(" (vantage point from %s)", p.by)
	}
	if f.Kind == parse.KindUnknown {
		j.warnf("%s: %s names it as the %s output, but its content is %s", name, p.by, p.v, unknownWhat(f))
	}
	*cov = append(*cov, vantageFile{v: p.v, f: f, p: p})
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
