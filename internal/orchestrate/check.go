package orchestrate

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/kernel"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/remote"
)

// Check row statuses.
const (
	CheckOK   = "ok"
	CheckWarn = "warn"
	CheckFail = "FAIL"
	CheckSkip = "skip"
)

// CheckRow is one line of the check table.
type CheckRow struct {
	Role   string
	Check  string
	Status string
	Detail string
	Hint   string // what to do about a failure
}

// CheckReport is the outcome of Check.
type CheckReport struct {
	Rows []CheckRow
}

// Failed counts the failed rows.
func (r *CheckReport) Failed() int {
	n := 0
	for _, row := range r.Rows {
		if row.Status == CheckFail {
			n++
		}
	}
	return n
}

// WriteTable prints the report as an aligned table followed by one
// actionable line per failure.
func (r *CheckReport) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCHECK\tSTATUS\tDETAIL")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.Role, row.Check, row.Status, oneLine(row.Detail))
	}
	tw.Flush()
	for _, row := range r.Rows {
		if row.Status == CheckFail {
			fmt.Fprintf(w, "\n%s %s: %s", row.Role, row.Check, oneLine(row.Detail))
			if row.Hint != "" {
				fmt.Fprintf(w, "\n  -> %s", row.Hint)
			}
		}
	}
	if r.Failed() > 0 {
		fmt.Fprintln(w)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// checker collects rows from the node goroutines.
type checker struct {
	mu   sync.Mutex
	rows []CheckRow
}

func (c *checker) add(role, check, status, detail, hint string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows = append(c.rows, CheckRow{Role: role, Check: check, Status: status, Detail: detail, Hint: hint})
}

// Check verifies, on every node in parallel, what a run needs: SSH
// reachability and authentication, root through sudo, kernel and BTF, the
// attach methods available, the configured interfaces, that each VM owns
// its IP, and that the sender VM can ping the receiver VM.
//
// With o.Binary set, it also pushes pingpath and runs each of the node's
// tracers for a moment (--duration 1s): the header each one writes says
// which attach method every stage got on that kernel, or why a stage is
// unavailable — the real answer to "which attach methods work".
func Check(ctx context.Context, o Options) *CheckReport {
	if len(o.Env.Pairs) > 0 {
		// Pair by pair (a machine shared by pairs is checked in each, for
		// the interfaces and addresses of that pair): rows named "PAIR ROLE".
		all := &CheckReport{}
		for _, p := range o.Env.SplitPairs() {
			one := o
			one.Env = p.Env
			for _, r := range Check(ctx, one).Rows {
				r.Role = p.Name + " " + r.Role
				all.Rows = append(all.Rows, r)
			}
		}
		return all
	}
	c := &checker{}
	nodes := connectAll(ctx, &o)
	defer closeAll(nodes)
	var probe *tracerProbe
	if o.Binary != "" {
		var err error
		if probe, err = newTracerProbe(&o, nodes); err != nil {
			c.add("", "tracers", CheckFail, err.Error(), "")
		}
		defer probe.cleanup()
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.node(ctx, o.Env, n) && probe != nil {
				c.tracers(ctx, probe, n)
			}
		}()
	}
	wg.Wait()
	order := map[string]int{}
	for i, n := range nodes {
		order[n.role()] = i
	}
	sort.SliceStable(c.rows, func(i, j int) bool { return order[c.rows[i].Role] < order[c.rows[j].Role] })
	return &CheckReport{Rows: c.rows}
}

// node runs the basic checks; it reports whether the node can run tracers
// (reachable, root).
func (c *checker) node(ctx context.Context, env *envfile.Environment, n *node) bool {
	role := n.role()
	if n.err != nil {
		c.add(role, "ssh", CheckFail, n.err.Error(), sshHint(n.err.Error(), n.spec))
		return false
	}
	if !n.contacted() {
		c.add(role, "untraced", CheckOK, "not contacted ("+n.spec.Field+".untraced, no ssh): it only answers pings", "")
		return false
	}
	c.add(role, "ssh", CheckOK, "connected to "+n.spec.SSH, "")
	if n.spec.Untraced {
		return c.untraced(ctx, env, n)
	}
	sudoOK := true
	if _, err := n.gatherFacts(ctx, remote.Command{}); err != nil {
		sudoOK = false
		c.add(role, "root", CheckFail, err.Error(), "tracers need root: log in as root, or set ssh.sudo / "+n.spec.Field+".ssh_options.sudo"+untracedHint(n))
		if n.facts == nil {
			if err := n.userFacts(ctx); err != nil {
				c.add(role, "kernel", CheckFail, err.Error(), "")
				return false
			}
		}
	} else {
		c.add(role, "root", CheckOK, "sudo "+n.spec.Options.Sudo, "")
	}
	f := n.facts
	c.add(role, "kernel", CheckOK, f["kernel"]+" "+f["arch"], "")
	c.btf(ctx, n)
	c.attach(role, f, sudoOK)
	c.interfaces(ctx, n)
	if n.spec.IsVM() {
		c.vmIP(ctx, n)
		if role == manifest.RoleSenderVM {
			c.ping(ctx, n, env.Receiver.VM.IP)
		}
	}
	c.tools(ctx, env, n)
	return sudoOK
}

