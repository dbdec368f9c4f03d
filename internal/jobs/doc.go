// Package jobs owns what a pull or a push does for one user, and runs
// every configured job for every eligible user on its schedule.
//
// Each job has a due set ("job:NAME") served by a scheduler.Engine, the
// same engine the token refresher uses. A run gets a token through the
// refresher (refreshed first if it would expire within the job's timeout;
// a 401 refreshes once and retries once), calls the provider under a
// per-provider rate limit and concurrency limit, delivers pulled items to
// the job's sink (the cursor advances only past accepted items) or drains
// the user's outbox (an item leaves only once the provider accepted it;
// after retry.attempts failures it moves to the dead-letter stream), and
// records the outcome per (job, user). Users join a job's due set when
// their token is stored or enabled and leave it when they need
// re-authorization or are disabled; a run that finds its user not
// runnable removes the entry (the due set is a hint, the record decides).
package jobs
