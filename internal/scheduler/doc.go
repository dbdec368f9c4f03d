// Package scheduler owns due times: the due-set engine that the token
// refresher and the job runner share, and (with the jobs issue) job
// definitions and schedule math.
//
// A due set is a sorted set of members (user ids) scored by the time they
// are next due, sharded into N sets by a hash of the member. An Engine
// claims due members in batches (a Lua script re-scores them to now+lease,
// tagged with a fence that every later write checks), runs a Handler for
// each on a bounded worker pool, renews the leases while the work runs
// (renewals leave the fence alone, so one whose outcome is unknown is
// harmless), and re-scores each member to the next due time the Handler
// returns. A replica that dies stops renewing; its claims come due again
// and another replica takes them. The package does not talk to Redis itself: it declares the
// Store it needs and internal/redisstore implements it.
package scheduler
