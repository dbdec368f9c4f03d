// Package clock is the time source components read instead of time.Now:
// Real in production, and Fake in tests and benchmarks, which moves only
// when told (Advance, Set), so due times, leases, expiries and schedules
// can be tested without waiting for them.
//
// It owns reading the time only, not waiting: components that sleep or
// poll use real timers, so moving a Fake clock changes what is due, not
// how long a goroutine waits.
package clock
