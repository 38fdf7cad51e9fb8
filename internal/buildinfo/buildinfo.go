// Package buildinfo tells which pingpath build is running. Tracer headers and
// run manifests record it so that results can be tied to the code that made them.
package buildinfo

import "runtime/debug"

// Version is the release of pingpath. The VCS revision, when the binary was
// built from a checkout, is appended by String.
const Version = "0.1.0"

// String returns the version followed by the VCS revision (and "+dirty" for
// a modified tree) when the Go toolchain recorded them.
func String() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return Version
	}
	return Version + " (" + rev + dirty + ")"
}
