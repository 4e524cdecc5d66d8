package report

import (
	"math"
)

// hist is a log-linear histogram of non-negative seconds: each power of two is split into sub equal buckets, so
// a value is known to within a relative error of 1/(2*sub) of itself. Octaves are allocated on first use, which
// keeps an idle histogram small, and two histograms with the same resolution merge by adding counts.
type hist struct {
	sub      int
	octaves  [octaveCount][]uint64
	zero     uint64 // values at or below 2^minExp (including exact zeros and negatives)
	count    uint64
	sum      float64
	min, max float64
}

const (
	minExp      = -40 // 2^-40 s ≈ 0.9 ps: anything smaller is recorded as zero
	maxExp      = 41  // 2^41 s ≈ 70,000 years: anything larger is clamped into the top bucket
	octaveCount = maxExp - minExp

	fineSub   = 512 // relative error ≤ 1/1024 ≈ 0.1% (three significant digits)
	coarseSub = 16  // relative error ≤ 1/32 ≈ 3.1%, for the per-time-bucket charts
)

func newHist(sub int) *hist { return &hist{sub: sub} }

func (h *hist) add(v float64) {
	if math.IsNaN(v) {
		return
	}
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if h.count == 0 || v > h.max {
		h.max = v
	}
	h.count++
	h.sum += v
	frac, exp := math.Frexp(v) // v = frac * 2^exp, frac in [0.5, 1)
	if v <= 0 || exp <= minExp {
		h.zero++
		return
	}
	if exp > maxExp {
		exp, frac = maxExp, math.Nextafter(1, 0)
	}
	o := exp - minExp - 1
	if h.octaves[o] == nil {
		h.octaves[o] = make([]uint64, h.sub)
	}
	i := int((frac - 0.5) * 2 * float64(h.sub))
	if i >= h.sub {
		i = h.sub - 1
	}
	h.octaves[o][i]++
}

// merge adds o's counts into h; both must have the same resolution.
func (h *hist) merge(o *hist) {
	if o.count == 0 {
		return
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.count == 0 || o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
	h.zero += o.zero
	for i, src := range o.octaves {
		if src == nil {
			continue
		}
		if h.octaves[i] == nil {
			h.octaves[i] = make([]uint64, h.sub)
		}
		for j, c := range src {
			h.octaves[i][j] += c
		}
	}
}

// bucketMid is the midpoint of bucket j of octave o, the value a quantile falling in it is reported as.
func (h *hist) bucketMid(o, j int) float64 {
	lo := 0.5 + float64(j)/(2*float64(h.sub))
	return math.Ldexp(lo+1/(4*float64(h.sub)), o+minExp+1)
}

// quantile returns the value at rank ceil(q*count) (nearest rank), clamped to the exact min and max.
func (h *hist) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.count {
		return h.max
	}
	seen := h.zero
	if seen >= rank {
		return h.clamp(0)
	}
	for o, oct := range h.octaves {
		for j, c := range oct {
			seen += c
			if seen >= rank {
				return h.clamp(h.bucketMid(o, j))
			}
		}
	}
	return h.max
}

func (h *hist) clamp(v float64) float64 { return math.Min(math.Max(v, h.min), h.max) }

func (h *hist) mean() float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.sum / float64(h.count)
}

// logBins regroups the histogram into at most n bins of equal width on a log scale between min and max, for
// drawing. Each bin's count is exact up to the histogram's own resolution.
func (h *hist) logBins(n int) []Bin {
	if h.count == 0 {
		return nil
	}
	lo, hi := h.min, h.max
	if lo <= 0 {
		lo = math.Max(hi/1e6, 1e-9)
	}
	if hi <= lo {
		return []Bin{{Lower: h.min, Upper: h.max, Count: h.count}}
	}
	ll, lh := math.Log(lo), math.Log(hi)
	step := (lh - ll) / float64(n)
	bins := make([]Bin, n)
	for i := range bins {
		bins[i].Lower = math.Exp(ll + step*float64(i))
		bins[i].Upper = math.Exp(ll + step*float64(i+1))
	}
	place := func(v float64, c uint64) {
		i := 0
		if v > lo {
			i = int((math.Log(v) - ll) / step)
		}
		i = min(max(i, 0), n-1)
		bins[i].Count += c
	}
	place(0, h.zero)
	for o, oct := range h.octaves {
		for j, c := range oct {
			if c > 0 {
				place(h.bucketMid(o, j), c)
			}
		}
	}
	return bins
}
