package analyze

import (
	"math"
	"slices"
	"sort"
)

// Stats summarises one series in microseconds. A series with no values has
// N == 0 and every other field 0.
type Stats struct {
	N      int     `json:"n"`
	Mean   float64 `json:"mean_us"`
	Stddev float64 `json:"stddev_us"`
	Min    float64 `json:"min_us"`
	P50    float64 `json:"p50_us"`
	P90    float64 `json:"p90_us"`
	P99    float64 `json:"p99_us"`
	Max    float64 `json:"max_us"`
}

// Summarize computes Stats over values given in ns. Percentiles use linear
// interpolation between closest ranks (the same definition as numpy's
// default), so p50 of an even count is the mean of the two middle values.
func Summarize(ns []int64) Stats {
	if len(ns) == 0 {
		return Stats{}
	}
	v := make([]float64, len(ns))
	for i, x := range ns {
		v[i] = float64(x) / 1000
	}
	return SummarizeUS(v)
}

// SummarizeUS computes Stats over values already in µs; v is sorted in place.
func SummarizeUS(v []float64) Stats {
	if len(v) == 0 {
		return Stats{}
	}
	sort.Float64s(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	mean := sum / float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	sd := 0.0
	if len(v) > 1 {
		sd = math.Sqrt(ss / float64(len(v)-1))
	}
	return Stats{N: len(v), Mean: round3(mean), Stddev: round3(sd), Min: round3(v[0]),
		P50: round3(quantile(v, 0.50)), P90: round3(quantile(v, 0.90)), P99: round3(quantile(v, 0.99)),
		Max: round3(v[len(v)-1])}
}

// quantile of sorted values with linear interpolation.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pos := q * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	if lo == hi {
		return sorted[lo]
	}
	return sorted[lo] + (sorted[hi]-sorted[lo])*(pos-float64(lo))
}

// round3 keeps nanosecond resolution of µs values and removes float noise.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// MannWhitney returns the two-sided p-value of the Mann–Whitney U test
// (normal approximation with tie correction and continuity correction).
// It returns NaN when either sample is empty or all values are equal.
// a and b are not modified.
func MannWhitney(a, b []float64) float64 {
	return mannWhitneySorted(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// mannWhitneySorted is MannWhitney over ascending samples: the ranks come
// from merging the two, without sorting them again.
func mannWhitneySorted(a, b []float64) float64 {
	n1, n2 := len(a), len(b)
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	n := float64(n1 + n2)
	var r1, tieSum float64
	for i, k := 0, 0; i < n1 || k < n2; {
		ia, kb := i, k
		var x float64
		// Take the smaller head (always advancing, even past a NaN), then
		// every value equal to it from both samples.
		if k == n2 || (i < n1 && a[i] <= b[k]) {
			x = a[i]
			i++
		} else {
			x = b[k]
			k++
		}
		for i < n1 && a[i] == x {
			i++
		}
		for k < n2 && b[k] == x {
			k++
		}
		// The tie group holds ranks ia+kb+1 .. i+k; each gets their average.
		rank := float64(ia+kb+i+k+1) / 2
		t := float64(i + k - ia - kb)
		tieSum += t*t*t - t
		for range i - ia {
			r1 += rank
		}
	}
	u1 := r1 - float64(n1)*float64(n1+1)/2
	mu := float64(n1) * float64(n2) / 2
	sigma2 := float64(n1) * float64(n2) / 12 * ((n + 1) - tieSum/(n*(n-1)))
	if n < 2 || sigma2 <= 0 {
		return math.NaN()
	}
	z := math.Abs(u1-mu) - 0.5
	if z < 0 {
		z = 0
	}
	z /= math.Sqrt(sigma2)
	return math.Erfc(z / math.Sqrt2)
}
