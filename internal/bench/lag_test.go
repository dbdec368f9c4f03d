package bench

import (
	"math"
	"testing"
)

func TestLagHistQuantiles(t *testing.T) {
	var h lagHist
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram")
	}
	// 1ms, 2ms, ..., 1000ms: p50 = 500ms, p99 = 990ms, within a bucket (1%).
	for i := 1; i <= 1000; i++ {
		h.add(float64(i) / 1000)
	}
	for _, tc := range []struct{ q, want float64 }{{0.5, 0.5}, {0.99, 0.99}, {1, 1}} {
		if got := h.quantile(tc.q); math.Abs(got-tc.want)/tc.want > 0.011 {
			t.Errorf("quantile(%v) = %v, want %v within 1%%", tc.q, got, tc.want)
		}
	}
	h.add(-1)  // clock skew: the lowest bucket
	h.add(1e9) // beyond the range: the highest
	if got := h.quantile(1); got < 1e4 {
		t.Errorf("max = %v", got)
	}
}