// untraced checks a VM no tracer runs on (its untraced: true): reachable as
// the login user, its address, and for the sender VM that ping works
// (without root). It reports false: there are no tracers to try.
func (c *checker) untraced(ctx context.Context, env *envfile.Environment, n *node) bool {
	role := n.role()
	c.add(role, "untraced", CheckOK, n.spec.Field+".untraced: no tracer runs here, never asked for root", "")
	if err := n.userFacts(ctx); err != nil {
		c.add(role, "kernel", CheckFail, err.Error(), "")
		return false
	}
	c.add(role, "kernel", CheckOK, n.facts["kernel"]+" "+n.facts["arch"], "")
	c.interfaces(ctx, n)
	c.vmIP(ctx, n)
	if role == manifest.RoleSenderVM {
		c.ping(ctx, n, env.Receiver.VM.IP)
	}
	return false
}

// untracedHint proposes the untraced mode for a VM that cannot trace.
func untracedHint(n *node) string {
	if !n.spec.IsVM() {
		return ""
	}
	return "; or, if this VM may not be traced (a tenant's VM, no root, no BTF), set " + n.spec.Field +
		".untraced: true: the hosts' tracers then bound its time as one coarser segment"
}

// btf reports where the node's tracers get kernel BTF: the node's btf: file
// (checked readable), /sys/kernel/btf/vmlinux, or nowhere, with what to do.
func (c *checker) btf(ctx context.Context, n *node) {
	role, f := n.role(), n.facts
	if file := n.spec.BTF; file != "" {
		if _, err := n.runRoot(ctx, "test", "-r", file); err != nil {
			c.add(role, "btf", CheckFail, file+" ("+n.spec.Field+".btf) is not readable on the node",
				"copy the BTF file of this kernel ("+f["kernel"]+") there, or fix "+n.spec.Field+".btf")
			return
		}
		c.add(role, "btf", CheckOK, file+" ("+n.spec.Field+".btf, passed as --btf)", "")
		return
	}
	if f["btf"] == "yes" {
		c.add(role, "btf", CheckOK, "/sys/kernel/btf/vmlinux", "")
		return
	}
	c.add(role, "btf", CheckFail, kernel.NoBTF(f["kernel"]),
		"give the tracers this kernel's BTF as a file: on a machine with the kernel's debuginfo, "+
			kernel.BTFFileCommand(f["kernel"])+" "+
			"(or the kernel's file from a BTFHub-style archive), copy it to the node and set "+n.spec.Field+".btf: /path/vmlinux.btf"+
			untracedHint(n)+"; "+kernel.BTFLastResort)
}

// tracerProbe is what check needs to try the tracers: the plan, the
// binary to push, and a local directory for their output.
type tracerProbe struct {
	o      *Options
	bin    *remote.Local
	phases [][]*tracerSpec
	dir    string
}

func newTracerProbe(o *Options, nodes []*node) (*tracerProbe, error) {
	bin, err := remote.OpenLocal(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading the pingpath binary to push: %w", err)
	}
	dir, err := os.MkdirTemp("", "pingpath-check-")
	if err != nil {
		bin.Close()
		return nil, err
	}
	byRole := map[string]*node{}
	for _, n := range nodes {
		byRole[n.role()] = n
		n.bin = bin
	}
	p := &tracerProbe{o: o, bin: bin, dir: dir}
	p.phases = plan(planInput{env: o.Env, nodes: byRole, maxDuration: o.slowed(30 * time.Second)})
	return p, nil
}

func (p *tracerProbe) cleanup() {
	if p != nil {
		os.RemoveAll(p.dir)
		p.bin.Close()
	}
}

