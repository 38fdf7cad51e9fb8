package analyze

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/parse"
	"github.com/pingpath/pingpath/internal/parse/origin"
	"github.com/pingpath/pingpath/internal/record"
)

// Every file is accounted for, and so is every vantage point: a file is
// used, superseded, the output of a tool that failed (with the tool's own
// error line), one that ran and saw nothing, not recognised, refused or
// skipped; a vantage point is measured, failed, ran without observations,
// unreadable or not run. Where a file's content does not say which vantage
// point it is (a tool's bare error output), the manifest, the origin
// workflow's commands.log or, last, the file's name does.

// File statuses (FileInfo.Status).
const (
	FileUsed          = "used"
	FileSuperseded    = "superseded"
	FileFailed        = "failed"
	FileNoObs         = "no observations"
	FileNotRecognised = "not recognised"
	FileRefused       = "refused"
	FileSkipped       = "skipped"
)

// Vantage point statuses (Coverage.Status).
const (
	CovMeasured   = "measured"
	CovFailed     = "failed"
	CovNoObs      = "no observations"
	CovUnreadable = "unreadable"
	CovNotRun     = "not run"
)

// Coverage says what became of one vantage point.
type Coverage struct {
	Vantage string   `json:"vantage"`
	Status  string   `json:"status"`
	Files   []string `json:"files,omitempty"`
	// Detail is the tool's own error line, or why nothing was observed.
	Detail string `json:"detail,omitempty"`
	// Core is true for the four vantage points every segment depends on
	// (sender/receiver VM and host).
	Core bool `json:"core"`
}

// StatusText says a vantage point's status in a sentence: "sender host
// failed", "receiver VM observed nothing".
func (c Coverage) StatusText() string {
	switch c.Status {
	case CovNoObs:
		return "observed nothing"
	case CovUnreadable:
		return "could not be read"
	}
	return c.Status
}

// Problem reports whether the vantage point ran but gave nothing.
func (c Coverage) Problem() bool {
	return c.Status == CovFailed || c.Status == CovNoObs || c.Status == CovUnreadable
}

// placement is where a file belongs when its content does not say, and
// who said so.
type placement struct {
	v  parse.Vantage
	by string // "the manifest", "commands.log", "its name"
	// From the manifest: the tracer's state and error, and whether the
	// file is the tracer's stderr.
	state, err string
	stderr     bool
}

// manifestVantage maps a manifest node role and tracer tool (ours, or an
// origin script's name) to a vantage point.
func manifestVantage(role, tool string) (parse.Vantage, bool) {
	f := origin.ScriptFormat(tool)
	is := func(ours string, theirs origin.Format) bool { return tool == ours || f == theirs }
	sender := role == manifest.RoleSenderHost
	switch {
	case role == manifest.RoleSenderVM && is(record.ToolVM, origin.VMRTT):
		return parse.VMTx, true
	case role == manifest.RoleReceiverVM && is(record.ToolVM, origin.VMRTT):
		return parse.VMRx, true
	case role != manifest.RoleSenderHost && role != manifest.RoleReceiverHost:
		return 0, false
	case is(record.ToolHost, origin.HostPath):
		return map[bool]parse.Vantage{true: parse.HostSender, false: parse.HostReceiver}[sender], true
	case is(record.ToolVhostRX, origin.TunIRQ):
		return map[bool]parse.Vantage{true: parse.VhostRXReply, false: parse.VhostRXRequest}[sender], true
	case is(record.ToolVhostTX, origin.KVMTun):
		return map[bool]parse.Vantage{true: parse.VhostTXRequest, false: parse.VhostTXReply}[sender], true
	}
	return 0, false
}

// commandVantage places an origin tool's log from the command that wrote
// it; src is the ping session's source (the sender VM).
func commandVantage(c *origin.Command, src string) (parse.Vantage, bool) {
	first := func(s string) string { return strings.Split(s, ",")[0] }
	switch c.Format {
	case origin.VMRTT:
		if c.Flags["--direction"] == "rx" {
			return parse.VMRx, true
		}
		return parse.VMTx, true
	case origin.HostPath:
		switch {
		case origin.IsVMIface(first(c.Flags["--rx-iface"])):
			return parse.HostSender, true
		case origin.IsVMIface(first(c.Flags["--tx-iface"])):
			return parse.HostReceiver, true
		}
	case origin.TunIRQ:
		if s := c.Flags["--src-ip"]; s != "" && src != "" {
			// Packets from the sender VM into a VM: the request on the
			// receiver host (E); else the reply on the sender host (L).
			return map[bool]parse.Vantage{true: parse.VhostRXRequest, false: parse.VhostRXReply}[s == src], true
		}
	case origin.KVMTun:
		if s := c.FlowSrc(); s != "" && src != "" {
			return map[bool]parse.Vantage{true: parse.VhostTXRequest, false: parse.VhostTXReply}[s == src], true
		}
	}
	return 0, false
}

