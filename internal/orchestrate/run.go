package orchestrate

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pingpath/pingpath/internal/buildinfo"
	"github.com/pingpath/pingpath/internal/manifest"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/remote"
)

// Run statuses (manifest.Manifest.Status).
const (
	StatusComplete = "complete"
	StatusPartial  = "partial"
	StatusFailed   = "failed"
)

// RunOptions configure Run.
type RunOptions struct {
	Options
	OutDir   string
	Count    int           // 0: measurement.ping_count
	Interval time.Duration // 0: measurement.interval
	// Size is ping's payload in bytes (ping -s; 0: ping's 56). Large pings
	// find an MTU too small on the path, e.g. for an overlay's
	// encapsulation, which ping's 84-byte packets never meet.
	Size int
	// ReadyTimeout bounds the wait for each tracer's ready line (30s; 90s
	// when origin BCC tools run, which compile at start; ten times that on
	// emulated machines, see emulationSlowdown).
	ReadyTimeout time.Duration
	// StopGrace is how long a tracer has to exit after stdin EOF/SIGINT
	// before SIGTERM (5s); StopTerm the same after SIGTERM before SIGKILL (2s).
	StopGrace, StopTerm time.Duration
	// MaxDurationMargin is added to the expected measurement time to get
	// every tracer's --max-duration backstop (30s).
	MaxDurationMargin time.Duration
	// MaxCPU is every pingpath tracer's --max-cpu (percent of one CPU; 0:
	// the tracers' default, or emulatedMaxCPU on emulated machines). A
	// tracer over it detaches itself and the run ends partial.
	MaxCPU float64
	// Analyze, if set, is called on the run directory at the end.
	Analyze func(ctx context.Context, dir string) error
}

// RunResult is how a run ended.
type RunResult struct {
	Manifest    *manifest.Manifest
	Interrupted bool  // the context was cancelled (Ctrl-C)
	Err         error // the first failure, for the message; nil when complete
	// WriteErr names the files of DIR that could not be written in full
	// (a full disk): the run failed, even if it was also interrupted.
	WriteErr error
	// AnalyzeErr is the analysis' error: the run itself may be complete.
	AnalyzeErr error
}

func (o *RunOptions) defaults() error {
	if len(o.Env.Pairs) > 0 {
		return errors.New("pairs: pingpath run measures one pair (sender and receiver); pingpath watch takes several")
	}
	m := o.Env.Measurement
	if o.Count == 0 {
		o.Count = m.PingCount
	}
	if o.Interval == 0 {
		d, err := time.ParseDuration(m.Interval)
		if err != nil {
			return fmt.Errorf("measurement.interval: %w", err)
		}
		o.Interval = d
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
		if t := o.Env.Tools; t.KernelICMPRTT+t.ICMPDropDetector+t.TunTxToKVMIRQ+t.KVMVhostTunLatency != "" {
			// BCC compiles its programs at start: seconds to tens of them.
			o.ReadyTimeout = 90 * time.Second
		}
		o.ReadyTimeout = o.slowed(o.ReadyTimeout)
	}
	if o.StopGrace == 0 {
		o.StopGrace = o.slowed(5 * time.Second)
	}
	if o.StopTerm == 0 {
		o.StopTerm = o.slowed(2 * time.Second)
	}
	if o.MaxDurationMargin == 0 {
		o.MaxDurationMargin = o.slowed(30 * time.Second)
	}
	return nil
}

// maxDuration is every tracer's self-termination backstop: the time ping
// needs (or measurement.duration if longer), plus start-up and margin.
func (o *RunOptions) maxDuration() time.Duration {
	d := time.Duration(o.Count)*o.Interval + time.Second
	if md, err := time.ParseDuration(o.Env.Measurement.Duration); err == nil && md > d {
		d = md
	}
	return (d + 2*o.ReadyTimeout + o.MaxDurationMargin).Round(time.Second)
}

// run is the state of one Run call.
type run struct {
	o       *RunOptions
	m       *manifest.Manifest
	mu      sync.Mutex
	nodes   []*node
	byRole  map[string]*node
	lost    map[string]bool
	tracers []*running
	out     *output
	bins    binaries // the binaries to push, open until the run ends
	// manifestErr: writing the manifest failed (the run failed).
	manifestErr error
}

