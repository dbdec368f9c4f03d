// Package faulttest holds syncd's fault-scenario tests (issue 11); it has
// no code of its own outside its tests.
//
// Each test runs several in-process replicas, each with its own Redis
// client, refresher and job runner wired as `syncd run` wires them,
// against one private redis-server (internal/redistest) and one strict
// rotating provider (internal/provider/fake: every refresh rotates the
// refresh token, and a rotated one presented again is counted as reuse).
// It then injects one fault and checks what users would see:
//
//   - a fleet restart after a gap longer than the refresh lead, with job
//     slots due at the same time;
//   - Redis stalled (CLIENT PAUSE) for longer than the lease, the client
//     read timeout and the heartbeat, with refreshes and runs in flight;
//   - a job that needs a fresh token while its own process's refresher
//     holds the user's claim;
//   - a replica killed (kill -9) while it holds leases mid-batch;
//   - Redis killed (SIGKILL) and restarted from its append-only file, and
//     stalled again, with refreshes and runs in flight.
//
// Every scenario asserts the same figures: no refresh token presented
// twice (the provider's reuse counter), no user flagged for
// re-authorization, every user refreshed exactly as often as expected, no
// job slot run twice and none lost beyond what the missed-run policy
// documents. It logs them on one line.
//
// It does not cover the losses no client can prevent: a replica killed
// after its refresh request reached the provider, or an answer lost on
// the network (internal/refresher covers those, and what a provider's
// rotation grace period buys). Nor does it test the providers' wire
// protocols (internal/provider/...) or the engine's own unit behaviour
// (internal/scheduler).
package faulttest
