package refresher

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/syncd/syncd/internal/tokens"
)

// Policy is how one provider's tokens are refreshed (config: providers[]).
type Policy struct {
	// Lead: refresh this long before the access token expires.
	Lead time.Duration
	// Jitter: a random extra lead in [0, Jitter) so tokens issued
	// together do not refresh together.
	Jitter time.Duration
	// DefaultLifetime is assumed for a token that states no expiry.
	DefaultLifetime time.Duration
	// Timeout bounds one refresh call.
	Timeout time.Duration
	// RetryInitial and RetryMax shape the transient-retry envelope:
	// attempt n waits a random time in [0, min(RetryMax, RetryInitial·2^(n-1))].
	RetryInitial, RetryMax time.Duration
	// RetryAfterCap bounds how long a provider's Retry-After is honoured.
	RetryAfterCap time.Duration
	// DegradedAfter consecutive transient failures mark a user degraded.
	DegradedAfter int
	// CircuitFailures consecutive failures (any user) open the circuit
	// for CircuitCooldown; then one probe decides.
	CircuitFailures int
	CircuitCooldown time.Duration
}

// DueAt is when rec should next be refreshed: Lead (plus jitter in
// [0, jitter)) before the access token expires, or before the refresh
// token lapses if that comes first and syncd has not refreshed since that
// window opened (a provider that never extends the refresh token would
// otherwise be refreshed in a loop).
func (p Policy) DueAt(rec tokens.Record, jitter time.Duration) time.Time {
	due := rec.AccessExpiry.Add(-p.Lead - jitter)
	if !rec.RefreshExpiry.IsZero() {
		rd := rec.RefreshExpiry.Add(-p.Lead - jitter)
		if rd.Before(due) && rec.LastRefresh.Before(rd) {
			due = rd
		}
	}
	return due
}

// isDue reports whether rec is due at now, counting the full jitter
// window (an entry scheduled with any jitter is due by then).
func (p Policy) isDue(rec tokens.Record, now time.Time) bool {
	return !p.DueAt(rec, p.Jitter).After(now)
}

func (p Policy) randomJitter() time.Duration {
	if p.Jitter <= 0 {
		return 0
	}
	return rand.N(p.Jitter)
}

// RetryEnvelope is the longest wait before transient attempt n (1-based):
// RetryInitial doubled per attempt, capped at RetryMax.
func (p Policy) RetryEnvelope(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := p.RetryInitial
	for i := 1; i < n && d < p.RetryMax; i++ {
		d *= 2
	}
	return min(d, p.RetryMax)
}

// RetryDelay is the wait before transient attempt n: full jitter inside
// the envelope, but never shorter than the provider's Retry-After (itself
// capped at RetryAfterCap).
func (p Policy) RetryDelay(n int, retryAfter time.Duration) time.Duration {
	d := rand.N(p.RetryEnvelope(n) + 1)
	if ra := min(retryAfter, p.RetryAfterCap); ra > d {
		d = ra
	}
	return d
}

// breaker is a provider's circuit: after threshold consecutive failures it
// opens for cooldown, then admits one probe whose outcome closes or
// re-opens it. Hand-written rather than sony/gobreaker because it must
// read the injected clock and tell callers when it will admit again, so
// the skipped users are rescheduled rather than spun.
type breaker struct {
	mu        sync.Mutex
	threshold int
	cooldown  time.Duration
	fails     int
	openUntil time.Time
	probing   bool
}

// allow reports whether a call may go ahead; if not, retry is when to ask
// again.
func (b *breaker) allow(now time.Time) (ok bool, retry time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.threshold <= 0 || b.fails < b.threshold {
		return true, time.Time{}
	}
	if now.Before(b.openUntil) {
		return false, b.openUntil
	}
	if b.probing {
		return false, now.Add(b.cooldown)
	}
	b.probing = true
	return true, time.Time{}
}

// success closes the circuit; it returns true if it was open.
func (b *breaker) success() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasOpen := b.threshold > 0 && b.fails >= b.threshold
	b.fails, b.probing = 0, false
	return wasOpen
}

// failure counts a failure; it returns true when the circuit (re)opened.
func (b *breaker) failure(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fails++
	wasProbe := b.probing
	b.probing = false
	if b.threshold > 0 && (b.fails == b.threshold || wasProbe) {
		b.openUntil = now.Add(b.cooldown)
		return true
	}
	return false
}
