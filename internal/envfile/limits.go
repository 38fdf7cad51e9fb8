package envfile

import (
	"fmt"
	"time"
)

// Bounds of the numbers a measurement takes. The environment file and the
// command-line flags that override it (pingpath run --count, --interval,
// --ready-timeout) check the same ones, so a value is accepted or refused
// the same way wherever it comes from.
const (
	MinPingCount, MaxPingCount       = 1, 1_000_000
	MinInterval, MaxInterval         = time.Millisecond, time.Minute
	MinDuration, MaxDuration         = time.Second, 24 * time.Hour // measurement.duration
	MinReadyTimeout, MaxReadyTimeout = time.Second, time.Hour      // BCC compiling under TCG took over 15 min
	// MaxRunLength bounds ping count × interval.
	MaxRunLength = 24 * time.Hour
	// MaxFileSize bounds an environment file.
	MaxFileSize = 1 << 20
)

func inRange[T int | time.Duration](v, lo, hi T) error {
	if v < lo || v > hi {
		return fmt.Errorf("%v is out of range %v..%v", v, lo, hi)
	}
	return nil
}

// CheckPingCount checks a number of pings.
func CheckPingCount(n int) error { return inRange(n, MinPingCount, MaxPingCount) }

// CheckInterval checks the time between two pings.
func CheckInterval(d time.Duration) error { return inRange(d, MinInterval, MaxInterval) }

// CheckDuration checks measurement.duration.
func CheckDuration(d time.Duration) error { return inRange(d, MinDuration, MaxDuration) }

// CheckReadyTimeout checks how long a tracer may take to become ready.
func CheckReadyTimeout(d time.Duration) error { return inRange(d, MinReadyTimeout, MaxReadyTimeout) }

func checkConnectTimeout(d time.Duration) error {
	return inRange(d, 100*time.Millisecond, 10*time.Minute)
}

// CheckRunLength checks that count pings every interval (each already
// within its own bounds, so the product cannot overflow) end within
// MaxRunLength.
func CheckRunLength(count int, interval time.Duration) error {
	if d := time.Duration(count) * interval; d > MaxRunLength {
		return fmt.Errorf("%d pings every %s take %s, more than %s", count, interval, d, MaxRunLength)
	}
	return nil
}