func (r *run) fail(role, step string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m.Failures = append(r.m.Failures, manifest.Failure{Node: role, Step: step, Error: err.Error()})
}

// Run performs a measurement into o.OutDir. The error return is for a run
// that could not begin (bad output directory); everything else, including
// failed runs, is described by the RunResult and DIR/manifest.json.
func Run(ctx context.Context, o RunOptions) (*RunResult, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := prepareDir(o.OutDir, o.ConfigFile); err != nil {
		return nil, err
	}
	start := time.Now()
	r := &run{o: &o, byRole: map[string]*node{}, lost: map[string]bool{}, m: &manifest.Manifest{
		Environment: o.Env.Environment, Version: buildinfo.String(), Started: start.UTC(),
		ConfigFile: o.ConfigFile, Emulation: o.Env.Emulation,
	}}
	if l := o.Env.Lab; l != nil {
		r.m.Lab = &manifest.Lab{Kind: l.Kind, VMLink: l.VMLink, Wire: l.Wire, WireDelay: l.WireDelay,
			WireJitter: l.WireJitter, WireLoss: l.WireLoss}
	}
	// A stalled write may wait as long as the tracers would run by
	// themselves: their --max-duration backstop.
	r.out = &output{dir: o.OutDir, progress: o.progress(), stopped: ctx.Done(), patience: o.maxDuration()}
	defer o.progress().Done()
	res := &RunResult{Manifest: r.m}
	defer func() {
		res.Interrupted = ctx.Err() != nil
		if res.Err == nil && len(r.m.Failures) > 0 {
			f := r.m.Failures[0]
			res.Err = errors.New(f.Node + ": " + f.Step + ": " + f.Error)
		}
		r.finishManifest(start)
		if r.manifestErr == nil {
			r.writeManifest(res)
		}
	}()
	defer func() {
		closeAll(r.nodes)
		r.bins.Close()
	}()

	phases, err := r.connect(ctx)
	if err != nil {
		r.m.Status = StatusFailed
		res.Err = err
		return res, nil
	}
	// Open every tracer's session and ping's, gated, while the nodes are
	// prepared: the SSH and login-shell costs overlap.
	var started [][]*running
	var pinger *pingRun
	var pingOpenErr error
	opened := make(chan struct{})
	go func() {
		defer close(opened)
		started = r.openTracers(ctx, phases)
	}()
	pingOpened := make(chan struct{})
	go func() {
		defer close(pingOpened)
		sv := r.byRole[manifest.RoleSenderVM]
		pinger, pingOpenErr = openPing(ctx, r.out, sv, o.Env.Receiver.VM.IP, o.Count, o.Size, o.Interval, o.slowed(15*time.Second), o.progress())
	}()
	err = r.prepare(ctx, start, phases)
	<-opened
	<-pingOpened
	if err != nil {
		pinger.cancel()
		r.stopAll(ctx)
		r.collect()
		r.m.Status = StatusFailed
		res.Err = err
		return res, nil
	}
	t0 := time.Now()
	r.readyTracers(ctx, started)
	r.m.Timings.StartMS = ms(time.Since(t0))
	pingErr := r.ping(ctx, pinger, pingOpenErr)
	if d := o.hostTimeout(); d > 0 && pingErr == nil && pingOpenErr == nil {
		// The host tracers decide a ping lost at the end of the series
		// once it is idle for their --timeout; stopped earlier they could
		// only write it as incomplete.
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	t0 = time.Now()
	r.stopAll(ctx)
	r.m.Timings.StopMS = ms(time.Since(t0))
	r.collect()
	if pingErr == nil && pingOpenErr == nil {
		r.m.Ping.ICMPID = pinger.icmpID(r.icmpIDStream())
	}
	writeErr := r.writeErrors(pinger)

	switch {
	case writeErr != nil:
		// Nothing is complete that is not on disk.
		r.m.Status = StatusFailed
		res.Err, res.WriteErr = writeErr, writeErr
		return res, nil
	case ctx.Err() != nil:
		r.m.Status = StatusPartial
		r.m.Failures = append(r.m.Failures, manifest.Failure{Step: "run", Error: "interrupted: tracers stopped, collected data kept"})
		return res, nil
	case len(r.m.Failures) == 0:
		r.m.Status = StatusComplete
	case pingErr != nil && r.m.Ping.Sent == 0:
		// ping could not run at all: there is nothing to analyse. (All
		// pings lost is data: the tracers localise the drops.)
		r.m.Status = StatusFailed
		return res, nil
	default:
		r.m.Status = StatusPartial
	}
	if o.Analyze != nil {
		// The analysis reads the manifest: write it first.
		r.finishManifest(start)
		if !r.writeManifest(res) {
			return res, nil
		}
		t0 = time.Now()
		res.AnalyzeErr = o.Analyze(ctx, o.OutDir)
		r.m.Timings.AnalyzeMS = ms(time.Since(t0))
	}
	return res, nil
}

// connect connects to every node, chooses each node's binary and returns
// the tracer plan; the binaries stay open until the run ends. Any failure
// here fails the run. With binaries of several architectures, the nodes'
// facts are read first (their `uname -m` picks the binary, whose checksum
// is in the tracers' command lines); otherwise prepare reads them, together
// with the push's check, while the tracers' sessions open.
func (r *run) connect(ctx context.Context) ([][]*tracerSpec, error) {
	o := r.o
	r.nodes = connectAll(ctx, &o.Options)
	var connErr error
	for _, n := range r.nodes {
		r.byRole[n.role()] = n
		r.m.Nodes = append(r.m.Nodes, manifest.Node{Role: n.role(), SSH: n.spec.SSH, Untraced: n.spec.Untraced, Tracers: []manifest.Tracer{}})
		if n.err != nil {
			r.fail(n.role(), "connect", n.err)
			connErr = cmp.Or(connErr, n.err)
		}
	}
	if connErr != nil {
		return nil, connErr
	}
	bins, err := openBinaries(&o.Options)
	if err != nil {
		r.fail("", "push", err)
		return nil, err
	}
	r.bins = bins
	if bins.mixed() {
		err := r.forEachNode(ctx, "prepare", func(ctx context.Context, n *node) error {
			_, err := n.readFacts(ctx, remote.Command{})
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	for _, n := range r.nodes {
		n.bin = bins.forMachine(n.facts["arch"])
	}
	return r.skipUnavailable(plan(planInput{env: o.Env, nodes: r.byRole, maxDuration: o.maxDuration(), maxCPU: o.tracerMaxCPU(o.MaxCPU),
		emulated: o.emulated(), killAfter: o.StopGrace + o.StopTerm})), nil
}

// prepare reads every node's facts (as root, which checks sudo; unless
// connect did) and pushes pingpath where it is not yet, per node without a
// barrier between the steps. Any failure here fails the run.
func (r *run) prepare(ctx context.Context, start time.Time, phases [][]*tracerSpec) error {
	o := r.o
	var pushMax time.Duration
	err := r.forEachNode(ctx, "prepare", func(ctx context.Context, n *node) error {
		withBinary := needsBinary(phases, n.role())
		var took time.Duration
		var err error
		switch {
		case !r.bins.mixed():
			took, err = n.prepare(ctx, withBinary, o.progress())
		case withBinary:
			took, err = n.pushTimed(ctx, nil, o.progress())
		}
		r.mu.Lock()
		pushMax = max(pushMax, took)
		r.mu.Unlock()
		return err
	})
	r.m.Timings.PushMS = ms(pushMax)
	r.m.Timings.ConnectMS = ms(time.Since(start) - pushMax)
	return err
}

// ping runs the pre-opened ping unless the run was interrupted; its
// failure is recorded and returned.
func (r *run) ping(ctx context.Context, p *pingRun, openErr error) error {
	o := r.o
	sv := r.byRole[manifest.RoleSenderVM]
	r.m.Ping = manifest.Ping{Command: sv.recordedArgv(pingArgs(o.Env.Receiver.VM.IP, o.Count, o.Interval, o.Size), nil),
		File: PingFile, Count: o.Count, Interval: o.Interval.String()}
	if ctx.Err() != nil {
		p.cancel()
		return nil
	}
	err := openErr
	if err == nil {
		t0 := time.Now()
		var stats PingStats
		stats, err = p.run(ctx)
		r.m.Timings.PingMS = ms(time.Since(t0))
		r.m.Ping.Sent, r.m.Ping.Received = stats.Sent, stats.Answered
	}
	if err != nil && ctx.Err() == nil {
		r.fail(sv.role(), "ping", err)
		return err
	}
	return nil
}

// prepareDir creates the run directory; an existing non-empty one is
// refused so that no earlier run is overwritten. The environment file is
// copied in (it holds no secrets: passwords are never in it).
func prepareDir(dir, config string) error {
	if dir == "" {
		return errors.New("no output directory given (-o DIR)")
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("output directory %s is not empty: choose a new one (runs are never overwritten)", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	if config != "" {
		b, err := os.ReadFile(config)
		if err != nil {
			return fmt.Errorf("copying environment file: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "env.yaml"), b, 0o644); err != nil {
			return fmt.Errorf("copying environment file: %w", err)
		}
	}
	return nil
}

// forEachNode runs fn on every node in parallel; failures are recorded
// under step and the first is returned.
func (r *run) forEachNode(ctx context.Context, step string, fn func(context.Context, *node) error) error {
	errs := make([]error, len(r.nodes))
	var wg sync.WaitGroup
	for i, n := range r.nodes {
		if !n.contacted() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, n); err != nil {
				errs[i] = err
				r.fail(n.role(), step, err)
				r.o.progress().NodeState(n.role(), "failed", err.Error())
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// skipUnavailable removes the tracers not in o.Tracers and those of nodes
// not in o.TracedNodes, and records them in the manifest as not started.
func (r *run) skipUnavailable(phases [][]*tracerSpec) [][]*tracerSpec {
	if r.o.Tracers == nil && r.o.TracedNodes == nil {
		return phases
	}
	idx := map[string]int{}
	for i, n := range r.m.Nodes {
		idx[n.Role] = i
	}
	out := make([][]*tracerSpec, len(phases))
	for i, ph := range phases {
		for _, t := range ph {
			why := ""
			switch {
			case !r.o.traced(t.node.role()):
				why = "node not traced (--traced-nodes)"
			case !t.origin && r.o.Tracers != nil && !slices.Contains(r.o.Tracers, t.tool):
				why = "not selected, or not in this pingpath build"
			default:
				out[i] = append(out[i], t)
				continue
			}
			n := &r.m.Nodes[idx[t.node.role()]]
			n.Tracers = append(n.Tracers, manifest.Tracer{Tool: t.tool, Command: []string{}, State: "not-started", Error: why})
		}
	}
	return out
}

// openTracers opens every tracer's session at once, each program held
// behind a gate: the SSH and login-shell costs are paid in parallel (and
// while the nodes are prepared).
func (r *run) openTracers(ctx context.Context, phases [][]*tracerSpec) [][]*running {
	started := make([][]*running, len(phases))
	var mu sync.Mutex
	var open sync.WaitGroup
	for i, phase := range phases {
		for _, spec := range phase {
			open.Add(1)
			go func() {
				defer open.Done()
				if rt := r.startOne(ctx, spec); rt != nil {
					mu.Lock()
					started[i] = append(started[i], rt)
					mu.Unlock()
				}
			}()
		}
	}
	open.Wait()
	return started
}

// readyTracers releases the tracers phase by phase, receivers first: each
// phase's programs start together and must all be ready (or have failed)
// before the next phase's start. A tracer that fails to start is recorded;
// the run goes on with the others (and ends partial).
func (r *run) readyTracers(ctx context.Context, started [][]*running) {
	for _, phase := range started {
		if ctx.Err() != nil {
			return
		}
		var ready sync.WaitGroup
		for _, rt := range phase {
			ready.Add(1)
			go func() {
				defer ready.Done()
				r.awaitReady(ctx, rt)
			}()
		}
		ready.Wait()
	}
}

// startOne opens the (gated) session of one tracer.
func (r *run) startOne(ctx context.Context, spec *tracerSpec) *running {
	role := spec.node.role()
	rt, err := startTracer(ctx, r.out, spec, true)
	if err != nil {
		r.fail(role, "start "+spec.tool, err)
		r.o.progress().NodeState(role, "failed", err.Error())
		return nil
	}
	r.mu.Lock()
	r.tracers = append(r.tracers, rt)
	r.mu.Unlock()
	return rt
}

// awaitReady releases a gated tracer and waits for its ready line.
func (r *run) awaitReady(ctx context.Context, rt *running) {
	role := rt.spec.node.role()
	r.o.progress().NodeState(role, "starting", rt.spec.tool)
	err := rt.release()
	if err == nil {
		err = rt.waitReady(ctx, r.o.ReadyTimeout)
	}
	if err != nil {
		if ctx.Err() == nil {
			r.fail(role, "start "+rt.spec.tool, err)
			r.o.progress().NodeState(role, "failed", err.Error())
		}
		return
	}
	r.o.progress().NodeState(role, "tracing", r.readyTools(role))
	go r.watchLost(ctx, rt)
}

// readyTools lists the node's ready tracers, for progress.
func (r *run) readyTools(role string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ""
	for _, rt := range r.tracers {
		if rt.isReady() && rt.spec.node.role() == role {
			if s != "" {
				s += " "
			}
			s += rt.spec.tool
		}
	}
	return s
}

// watchLost reports a tracer that ends before it was asked to stop.
func (r *run) watchLost(ctx context.Context, rt *running) {
	<-rt.exited
	rt.mu.Lock()
	stopped := rt.stopped
	rt.mu.Unlock()
	if stopped {
		return
	}
	role := rt.spec.node.role()
	if errors.Is(rt.err, remote.ErrConnectionLost) || rt.err != nil {
		r.mu.Lock()
		first := !r.lost[role]
		r.lost[role] = true
		r.mu.Unlock()
		if first {
			r.o.progress().NodeState(role, "lost", "connection lost; the tracers stop on stdin EOF or --max-duration")
		}
		return
	}
	if last := rt.last(); strings.HasPrefix(last, "detached ") {
		// The tracer stopped itself over --max-cpu (its last word).
		r.o.progress().NodeState(role, "detached", last)
		return
	}
	r.o.progress().NodeState(role, "failed", rt.spec.tool+" exited early: "+rt.exitText())
}

// isLost tells whether a node's connection was reported lost.
func (r *run) isLost(role string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost[role]
}

// stopAll stops every tracer in parallel, with a context that survives a
// Ctrl-C (stopping is exactly what an interrupt needs).
func (r *run) stopAll(ctx context.Context) {
	sctx := context.WithoutCancel(ctx)
	to := stopTimeouts{Graceful: r.o.StopGrace, Term: r.o.StopTerm}
	var wg sync.WaitGroup
	seen := map[string]bool{}
	for _, rt := range r.tracers {
		if role := rt.spec.node.role(); !seen[role] {
			seen[role] = true
			r.o.progress().NodeState(role, "stopping", "")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rt.stop(sctx, to)
		}()
	}
	wg.Wait()
}

// collect fills the manifest's tracer entries and failures from the
// stopped tracers and their headers.
func (r *run) collect() {
	idx := map[string]int{}
	for i, n := range r.m.Nodes {
		idx[n.Role] = i
	}
	final := map[string]string{}
	failedStart := map[string]bool{}
	for _, f := range r.m.Failures {
		failedStart[f.Node+"/"+f.Step] = true
	}
	// Tracers in plan order for a stable manifest.
	for _, rt := range r.sortedTracers() {
		role := rt.spec.node.role()
		t := rt.result()
		if !rt.spec.origin {
			file := filepath.Join(r.o.OutDir, rt.spec.file)
			t.Probes = headerProbes(file)
			if tr := streamTrailer(file); tr != nil {
				t.Cost = tr.Cost
				if tr.ExitReason == record.ExitMaxCPU && t.State == "failed" {
					// It stopped itself rather than hurt the node: the
					// run goes on, partial.
					t.State, t.Error = "detached", detachedText(tr)
				}
			}
		}
		if t.State != "ok" && t.State != "not-started" && !failedStart[role+"/start "+rt.spec.tool] {
			r.fail(role, "trace "+rt.spec.tool, errors.New(t.Error))
		}
		n := &r.m.Nodes[idx[role]]
		n.Tracers = append(n.Tracers, t)
		switch {
		case r.isLost(role) || t.State == "lost":
			final[role] = "lost"
		case t.State == "detached" && final[role] != "lost" && final[role] != "failed":
			final[role] = "detached"
		case t.State != "ok" && t.State != "not-started" && final[role] != "lost":
			final[role] = "failed"
		case final[role] == "":
			final[role] = "done"
		}
	}
	for role, st := range final {
		r.o.progress().NodeState(role, st, "")
	}
}

// writeErrors records and returns the output files (tracers' and ping's)
// that are not all on disk.
func (r *run) writeErrors(pinger *pingRun) error {
	all := append([]*running(nil), r.tracers...)
	if pinger != nil {
		all = append(all, pinger.rt)
	}
	var errs []error
	for _, rt := range all {
		if err := rt.writeErr(); err != nil {
			r.fail(rt.spec.node.role(), "write "+rt.spec.tool, err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeManifest writes DIR/manifest.json, waiting for space like the
// streams do; when it cannot, the run has failed.
func (r *run) writeManifest(res *RunResult) bool {
	p := filepath.Join(r.o.OutDir, manifest.FileName)
	r.manifestErr = r.out.retryWrite("run", p, new(atomic.Bool), func() error { return manifest.Write(r.o.OutDir, r.m) })
	if r.manifestErr == nil {
		return true
	}
	r.fail("", "write", r.manifestErr)
	r.m.Status = StatusFailed
	res.Err = errors.Join(res.Err, r.manifestErr)
	res.WriteErr = errors.Join(res.WriteErr, r.manifestErr)
	return false
}

// icmpIDStream is the output file whose records tell ping's ICMP id: the
// sender VM tracer's, else the sender host tracer's ("" when neither ran).
func (r *run) icmpIDStream() string {
	// The sender VM's tracer sees every request ping sends; without it
	// (an untraced VM) the sender host's sees them too, and its drop
	// records still name the id when every ping was lost.
	var host string
	for _, rt := range r.tracers {
		s := rt.spec
		switch {
		case s.origin:
		case s.tool == "vm" && s.node.role() == manifest.RoleSenderVM:
			return filepath.Join(r.o.OutDir, s.file)
		case s.tool == "host" && s.node.role() == manifest.RoleSenderHost && host == "":
			host = filepath.Join(r.o.OutDir, s.file)
		}
	}
	return host
}

// sortedTracers returns the started tracers in plan order.
func (r *run) sortedTracers() []*running {
	out := append([]*running(nil), r.tracers...)
	sort.Slice(out, func(i, j int) bool { return out[i].spec.order < out[j].spec.order })
	return out
}

// headerProbes reads the probes a tracer chose from its stream header.
func headerProbes(file string) []string {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	br := bufio.NewReader(f)
	line, err := br.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return nil
	}
	var h record.Header
	if json.Unmarshal(line, &h) != nil || h.Type != record.TypeHeader {
		return nil
	}
	out := make([]string, 0, len(h.Probes))
	for _, p := range h.Probes {
		if p.Available {
			out = append(out, p.Stage+"="+p.Method+":"+p.Target)
		} else {
			out = append(out, p.Stage+"=unavailable: "+p.Reason)
		}
	}
	return out
}

// streamTrailer reads the trailer at the end of a tracer's record stream
// (nil when there is none).
func streamTrailer(file string) *record.Trailer {
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	// The trailer is the last line; read the end of the file only.
	const tail = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > tail {
		if _, err := f.Seek(st.Size()-tail, io.SeekStart); err != nil {
			return nil
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil
	}
	b = bytes.TrimRight(b, "\n")
	var t record.Trailer
	if json.Unmarshal(b[bytes.LastIndexByte(b, '\n')+1:], &t) != nil || t.Type != record.TypeTrailer {
		return nil
	}
	return &t
}

// detachedText says why a tracer detached itself.
func detachedText(t *record.Trailer) string {
	if c := t.Cost; c != nil {
		return fmt.Sprintf("detached itself: tracing cost %.1f %% of one CPU, more than its --max-cpu %g %%; the run went on without it", c.PeakCPUPercent, c.MaxCPUPercent)
	}
	return "detached itself: tracing cost more than its --max-cpu; the run went on without it"
}

// finishManifest fills node facts and total timing.
func (r *run) finishManifest(start time.Time) {
	for i := range r.m.Nodes {
		n := r.byRole[r.m.Nodes[i].Role]
		if n == nil || n.facts == nil {
			continue
		}
		mn := &r.m.Nodes[i]
		mn.Hostname, mn.Kernel, mn.Arch = n.facts["hostname"], n.facts["kernel"], n.facts["arch"]
		mn.Facts = map[string]string{}
		for k, v := range n.facts {
			switch k {
			case "hostname", "kernel", "arch":
			default:
				mn.Facts[k] = v
			}
		}
	}
	r.m.Finished = time.Now().UTC()
	r.m.Timings.TotalMS = ms(time.Since(start))
}
