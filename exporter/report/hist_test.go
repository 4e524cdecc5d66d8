package report

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistQuantileWithinStatedError(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	h := newHist(fineSub)
	var vals []float64
	for range 20000 {
		v := math.Exp(r.NormFloat64()*3 - 3) // spans nanoseconds to hours
		vals = append(vals, v)
		h.add(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.quantile(q)
		if rel := math.Abs(got-exact) / exact; rel > 1.0/(2*fineSub) {
			t.Errorf("q%v: got %v, exact %v, relative error %v over %v", q, got, exact, rel, 1.0/(2*fineSub))
		}
	}
	if h.quantile(1) != vals[len(vals)-1] || h.min != vals[0] {
		t.Error("max and min must be exact")
	}
}

func TestHistMergeEqualsCombined(t *testing.T) {
	a, b, all := newHist(coarseSub), newHist(coarseSub), newHist(coarseSub)
	for i := range 1000 {
		v := float64(i) * 1e-3
		all.add(v)
		if i%3 == 0 {
			a.add(v)
		} else {
			b.add(v)
		}
	}
	a.merge(b)
	for _, q := range []float64{0.1, 0.5, 0.99} {
		if a.quantile(q) != all.quantile(q) {
			t.Errorf("q%v: merged %v, combined %v", q, a.quantile(q), all.quantile(q))
		}
	}
	if a.count != all.count || a.zero != 1 {
		t.Errorf("count %d zero %d", a.count, a.zero)
	}
}

func TestHistExtremes(t *testing.T) {
	h := newHist(fineSub)
	for _, v := range []float64{0, -1, 1e-300, 1e-9, 3600 * 24 * 3, 1e300, math.NaN()} {
		h.add(v)
	}
	if h.count != 6 || h.quantile(1) != 1e300 || h.quantile(0.01) != 0 || h.min != -1 {
		t.Errorf("count %d max %v min %v", h.count, h.quantile(1), h.quantile(0.01))
	}
	if math.IsNaN(newHist(fineSub).quantile(0.5)) == false {
		t.Error("empty histogram must have no quantile")
	}
}
