package envfile

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/pingpath/pingpath/internal/inputfile"
)

// Defaults applied by Load when the file leaves a value out.
const (
	DefaultPingCount      = 20
	DefaultInterval       = "200ms"
	DefaultConnectTimeout = "10s"
	DefaultRemoteDir      = "/var/cache/pingpath"
	DefaultPython         = "python3"
)

// Error is one problem in an environment file, located by line and field
// path (for example "sender.vm.ip"). Its text is "file:line: field: message",
// the shape editors and terminals link to.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Load reads, parses, defaults and validates the environment file at path.
// A returned error is an Errors value (or wraps the read error) whose every
// entry names the file, line and field.
func Load(path string) (*Environment, error) {
	// Anything but a regular file (a device such as /dev/zero, a FIFO) or
	// a file over MaxFileSize is refused without blocking on it or reading it.
	data, err := inputfile.ReadAll(path, MaxFileSize, "1 MiB")
	if err != nil {
		return nil, fmt.Errorf("reading environment file %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already read; name is used in error messages.
func Parse(name string, data []byte) (*Environment, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{yamlError(name, err)}
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, Errors{{File: name, Line: 1, Msg: "empty environment file"}}
	}
	env := &Environment{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var decodeErrs Errors
	if err := dec.Decode(env); err != nil {
		// Type errors and unknown fields leave the rest decoded: it is
		// validated too, so that every problem is listed at once.
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, Errors{yamlError(name, err)}
		}
		decodeErrs = decodeErrors(name, &root, te)
	}
	pos := positions(root.Content[0])
	v := &validator{file: name, pos: pos}
	env.applyDefaults()
	v.check(env)
	if errs := merge(decodeErrs, v.errs); len(errs) > 0 {
		return nil, errs
	}
	return env, nil
}

// merge lists decode and validation errors in line order; a field that
// could not be decoded is not also reported as invalid.
func merge(decoded, validated Errors) Errors {
	out := append(Errors{}, decoded...)
	bad := map[string]bool{}
	for _, e := range decoded {
		bad[e.Field] = true
	}
	for _, e := range validated {
		if !bad[e.Field] {
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b *Error) int { return a.Line - b.Line })
	return out
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError turns a yaml.v3 syntax error into a located Error.
func yamlError(name string, err error) *Error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Msg: "malformed YAML: " + m[2]}
	}
	return &Error{File: name, Msg: "malformed YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

var unknownFieldRE = regexp.MustCompile(`^field (\S+) not found in type`)

// decodeErrors converts yaml.v3 type errors ("line 7: cannot unmarshal ...",
// "line 3: field foo not found in type ...") into located Errors, naming the
// field path found at that line of the document.
func decodeErrors(name string, root *yaml.Node, te *yaml.TypeError) Errors {
	lines := lineFields(root.Content[0])
	var out Errors
	for _, e := range te.Errors {
		m := yamlLineRE.FindStringSubmatch(e)
		if m == nil {
			out = append(out, &Error{File: name, Msg: e})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		if u := unknownFieldRE.FindStringSubmatch(msg); u != nil {
			msg = fmt.Sprintf("unknown field %q", u[1])
		} else {
			msg = strings.Replace(msg, "cannot unmarshal", "wrong type:", 1)
		}
		out = append(out, &Error{File: name, Line: line, Field: lines[line], Msg: msg})
	}
	return out
}

// positions maps each field path ("sender.vm.ip") of a mapping document to
// the line of its value (or of its key when the value is empty).
func positions(n *yaml.Node) map[string]int {
	pos := map[string]int{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind == yaml.SequenceNode {
			// List items are "field[N]" (pairs[0].sender.vm.ip).
			for i, item := range n.Content {
				p := fmt.Sprintf("%s[%d]", prefix, i)
				pos[p] = item.Line
				walk(p, item)
			}
			return
		}
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			pos[p] = k.Line
			walk(p, v)
		}
	}
	pos[""] = n.Line
	walk("", n)
	return pos
}

// lineFields is the inverse of positions: the field path whose key is on
// each line.
func lineFields(n *yaml.Node) map[int]string {
	out := map[int]string{}
	for p, l := range positions(n) {
		if old, ok := out[l]; !ok || len(p) > len(old) {
			out[l] = p
		}
	}
	return out
}

func (e *Environment) applyDefaults() {
	if e.Measurement.PingCount == 0 {
		e.Measurement.PingCount = DefaultPingCount
	}
	if e.Measurement.Interval == "" {
		e.Measurement.Interval = DefaultInterval
	}
	if e.Tools.Python == "" {
		e.Tools.Python = DefaultPython
	}
}
