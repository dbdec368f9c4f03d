package provider

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// ParseRetryAfter reads a Retry-After header (RFC 9110 §10.2.3): either
// delay-seconds (digits only; too many to hold saturate at the longest
// Duration) or an HTTP-date, a date in the past meaning no wait. ok is
// false when the header is absent or malformed (a sign, a fraction,
// anything else), so callers can tell "retry now" ("0") from "no hint".
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if strings.Trim(v, "0123456789") == "" {
		const limit = math.MaxInt64 / int64(time.Second)
		var n int64
		for i := 0; i < len(v); i++ {
			if n = n*10 + int64(v[i]-'0'); n > limit {
				return time.Duration(math.MaxInt64), true
			}
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