// tracers pushes pingpath to the node and runs each of its tracers with
// --duration 1s, reporting the attach method chosen per stage.
func (c *checker) tracers(ctx context.Context, p *tracerProbe, n *node) {
	var specs []*tracerSpec
	for _, ph := range p.phases {
		for _, t := range ph {
			if t.node == n && !t.origin && p.o.traced(n.role()) && (p.o.Tracers == nil || slices.Contains(p.o.Tracers, t.tool)) {
				specs = append(specs, t)
			}
		}
	}
	if len(specs) == 0 {
		return
	}
	if _, err := n.push(ctx, nil); err != nil {
		c.add(n.role(), "push", CheckFail, err.Error(), "pingpath pushes itself to remote_dir as root: it and its parents must be root's (or the login user's) and writable by nobody else, and allow executables (not noexec)")
		return
	}
	// Tried in parallel, reported in plan order.
	rows := make([]CheckRow, len(specs))
	row := func(i int, status, detail, hint string) {
		rows[i] = CheckRow{Role: n.role(), Check: "tracer " + specs[i].tool, Status: status, Detail: detail, Hint: hint}
	}
	var wg sync.WaitGroup
	for i, t := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := *t
			spec.args = append(append([]string{}, t.args...), "--duration", "1s")
			spec.file, spec.stderr = n.role()+"."+t.tool+".jsonl", n.role()+"."+t.tool+".stderr.log"
			rt, err := startTracer(ctx, &output{dir: p.dir, progress: nopProgress{}, stopped: ctx.Done()}, &spec, false)
			if err != nil {
				row(i, CheckFail, err.Error(), "")
				return
			}
			select {
			case <-rt.exited:
			case <-time.After(p.o.slowed(30 * time.Second)):
				rt.stop(ctx, stopTimeouts{Graceful: time.Second, Term: time.Second})
			}
			if rt.err != nil || rt.code != 0 {
				row(i, CheckFail, rt.exitText()+": "+rt.last(),
					"run it by hand on the node to see why: "+strings.Join(spec.args, " ")+untracedHint(n))
				return
			}
			status, detail, hint := probeStatus(headerProbes(filepath.Join(p.dir, spec.file)))
			row(i, status, detail, hint)
		}()
	}
	wg.Wait()
	c.mu.Lock()
	c.rows = append(c.rows, rows...)
	c.mu.Unlock()
}

// probeStatus summarises a tracer header's probes: ok when every stage
// attached, warn when some are unavailable (stages sharing a reason are
// listed together).
func probeStatus(probes []string) (string, string, string) {
	if len(probes) == 0 {
		return CheckFail, "no header written", "the tracer ran but wrote no record stream"
	}
	var ok, reasons []string
	byReason := map[string][]string{}
	for _, p := range probes {
		stage, how, _ := strings.Cut(p, "=")
		if reason, found := strings.CutPrefix(how, "unavailable: "); found {
			if byReason[reason] == nil {
				reasons = append(reasons, reason)
			}
			byReason[reason] = append(byReason[reason], stage)
			continue
		}
		method, _, _ := strings.Cut(how, ":")
		ok = append(ok, stage+"="+method)
	}
	detail := strings.Join(ok, " ")
	if len(reasons) == 0 {
		return CheckOK, detail, ""
	}
	for _, r := range reasons {
		detail += "; unavailable " + strings.Join(byReason[r], ",") + ": " + r
	}
	return CheckWarn, detail, ""
}

// attach summarises which attach methods the kernel offers, from what the
// facts script could see (tracefs and kprobe_events need root to read).
func (c *checker) attach(role string, f map[string]string, root bool) {
	var have []string
	if f["btf"] == "yes" {
		have = append(have, "fentry(if allowed)")
	}
	switch f["kprobe_events"] {
	case "yes":
		have = append(have, "kprobe")
	case "no":
		have = append(have, "no kprobe (kprobe_events missing)")
	}
	switch f["tracefs"] {
	case "mounted", "available":
		have = append(have, "tracepoint(tracefs "+f["tracefs"]+")")
	default:
		have = append(have, "no tracefs")
	}
	have = append(have, "raw_tracepoint")
	status := CheckOK
	if !root {
		status = CheckWarn
		have = append(have, "(seen without root)")
	}
	c.add(role, "attach", status, strings.Join(have, ", "), "")
}

