package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pingpath/pingpath/internal/envfile"
	"github.com/pingpath/pingpath/internal/remote"
	"github.com/pingpath/pingpath/internal/role"
)

// Continuous mode (pingpath watch): the tracers of every pair keep running
// and their records stream to a WatchSink, which joins and exposes them.
// Each machine (a node of one or more pairs, known by its ssh host and
// port) has a supervisor: connect, read facts, push, start its tracers (one
// host tracer for every pair on a host) and pings, renew their backstop,
// restart what dies; when the connection is lost, reconnect with backoff.

// WatchOptions configure Watch.
type WatchOptions struct {
	Options
	// Sink receives every stream's lines and every change of state.
	Sink WatchSink
	// Interval is ping's interval (1s); Count, when positive, stops each
	// pair's ping after that many pings (the tracers keep running).
	Interval time.Duration
	Count    int
	// ReadyTimeout bounds each tracer start (30s).
	ReadyTimeout time.Duration
	// MaxDuration is every tracer's --max-duration (2m): it is renewed by
	// a line on the tracer's stdin every MaxDuration/4 while watch runs,
	// so a tracer whose controller is gone stops at most MaxDuration after
	// the last renewal (at once when the SSH session closes).
	MaxDuration time.Duration
	// StatsInterval is how often the tracers report their counters (10s).
	StatsInterval time.Duration
	// PingDeadline bounds each ping process (ping -w, 10m): a ping that
	// reaches it is started again, so that no ping outlives a lost
	// controller by more.
	PingDeadline time.Duration
	// BackoffMin and BackoffMax bound the wait before a reconnect or a
	// restart, doubled after each failure (1s, 30s).
	BackoffMin, BackoffMax time.Duration
	// StopGrace and StopTerm as in RunOptions (5s, 2s).
	StopGrace, StopTerm time.Duration
}

// WatchStream names one started tracer or ping.
type WatchStream struct {
	Node string // the machine
	Tool string // "vm", "host", "vhost-rx", "vhost-tx", or "ping"
	// Pairs are the pairs it serves, in the order of its records' "pair"
	// index (only a host tracer serves several).
	Pairs []string
	// Start counts the starts before this one: each start begins a new
	// stream (a record stream begins with its header again).
	Start int
}

func (s *WatchStream) String() string {
	return fmt.Sprintf("%s on %s (%s)", s.Tool, s.Node, strings.Join(s.Pairs, ","))
}

// WatchSink receives what Watch sees. Its methods are called from many
// goroutines; Line is called in order for each stream.
type WatchSink interface {
	// Line is one line of a stream's stdout: a record, or ping's output.
	Line(s *WatchStream, line []byte)
	// Started: the tracer is ready (ping: started).
	Started(s *WatchStream)
	// Ended: the stream ended; unexpected when it was not stopped by
	// watch nor lost with its connection (it will be restarted).
	Ended(s *WatchStream, err error, unexpected bool)
	// NodeUp and NodeDown report a machine's connection (err: why not).
	NodeUp(node string)
	NodeDown(node string, err error)
}

func (o *WatchOptions) defaults() error {
	if o.Sink == nil {
		return errors.New("watch: no sink")
	}
	if t := o.Env.Tools; t.KernelICMPRTT+t.ICMPDropDetector+t.TunTxToKVMIRQ+t.KVMVhostTunLatency != "" {
		return errors.New("tools: pingpath watch runs pingpath's own tracers only (the origin tools cannot be renewed or report counters while they run)")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Interval, time.Second)
	def(&o.ReadyTimeout, 30*time.Second)
	def(&o.MaxDuration, 2*time.Minute)
	def(&o.StatsInterval, 10*time.Second)
	def(&o.PingDeadline, 10*time.Minute)
	def(&o.BackoffMin, time.Second)
	def(&o.BackoffMax, 30*time.Second)
	def(&o.StopGrace, 5*time.Second)
	def(&o.StopTerm, 2*time.Second)
	return nil
}

// machine is one node of the watch, shared by the pairs that name it.
type machine struct {
	name string
	spec envfile.Node // how to reach it (its first mention)
	jobs []*watchJob
}

// watchJob is one tracer or ping kept running on a machine.
type watchJob struct {
	stream WatchStream
	// args builds the command for the pushed binary at path.
	args func(binary string) []string
	ping bool
	// host tracer: the pairs' addresses and interfaces, in pair order.
	hostPairs   [][2]string
	vnets, phys []string
	pingDst     string
	btf         string // host tracer: the node's --btf
	ours        bool   // runs the pushed pingpath
	starts      int    // how many times it was started
}

