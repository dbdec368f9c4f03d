// Package bench measures syncd at scale; `syncd bench` runs it and
// docs/benchmarks.md keeps the figures. It seeds users with sealed tokens
// into a Redis (a private redis-server it starts, or one given by URL,
// under a random key prefix it deletes afterwards), runs the real engines
// in this process (the refresher, the job runner, the scheduling and
// re-scoring of a job's users) against an in-process provider whose calls
// take Options.Latency (none by default), and reports throughput, CPU and
// Redis round trips per job and per refresh, scheduling time, memory
// (peak RSS, Redis bytes per user) and due-to-start lag under a set load.
// Options.Until stops after one stage, for profiling it alone.
//
// It does not check correctness (the tests do) and never talks to a real
// provider: its figures are syncd's and Redis's.
package bench