func (c *checker) interfaces(ctx context.Context, n *node) {
	names := n.interfaces()
	if len(names) == 0 {
		return
	}
	missing, err := n.missingInterfaces(ctx, names)
	switch {
	case err != nil:
		c.add(n.role(), "interfaces", CheckFail, err.Error(), "")
	case len(missing) > 0:
		c.add(n.role(), "interfaces", CheckFail, "missing: "+strings.Join(missing, ", "),
			"fix "+n.spec.Field+" (list the node's interfaces with: ip -br link)")
	default:
		c.add(n.role(), "interfaces", CheckOK, strings.Join(names, ", "), "")
	}
}

func (c *checker) vmIP(ctx context.Context, n *node) {
	dev, err := n.ownsIP(ctx, n.spec.IP)
	switch {
	case err != nil:
		c.add(n.role(), "vm ip", CheckFail, err.Error(), "")
	case dev == "":
		c.add(n.role(), "vm ip", CheckFail, n.spec.IP+" is not configured on "+n.spec.SSH,
			"check "+n.spec.Field+".ip and .ssh: they must name the same VM")
	case n.spec.Interface != "" && dev != n.spec.Interface:
		c.add(n.role(), "vm ip", CheckWarn, fmt.Sprintf("%s is on %s, not on the configured %s", n.spec.IP, dev, n.spec.Interface), "")
	default:
		c.add(n.role(), "vm ip", CheckOK, n.spec.IP+" on "+dev, "")
	}
}

func (c *checker) ping(ctx context.Context, n *node, dst string) {
	res, err := n.t.Run(ctx, remote.Command{Args: []string{"ping", "-n", "-c", "1", "-W", "2", dst}})
	switch {
	case err != nil:
		c.add(n.role(), "ping", CheckFail, err.Error(), "")
	case res.ExitCode != 0:
		c.add(n.role(), "ping", CheckFail, fmt.Sprintf("ping %s: exit %d %s", dst, res.ExitCode, firstLine(res.Stderr)),
			"the sender VM cannot reach receiver.vm.ip: check routes, security groups, and that ICMP is allowed")
	default:
		c.add(n.role(), "ping", CheckOK, "reaches "+dst, "")
	}
}

// tools checks that the origin scripts named in tools: exist on the nodes
// that run them and that the interpreter is there.
func (c *checker) tools(ctx context.Context, env *envfile.Environment, n *node) {
	var scripts []string
	if n.spec.IsVM() {
		scripts = []string{env.Tools.KernelICMPRTT}
	} else {
		scripts = []string{env.Tools.ICMPDropDetector, env.Tools.TunTxToKVMIRQ, env.Tools.KVMVhostTunLatency}
	}
	var want []string
	for _, s := range scripts {
		if s != "" {
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		return
	}
	args := append([]string{"sh", "-c", `for f; do [ -r "$f" ] || echo "$f"; done`, "sh"}, want...)
	out, err := n.runCmd(ctx, remote.Command{Args: args})
	py, perr := n.runCmd(ctx, remote.Command{Args: []string{env.Tools.Python, "--version"}})
	switch {
	case err != nil:
		c.add(n.role(), "origin tools", CheckFail, err.Error(), "")
	case out != "":
		c.add(n.role(), "origin tools", CheckFail, "not found: "+oneLine(out), "copy the scripts to the node or fix tools:")
	case perr != nil:
		c.add(n.role(), "origin tools", CheckFail, perr.Error(), "install python3 and BCC (python3-bpfcc), or set tools.python")
	default:
		c.add(n.role(), "origin tools", CheckOK, py+": "+strings.Join(want, ", "), "")
	}
}

// sshHint turns a connection error into advice.
func sshHint(msg string, n envfile.Node) string {
	switch {
	case strings.Contains(msg, "HOST KEY MISMATCH"):
		return "verify the host's key out of band before editing known_hosts; never disable checking to get past this"
	case strings.Contains(msg, "not in") && strings.Contains(msg, "known_hosts"), strings.Contains(msg, "no known_hosts"):
		return "add the host key to known_hosts (ssh-keyscan), or point ssh.known_hosts at the right file"
	case strings.Contains(msg, "unable to authenticate"), strings.Contains(msg, "no SSH key"):
		return "check the user and key: ssh.user / identity_file / ssh-agent for " + n.Field
	case strings.Contains(msg, "connection refused"):
		return "nothing listens there: is sshd running, and is the port right?"
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"), strings.Contains(msg, "no route"):
		return "the node does not answer: check the address, firewalls, the jump host, or raise connect_timeout"
	case strings.Contains(msg, "no such host"):
		return "the name does not resolve: use an IP, or an alias from ssh.config"
	}
	return ""
}