// planWatch groups the pairs' nodes into machines and lists what runs on
// each: a vm tracer per VM and pair, one host tracer per host for all its
// pairs, vhost-rx and vhost-tx per host and pair, and each pair's ping on
// its sender VM.
func planWatch(o *WatchOptions) ([]*machine, error) {
	var machines []*machine
	byKey := map[string]*machine{}
	pairs := o.Env.SplitPairs()
	single := len(o.Env.Pairs) == 0
	ours := func(tool string) bool { return o.Tracers == nil || slices.Contains(o.Tracers, tool) }
	// On emulated machines the tracers get what `run` gives them there.
	common := func(tool string, flags ...string) []string {
		flags = append(flags, "--format", "json", "--stop-on-stdin-eof", "--renew-on-stdin",
			"--max-duration", o.MaxDuration.String(), "--stats-interval", o.StatsInterval.String())
		if o.emulated() {
			flags = append(flags, "--max-cpu", strconv.Itoa(emulatedMaxCPU))
			flags = append(flags, emulatedFlags(tool)...)
		}
		return flags
	}
	hostJobs := map[*machine]*watchJob{}
	for _, p := range pairs {
		s, r := p.Env.Sender.VM.IP, p.Env.Receiver.VM.IP
		for _, n := range p.Env.Nodes() {
			if !n.Contacted() {
				continue // an untraced receiver VM without ssh only answers
			}
			key, ok := envfile.MachineKey(n.SSH, n.Options, p.Env.SSH.Port)
			if !ok {
				return nil, fmt.Errorf("%s: %s: bad ssh destination %q", p.Name, n.Field, n.SSH)
			}
			m := byKey[key]
			if m == nil {
				name := n.SSH
				if single {
					name = n.Role
				}
				m = &machine{name: name, spec: n}
				m.spec.Role = name
				byKey[key] = m
				machines = append(machines, m)
			}
			btf := func(flags []string) []string {
				if n.BTF != "" {
					return append(flags, "--btf", n.BTF)
				}
				return flags
			}
			job := func(tool string, flags ...string) {
				args := common(tool, btf(flags)...)
				m.jobs = append(m.jobs, &watchJob{ours: true,
					stream: WatchStream{Node: m.name, Tool: tool, Pairs: []string{p.Name}},
					args: func(bin string) []string {
						return append([]string{bin, "trace", tool}, args...)
					}})
			}
			switch n.Role {
			case role.SenderVM, role.ReceiverVM:
				dir := "rx"
				if n.Role == role.SenderVM {
					dir = "tx"
				}
				if ours("vm") && !n.Untraced {
					f := []string{"--src-ip", s, "--dst-ip", r, "--direction", dir, "--timeout", "2s"}
					if n.Interface != "" {
						f = append(f, "--interface", n.Interface)
					}
					job("vm", f...)
				}
				if n.Role == role.SenderVM {
					m.jobs = append(m.jobs, &watchJob{ping: true, pingDst: r,
						stream: WatchStream{Node: m.name, Tool: "ping", Pairs: []string{p.Name}}})
				}
			default:
				if ours("host") {
					h := hostJobs[m]
					if h == nil {
						h = &watchJob{ours: true, stream: WatchStream{Node: m.name, Tool: "host"}, btf: n.BTF}
						hostJobs[m] = h
						m.jobs = append(m.jobs, h)
					}
					h.stream.Pairs = append(h.stream.Pairs, p.Name)
					h.hostPairs = append(h.hostPairs, [2]string{s, r})
					if !slices.Contains(h.vnets, n.VnetInterface) {
						h.vnets = append(h.vnets, n.VnetInterface)
					}
					for _, phy := range n.PhyInterfaces {
						if !slices.Contains(h.phys, phy) {
							h.phys = append(h.phys, phy)
						}
					}
				}
				for _, tool := range []string{"vhost-rx", "vhost-tx"} {
					if ours(tool) {
						job(tool, "--vm-interface", n.VnetInterface, "--src-ip", s, "--dst-ip", r)
					}
				}
			}
		}
	}
	for _, h := range hostJobs {
		flags := []string{"--src-ip", h.hostPairs[0][0], "--dst-ip", h.hostPairs[0][1]}
		for _, p := range h.hostPairs[1:] {
			flags = append(flags, "--pair", p[0]+","+p[1])
		}
		flags = append(flags, "--vm-interface", strings.Join(h.vnets, ","), "--phy-interface", strings.Join(h.phys, ","))
		if h.btf != "" {
			flags = append(flags, "--btf", h.btf)
		}
		args := common("host", flags...)
		h.args = func(bin string) []string { return append([]string{bin, "trace", "host"}, args...) }
	}
	return machines, nil
}

// watcher is the state of one Watch call.
type watcher struct {
	o   *WatchOptions
	bin *remote.Local
	// firstStart is released once every machine tried its first start,
	// so that pings begin when the tracers that can run do.
	firstStart sync.WaitGroup
}

