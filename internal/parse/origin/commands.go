package origin

import (
	"bytes"
	"io"
	"regexp"
	"strings"
)

// The origin workflow writes commands.log beside the tools' logs: per tool
// the command it ran ("CMD: ssh host 'sudo python3 /tmp/x.py --flag v'")
// and the log it wrote ("PID: n, LOG: file"). It is what tells, by
// content, which tool and which side a log belongs to when the log itself
// holds nothing but the tool's error.
var (
	reCmdLine = regexp.MustCompile(`^\s*CMD: (.*)$`)
	reCmdLog  = regexp.MustCompile(`^\s*PID: \d+, LOG: (\S+)`)
	reCmdArg  = regexp.MustCompile(`(?:^|\s)(--[a-z-]+)(?:[ =]('[^']*'|"[^"]*"|[^\s'"-][^\s'"]*))?`)
	reCmdPy   = regexp.MustCompile(`(\S*\.py)\b`)
)

// CommandsBanner starts the origin workflow's commands.log.
const CommandsBanner = "=== Measurement Commands Log ==="

// Commands is the origin workflow's commands.log.
type Commands struct {
	Tools []Command
}

// Command is one origin tool as the workflow started it.
type Command struct {
	Line   int    // of the CMD line
	Script string // "icmp_path_tracer.py"
	Format Format
	Log    string // the log file it wrote, relative to the directory
	// Flags as given ("--rx-iface" → "vnet35"; a flag without a value
	// maps to ""); a flow's fields are under "--flow" as written.
	Flags map[string]string
}

// Flag returns a flag's value and whether it was given.
func (c *Command) Flag(name string) (string, bool) {
	v, ok := c.Flags[name]
	return v, ok
}

// FlowSrc is the src= field of kvm_vhost_tun_latency's --flow.
func (c *Command) FlowSrc() string {
	for _, kv := range strings.Split(c.Flags["--flow"], ",") {
		if v, ok := strings.CutPrefix(kv, "src="); ok {
			return v
		}
	}
	return ""
}

// ReadCommands reads a commands.log. A CMD line that names no origin script
// is left out; a LOG line belongs to the CMD line before it.
func ReadCommands(r io.Reader, warn Warn) *Commands {
	c := &Commands{}
	var cur *Command
	Lines(r, warn, func(n int, line []byte) {
		if m := reCmdLine.FindSubmatch(line); m != nil {
			cur = nil
			cmd := string(m[1])
			py := reCmdPy.FindStringSubmatchIndex(cmd)
			if py == nil {
				return
			}
			script := cmd[py[2]:py[3]]
			if i := strings.LastIndexByte(script, '/'); i >= 0 {
				script = script[i+1:]
			}
			script = strings.Trim(script, `'"`)
			t := Command{Line: n, Script: script, Format: ScriptFormat(script), Flags: map[string]string{}}
			for _, a := range reCmdArg.FindAllStringSubmatch(cmd[py[3]:], -1) {
				t.Flags[a[1]] = strings.Trim(a[2], `'"`)
			}
			c.Tools = append(c.Tools, t)
			cur = &c.Tools[len(c.Tools)-1]
			return
		}
		if m := reCmdLog.FindSubmatch(line); m != nil && cur != nil {
			cur.Log = string(bytes.Trim(m[1], `'"`))
			cur = nil
		}
	})
	return c
}
