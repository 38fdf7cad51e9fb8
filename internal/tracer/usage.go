package tracer

import "fmt"

// UsageError is an error in what a tracer was told (a flag value, a device
// that is not there), as opposed to a failure of the machine it runs on (a
// netlink or BPF error). The command line exits 2 for the first, 1 for the
// second.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage returns a UsageError with the formatted message.
func Usage(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}
