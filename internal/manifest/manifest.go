// Package manifest describes a run directory written by `pingpath run`:
// which nodes took part, what ran where, which files hold what, and how it
// ended. The analysis reads it to label files and to compare environments;
// it recognises tracer files by their content too, so a missing or partial
// manifest never hides collected data.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pingpath/pingpath/internal/inputfile"
	"github.com/pingpath/pingpath/internal/record"
	"github.com/pingpath/pingpath/internal/role"
)

// Schema names this version of the manifest.
const Schema = "pingpath.run/v1"

// FileName is the manifest's name inside a run directory.
const FileName = "manifest.json"

// Node roles (package role), as the manifest records them.
const (
	RoleSenderVM     = role.SenderVM
	RoleSenderHost   = role.SenderHost
	RoleReceiverHost = role.ReceiverHost
	RoleReceiverVM   = role.ReceiverVM
)

// Manifest is the content of DIR/manifest.json.
type Manifest struct {
	Schema      string    `json:"schema"`
	Environment string    `json:"environment"`
	Version     string    `json:"version"` // pingpath version of the controller
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	// Status is "complete", "partial" (a node or tracer was lost; the rest is
	// kept) or "failed".
	Status   string    `json:"status"`
	Nodes    []Node    `json:"nodes"`
	Ping     Ping      `json:"ping"`
	Timings  Timings   `json:"timings"`
	Failures []Failure `json:"failures,omitempty"`
	// Config is the environment file as given (secrets never included).
	ConfigFile string `json:"config_file,omitempty"`
	// Emulation, when set, says the machines were emulated (the KVM lab):
	// their timings are not production numbers. From the environment file.
	Emulation string `json:"emulation,omitempty"`
	// Lab describes the pingpath lab the run measured, from the
	// environment file; absent for real machines.
	Lab *Lab `json:"lab,omitempty"`
}

// Lab is the lab a run measured: its kind and wire settings.
type Lab struct {
	Kind       string  `json:"kind"` // "netns" (namespace lab) or "kvm" (KVM lab)
	VMLink     string  `json:"vm_link,omitempty"`
	Wire       string  `json:"wire,omitempty"`
	WireDelay  string  `json:"wire_delay,omitempty"`
	WireJitter string  `json:"wire_jitter,omitempty"`
	WireLoss   float64 `json:"wire_loss,omitempty"` // percent
}

// Node is one machine of the run.
type Node struct {
	Role string `json:"role"` // RoleSenderVM, ...
	SSH  string `json:"ssh"`  // destination as configured (alias or user@host)
	// Untraced: the environment file said no tracer may run on this VM
	// (by design, not a failure); the hosts' tracers bound its time.
	Untraced bool              `json:"untraced,omitempty"`
	Hostname string            `json:"hostname,omitempty"`
	Kernel   string            `json:"kernel,omitempty"`
	Arch     string            `json:"arch,omitempty"`
	Facts    map[string]string `json:"facts,omitempty"` // environment capture: cpu model, cstates, tuned profile, ...
	Tracers  []Tracer          `json:"tracers"`
}

// Tracer is one tracer process (pingpath's own or an origin script) on a node.
type Tracer struct {
	Tool     string   `json:"tool"` // record.ToolVM, ..., or the origin script name
	Origin   bool     `json:"origin,omitempty"`
	Command  []string `json:"command"`          // argv as run (already quoted per argument when sent)
	File     string   `json:"file"`             // output file, relative to the run directory
	Stderr   string   `json:"stderr,omitempty"` // stderr file, relative to the run directory
	Probes   []string `json:"probes,omitempty"` // "stage=method:target" as reported by the tracer header
	ReadyMS  int64    `json:"ready_ms,omitempty"`
	ExitCode *int     `json:"exit_code,omitempty"`
	// State is "ok", "failed", "lost", "not-started", or "detached": the
	// tracer stopped itself because it cost more than its --max-cpu.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Cost is what the tracer cost its machine, from its trailer.
	Cost *record.Cost `json:"cost,omitempty"`
}

// Ping describes the ping that was run on the sender VM.
type Ping struct {
	Command  []string `json:"command"`
	File     string   `json:"file"` // ping's own output, relative to the run directory
	Count    int      `json:"count"`
	Interval string   `json:"interval"`
	Sent     int      `json:"sent"`
	Received int      `json:"received"`
	ICMPID   int      `json:"icmp_id,omitempty"` // when known
}

// Timings records where the wall time of the run went.
type Timings struct {
	TotalMS   int64 `json:"total_ms"`
	ConnectMS int64 `json:"connect_ms,omitempty"` // SSH to every node, root check and facts
	PushMS    int64 `json:"push_ms"`              // the slowest node's push (it overlaps the other nodes' facts)
	StartMS   int64 `json:"start_ms"`             // tracers start → all ready
	PingMS    int64 `json:"ping_ms"`
	StopMS    int64 `json:"stop_ms"`
	AnalyzeMS int64 `json:"analyze_ms,omitempty"`
}

// Failure is something that went wrong, named by node and step.
type Failure struct {
	Node  string `json:"node,omitempty"`
	Step  string `json:"step"`
	Error string `json:"error"`
}

// Write stores m as DIR/manifest.json, atomically.
func Write(dir string, m *Manifest) error {
	m.Schema = Schema
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	// Written whole, synced and renamed into place: a manifest.json is
	// never half written, and no empty temporary file stays behind.
	p := filepath.Join(dir, FileName)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	_, err = f.Write(append(b, '\n'))
	err = errors.Join(err, f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// MaxSize bounds the manifest a reader accepts; a real one is a few KiB.
const MaxSize = 16 << 20

// Read loads DIR/manifest.json. A manifest that is not a regular file (a
// FIFO, a device) or is larger than MaxSize is refused without blocking on
// it or reading it whole.
func Read(dir string) (*Manifest, error) {
	p := filepath.Join(dir, FileName)
	b, err := inputfile.ReadAll(p, MaxSize, "16 MiB")
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	m := &Manifest{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if m.Schema != Schema {
		return nil, fmt.Errorf("reading %s: unsupported schema %q", p, m.Schema)
	}
	return m, nil
}
