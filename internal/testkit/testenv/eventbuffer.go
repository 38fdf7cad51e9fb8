package testenv

import "os"

// EventBuffer returns the event buffer a tracer test should force
// (PINGPATH_TEST_EVENT_BUFFER: auto|ringbuf|perf), "auto" by default. The
// kernel matrix's perf rung sets it to perf.
func EventBuffer() string {
	if b := os.Getenv("PINGPATH_TEST_EVENT_BUFFER"); b != "" {
		return b
	}
	return "auto"
}