// nameVantage guesses a core vantage point from a file name such as
// "host-send.log" or "recv-vm-icmp.log"; names that mention a vhost or tun
// tool are left alone (their direction is not in the name).
func nameVantage(name string) (parse.Vantage, bool) {
	words := strings.FieldsFunc(strings.ToLower(name), func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	has := func(ws ...string) bool {
		for _, w := range ws {
			if slices.Contains(words, w) {
				return true
			}
		}
		return false
	}
	if has("vhost", "tun", "kvm", "irq") {
		return 0, false
	}
	vm, host := has("vm", "guest"), has("host", "hv", "hypervisor")
	send, recv := has("send", "sender", "snd", "src"), has("recv", "receiver", "rcv", "rx", "dst")
	switch {
	case vm == host || send == recv:
		return 0, false
	case vm && send:
		return parse.VMTx, true
	case vm:
		return parse.VMRx, true
	case send:
		return parse.HostSender, true
	}
	return parse.HostReceiver, true
}

// placements collects, per file base name, what the manifest and
// commands.log say about it.
func (j *joiner) placements() map[string]placement {
	out := map[string]placement{}
	if m := j.res.Manifest; m != nil {
		for _, n := range m.Nodes {
			for _, t := range n.Tracers {
				v, ok := manifestVantage(n.Role, t.Tool)
				if !ok {
					continue
				}
				p := placement{v: v, by: "the manifest", state: t.State, err: t.Error}
				if t.File != "" {
					out[path.Base(t.File)] = p
				}
				if t.Stderr != "" {
					p.stderr = true
					out[path.Base(t.Stderr)] = p
				}
			}
		}
	}
	for _, f := range j.files {
		if f.Commands == nil {
			continue
		}
		src := ""
		for _, c := range f.Commands.Tools {
			if c.Format == origin.VMRTT || c.Format == origin.HostPath {
				if src = c.Flags["--src-ip"]; src != "" {
					break
				}
			}
		}
		for i := range f.Commands.Tools {
			c := &f.Commands.Tools[i]
			if v, ok := commandVantage(c, src); ok && c.Log != "" {
				if _, taken := out[path.Base(c.Log)]; !taken {
					out[path.Base(c.Log)] = placement{v: v, by: baseName(f.Path)}
				}
			}
		}
	}
	return out
}

// place returns the vantage point of a file whose content does not tell.
func (j *joiner) place(f *parse.File) (placement, bool) {
	name := baseName(f.Path)
	if p, ok := j.placed[name]; ok {
		return p, true
	}
	if v, ok := fileVantage(f); ok && f.Kind != parse.KindUnknown && f.Kind != parse.KindToolError {
		return placement{v: v, by: "its content"}, true
	}
	if f.Kind == parse.KindToolError || f.Kind == parse.KindUnknown && !f.Binary {
		if v, ok := nameVantage(name); ok {
			return placement{v: v, by: "its name"}, true
		}
	}
	return placement{}, false
}

// failureText is the tool's own error line, "file:line: text".
func failureText(f *parse.File) string {
	if len(f.Failures) == 0 {
		return ""
	}
	fl := f.Failures[len(f.Failures)-1]
	if fl.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", baseName(f.Path), fl.Line, fl.Text)
	}
	return fmt.Sprintf("%s: %s", baseName(f.Path), fl.Text)
}

// whyNoObs says, when the file tells, why a log that ran holds no
// observation.
func whyNoObs(f *parse.File) string {
	switch {
	case f.Kind == parse.KindHostText && (len(f.Drops) > 0 || f.Counters["flows_tracked"] > 0):
		return fmt.Sprintf("the tool tracked %d flow(s) but printed none: started without --verbose, it prints drop reports only and no latency", max(int(f.Counters["flows_tracked"]), len(f.Drops)))
	case f.Kind == parse.KindRecord && f.Tool != "" && record.PathOf(f.Tool) == nil:
		return fmt.Sprintf("tool %q is unknown to this version", f.Tool)
	case f.Truncated:
		return "the log ends before the tool's closing lines (stopped abruptly or cut short) and holds no ping"
	}
	return "the tool ran but observed no ping of this run"
}

// vantageFile is one file's part in a vantage point's coverage; f is nil
// for a file that could not be read (refused says why).
type vantageFile struct {
	v          parse.Vantage
	f          *parse.File
	p          placement
	refused    string // the file's name
	refusedWhy string
}

