// Package scheduler owns due times: the due-set engine that the token
// refresher and the job runner share, the schedule math of jobs (Timing:
// cron slots in a zone, a stable per-member spread, the missed-run
// policies) and the shard a member's entry lives in (Shard).
//
// A due set is a sorted set of members (user ids) scored by the time they
// are next due, sharded into N sets by a hash of the member. An Engine[P, W]
// claims due members in batches (a Lua script re-scores them to a lease,
// tagged with a fence that every later write checks), runs a Handler for
// each on a bounded worker pool, renews the leases while the work runs
// (renewals leave the fence alone, so one whose outcome is unknown is
// harmless), and re-scores each member to the next due time the Handler's
// Outcome gives. A replica that dies stops renewing; its claims come due
// again and another replica takes them.
//
// The engine is generic over what its users read and write around a claim.
// P is what Options.Prefetch reads for a whole claimed batch in one round
// trip: the engine keeps each value with its claim (member and fence) and
// hands it to that claim's handler, func(ctx, Due, P, bool) Outcome[W], or
// to TakePrefetched for work on the member that comes first; the bool says
// whether there is one. W is what an Outcome asks the store to write in the
// batch that finishes the claim (the job runner's run state; the refresher
// writes nothing: struct{}).
//
// It does not talk to Redis itself: it declares the Store[W] it needs
// (Claims plus FinishDue) and internal/redisstore implements it. It does
// not know what a member's work is (internal/refresher, internal/jobs) nor
// which jobs exist (config and internal/jobs).
package scheduler