// Watch runs until ctx is cancelled: every tracer is then stopped (and
// every tracer stops by itself if watch cannot: stdin EOF, the renewed
// --max-duration). The error is for a watch that could not begin.
func Watch(ctx context.Context, o WatchOptions) error {
	if err := o.defaults(); err != nil {
		return err
	}
	machines, err := planWatch(&o)
	if err != nil {
		return err
	}
	bin, err := remote.OpenLocal(o.Binary)
	if err != nil {
		return fmt.Errorf("reading the pingpath binary to push: %w", err)
	}
	defer bin.Close()
	w := &watcher{o: &o, bin: bin}
	w.firstStart.Add(len(machines))
	var wg sync.WaitGroup
	for _, m := range machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.supervise(ctx, m)
		}()
	}
	wg.Wait()
	return nil
}

// backoff is a doubling wait between Min and Max.
type backoff struct {
	min, max, next time.Duration
}

func (b *backoff) wait(ctx context.Context) bool {
	b.next = min(max(b.next, b.min), b.max)
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next *= 2
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (b *backoff) reset() { b.next = b.min }

// supervise keeps machine m connected and its jobs running until ctx ends.
func (w *watcher) supervise(ctx context.Context, m *machine) {
	o := w.o
	first := sync.OnceFunc(w.firstStart.Done)
	defer first()
	bo := &backoff{min: o.BackoffMin, max: o.BackoffMax}
	needsBinary := slices.ContainsFunc(m.jobs, func(j *watchJob) bool { return j.ours })
	for ctx.Err() == nil {
		n := &node{spec: m.spec, bin: w.bin}
		if m.spec.Options.Sudo == envfile.SudoPassword {
			n.password = o.SudoPassword
		}
		var err error
		if n.t, err = o.Dial(ctx, m.spec); err == nil {
			_, err = n.prepare(ctx, needsBinary, nopProgress{})
			if err != nil {
				n.t.Close()
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			o.Sink.NodeDown(m.name, err)
			first()
			if !bo.wait(ctx) {
				return
			}
			continue
		}
		o.Sink.NodeUp(m.name)
		up := time.Now()
		err = w.serve(ctx, n, m, first)
		n.t.Close()
		if ctx.Err() != nil {
			return
		}
		o.Sink.NodeDown(m.name, err)
		if time.Since(up) > 2*o.BackoffMax {
			bo.reset() // it was up long enough: this is a new outage
		}
		if !bo.wait(ctx) {
			return
		}
	}
}

// serve runs m's jobs on the connected node n until ctx ends (then stops
// them) or the connection is lost (returned as the error).
func (w *watcher) serve(ctx context.Context, n *node, m *machine, firstDone func()) error {
	o := w.o
	jctx, stopJobs := context.WithCancel(ctx)
	defer stopJobs()
	var (
		mu      sync.Mutex
		live    = map[*running]bool{}
		lostErr error
	)
	lost := make(chan struct{})
	markLost := sync.OnceFunc(func() { close(lost) })
	track := func(rt *running, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			live[rt] = true
		} else {
			delete(live, rt)
		}
	}
	var jobs, tracersTried sync.WaitGroup
	for _, j := range m.jobs {
		jobs.Add(1)
		if !j.ping {
			tracersTried.Add(1)
		}
		go func() {
			defer jobs.Done()
			err := w.keep(jctx, n, j, track, tracersTried.Done)
			if err != nil {
				mu.Lock()
				lostErr = err
				mu.Unlock()
				markLost()
			}
		}()
	}
	go func() {
		tracersTried.Wait()
		firstDone()
	}()
	// Renew every tracer's backstop while the connection lasts.
	renew := time.NewTicker(o.MaxDuration / 4)
	defer renew.Stop()
	for loop := true; loop; {
		select {
		case <-ctx.Done():
			loop = false
		case <-lost:
			loop = false
		case <-renew.C:
			mu.Lock()
			for rt := range live {
				_ = rt.renew()
			}
			mu.Unlock()
		}
	}
	stopJobs()
	// Stop what runs, pings first so that the tracers see their last
	// replies, with a context that outlives the interrupt.
	mu.Lock()
	all := make([]*running, 0, len(live))
	for rt := range live {
		all = append(all, rt)
	}
	mu.Unlock()
	to := stopTimeouts{Graceful: o.StopGrace, Term: o.StopTerm}
	pings := slices.DeleteFunc(slices.Clone(all), func(rt *running) bool { return rt.spec.tool != "ping" })
	tracers := slices.DeleteFunc(all, func(rt *running) bool { return rt.spec.tool == "ping" })
	for _, group := range [][]*running{pings, tracers} {
		var stops sync.WaitGroup
		for _, rt := range group {
			stops.Add(1)
			go func() {
				defer stops.Done()
				rt.stop(context.WithoutCancel(ctx), to)
			}()
		}
		stops.Wait()
	}
	jobs.Wait()
	mu.Lock()
	defer mu.Unlock()
	if lostErr == nil && ctx.Err() == nil {
		lostErr = errors.New("connection lost")
	}
	return lostErr
}

// keep runs job j on n until ctx ends, restarting it with backoff when it
// dies (an unexpected end). It returns the error that ended the
// connection, or nil when ctx ended. tried is called once after the
// first start attempt.
func (w *watcher) keep(ctx context.Context, n *node, j *watchJob, track func(*running, bool), tried func()) error {
	o := w.o
	once := sync.OnceFunc(tried)
	if j.ping {
		once = func() {}
		// Pings begin once every machine's tracers had their first try.
		waited := make(chan struct{})
		go func() { w.firstStart.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			return nil
		}
	}
	defer once()
	bo := &backoff{min: o.BackoffMin, max: o.BackoffMax}
	sent := 0 // pings done, with Count
	for ctx.Err() == nil {
		if j.ping && o.Count > 0 && sent >= o.Count {
			<-ctx.Done()
			return nil
		}
		s := j.stream
		s.Start = j.starts
		j.starts++
		var tracker pingTracker
		rt, err := w.start(ctx, n, j, &s, o.Count-sent, &tracker)
		once()
		if rt != nil {
			track(rt, true)
			if ctx.Err() != nil {
				// Started as serve was stopping the others.
				rt.stop(context.WithoutCancel(ctx), stopTimeouts{Graceful: o.StopGrace, Term: o.StopTerm})
			}
		}
		if err == nil {
			o.Sink.Started(&s)
			<-rt.exited // by itself, or stopped by serve
			err = exitErr(rt, j.ping)
			if j.ping {
				sent += tracker.stats.Sent
			}
		} else if rt != nil {
			rt.stop(context.WithoutCancel(ctx), stopTimeouts{Graceful: o.StopGrace, Term: o.StopTerm})
		}
		if rt != nil {
			track(rt, false)
			if rt.err != nil {
				// No exit status: the connection is gone (or going).
				o.Sink.Ended(&s, rt.err, false)
				return fmt.Errorf("%s: %w", s.String(), rt.err)
			}
		}
		if ctx.Err() != nil {
			o.Sink.Ended(&s, err, false)
			return nil
		}
		// A ping that reached its deadline (or count) ended normally.
		normal := j.ping && err == nil
		o.Sink.Ended(&s, err, !normal)
		if normal {
			bo.reset()
			continue
		}
		if !bo.wait(ctx) {
			return nil
		}
	}
	return nil
}

// start starts one job and waits for a tracer's ready line (ping has
// none). rt is returned even with an error when something was started.
// tracker follows a ping's output (how many it sent).
func (w *watcher) start(ctx context.Context, n *node, j *watchJob, s *WatchStream, left int, tracker *pingTracker) (*running, error) {
	o := w.o
	spec := &tracerSpec{node: n, tool: j.stream.Tool,
		onStdout: func(l string) { o.Sink.Line(s, []byte(l)) }}
	if j.ping {
		args := []string{"ping", "-D", "-n", "-O", "-i", strconv.FormatFloat(o.Interval.Seconds(), 'f', -1, 64), "-W", "1"}
		if o.Count > 0 {
			// Not with -w: with a deadline, -c counts replies.
			args = append(args, "-c", strconv.Itoa(left))
		} else {
			args = append(args, "-w", strconv.Itoa(int(o.PingDeadline.Seconds())))
		}
		spec.args, spec.origin = append(args, j.pingDst), true
		spec.ready = func(string) bool { return true }
		spec.onStdout = func(l string) {
			tracker.line(l) // one reader goroutine per stream: no lock needed
			o.Sink.Line(s, []byte(l))
		}
		return startTracer(ctx, &output{}, spec, false)
	}
	spec.args, spec.sum = j.args(n.binaryPath(w.bin.SHA256)), w.bin.SHA256
	spec.ready = func(l string) bool { return l == "ready" || strings.HasPrefix(l, "ready ") }
	rt, err := startTracer(ctx, &output{}, spec, false)
	if err != nil {
		return nil, err
	}
	if err := rt.waitReady(ctx, o.ReadyTimeout); err != nil {
		return rt, err
	}
	return rt, nil
}

// exitErr describes how a job's program ended: nil for exit 0, and for
// ping's exit 1 too (some replies missing is data).
func exitErr(rt *running, ping bool) error {
	switch {
	case rt.err != nil:
		return rt.err
	case rt.code == 0, ping && rt.code == 1:
		return nil
	}
	return errors.New(rt.exitDescription(rt.code))
}