// coverage decides each vantage point's status from its files.
func (j *joiner) coverage(entries []vantageFile) {
	type acc struct {
		files                      []string
		failure, noObs, unreadable string
	}
	var per [parse.NumVantages]acc
	for _, e := range entries {
		a := &per[e.v]
		switch {
		case e.f == nil:
			a.files = append(a.files, e.refused)
			if a.unreadable == "" {
				a.unreadable = fmt.Sprintf("%s: %s", e.refused, e.refusedWhy)
			}
		case e.p.stderr:
			if ft := failureText(e.f); ft != "" && a.failure == "" {
				a.failure = ft
			}
		default:
			a.files = append(a.files, baseName(e.f.Path))
			switch {
			case len(e.f.Obs) > 0 || len(e.f.Drops) > 0:
			case len(e.f.Failures) > 0:
				a.failure = failureText(e.f)
			case e.f.Kind == parse.KindUnknown:
				a.unreadable = fmt.Sprintf("%s is not %s output (%s)", baseName(e.f.Path), e.v, unknownWhat(e.f))
			case a.noObs == "":
				a.noObs = whyNoObs(e.f)
			}
		}
		if e.p.by == "the manifest" && a.failure == "" && e.p.err != "" &&
			(e.p.state == "failed" || e.p.state == "lost" || e.p.state == "not-started") {
			a.failure = fmt.Sprintf("tracer %s: %s", e.p.state, e.p.err)
		}
	}
	res := j.res
	res.Coverage = res.Coverage[:0]
	for v := parse.Vantage(0); v < parse.NumVantages; v++ {
		a := per[v]
		c := Coverage{Vantage: v.String(), Files: slices.Compact(slices.Sorted(slices.Values(a.files))),
			Core: slices.Contains(coreVantages, v)}
		switch {
		case j.present[v]:
			c.Status = CovMeasured
		case a.failure != "":
			c.Status, c.Detail = CovFailed, a.failure
		case a.unreadable != "":
			c.Status, c.Detail = CovUnreadable, a.unreadable
		case a.noObs != "":
			c.Status, c.Detail = CovNoObs, a.noObs
		case len(c.Files) > 0:
			c.Status, c.Detail = CovNoObs, "the tool ran but observed no ping of this run"
		default:
			c.Status = CovNotRun
		}
		res.Coverage = append(res.Coverage, c)
	}
}

// unknownWhat describes content that is no producer's output.
func unknownWhat(f *parse.File) string {
	if f.Binary {
		return "binary data"
	}
	return "text no tool writes"
}

// coverageOf returns a vantage point's coverage entry.
func (r *Result) coverageOf(v parse.Vantage) (Coverage, bool) {
	for _, c := range r.Coverage {
		if c.Vantage == v.String() {
			return c, true
		}
	}
	return Coverage{}, false
}

// notCoveredName names what no tracer covered after the missing core
// vantage points: "not covered: sender host failed".
func (r *Result) notCoveredName() string {
	var parts []string
	byStatus := map[string][]string{}
	for _, v := range coreVantages {
		if c, ok := r.coverageOf(v); ok && c.Status != CovMeasured {
			byStatus[c.StatusText()] = append(byStatus[c.StatusText()], c.Vantage)
		}
	}
	// What went wrong first, what was never there last.
	for _, st := range []Coverage{{Status: CovFailed}, {Status: CovUnreadable}, {Status: CovNoObs}, {Status: CovNotRun}} {
		if names := byStatus[st.StatusText()]; len(names) > 0 {
			parts = append(parts, joinAnd(names)+" "+st.StatusText())
		}
	}
	if len(parts) == 0 {
		return "not covered by any tracer"
	}
	return "not covered: " + strings.Join(parts, ", ")
}

// joinAnd joins names as "a", "a and b", "a, b and c".
func joinAnd(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// NotMeasuredReason says why a value (by name: "B", "CJ", "E") has no
// measurement when a vantage point it comes from did not give one:
// "sender host failed (host-send.log:1: Error loading BPF program …)",
// "receiver VM not run"; "" when every such vantage point was measured.
func (r *Result) NotMeasuredReason(name string) string {
	v := slices.Index(ValueNames[:], name)
	if v < 0 {
		return ""
	}
	var why []string
	for _, vp := range valueVantages[v] {
		c, ok := r.coverageOf(vp)
		if !ok || c.Status == CovMeasured {
			continue
		}
		s := fmt.Sprintf("%s %s", vp, c.StatusText())
		if c.Detail != "" {
			s += " (" + c.Detail + ")"
		}
		why = append(why, s)
	}
	return strings.Join(why, ", ")
}
