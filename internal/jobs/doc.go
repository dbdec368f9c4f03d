// Package jobs owns what a pull or a push does for one user, and runs
// every configured job for every eligible user on its schedule (Runner).
//
// Each job has a due set ("job:NAME") served by its own
// scheduler.Engine[Loaded, *SavedRun], the engine the token refresher
// uses too. A claimed batch's records and job states are read in one round
// trip (LoadManyForRun, a Loaded per claim); the engine hands each to its
// run. A run gets a token through its TokenSources (the refresher:
// refreshed first if it would expire within the job's timeout; a 401
// refreshes once and retries once), calls the provider under a
// per-provider rate limit and concurrency limit, delivers pulled items to
// the job's Sink (dir, webhook or redis; the cursor advances only past
// accepted items) or drains the user's outbox (an item leaves only once
// the provider accepted it; after retry.attempts failures it moves to the
// dead-letter stream). Its outcome for the user's job state is a SavedRun,
// written by the store's FinishRuns in the batch that re-schedules the
// entry; how it ended (a Result) goes to Options.Observe. Users join a
// job's due set when their token is stored or enabled (UserChanged) and
// leave it when they need re-authorization or are disabled; a run that
// finds its user not runnable removes the entry (the due set is a hint,
// the record decides). Sync applies added, edited and removed job
// definitions; SetPaused and Trigger serve operators, Overview and
// UserJobs their views.
//
// It does not own token refresh (internal/refresher, behind
// TokenSources), claims, leases or schedule math (internal/scheduler),
// the providers' wire protocols (internal/provider/..., behind Provider),
// the webhook signature and retries (internal/webhook), or Redis: it
// declares the Store it needs and internal/redisstore implements it.
package jobs
