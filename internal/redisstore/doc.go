// Package redisstore owns every Redis key, Lua script and pipeline of
// syncd. Nothing else talks to Redis.
//
// # Keys
//
// Every key starts with the configured prefix P and is built in keys.go
// (TestKeys pins each one: changing a key string changes the layout of
// deployed databases). The slot column is what Redis Cluster hashes:
// {u:ID} keys hash on the user's tag, so a user's keys share a slot; a
// claims hash is in its due shard's slot; every other key hashes on its
// whole name (all keys on the prefix's tag when the prefix has one, such
// as "{syncd}:").
//
//	key                   type    slot      holds; written by
//	P{u:ID}:tok           hash    {u:ID}    the user's token record, the truth: v version, p provider,
//	                                        k key id, c sealed secrets, ae/re access/refresh expiry,
//	                                        s/sr/sa state, reason, since, ca created, lr last refresh,
//	                                        f failures, le last error, lo/lu/xl refresh lease id, end,
//	                                        taken over unreleased; Put, PutMany (token put, admin API,
//	                                        auth flow), Acquire, Commit, Fail, Flag, Release (refresher),
//	                                        Rekey (key rotation), SetState (operator)
//	P{u:ID}:quarantine    any     {u:ID}    a record that could not be read, renamed aside as it was;
//	                                        Quarantine, QuarantineMalformed (refresher, operator),
//	                                        Restore (renames it back), Put (deletes it)
//	P{u:ID}:jobs          hash    {u:ID}    per job JOB: JOB:lr last run, JOB:ls last success,
//	                                        JOB:cf failures, JOB:le last error, JOB:cur cursor,
//	                                        JOB:a:STREAMID outbox delivery attempts; FinishRuns
//	                                        (jobs.SavedRun), SaveCursor, Attempt, Delivered (job runner)
//	P{u:ID}:outbox        stream  {u:ID}    push items: data, mime_type, accounts, tags, id; apps (XADD),
//	                                        AppendOutbox (demo); entries removed by Delivered
//	P{u:ID}:dead          stream  {u:ID}    dead letters: the item's fields plus outbox_id, job, error,
//	                                        at; capped at about 10000; DeadLetter (job runner)
//	Pdue:SET:N            zset    own       due set SET ("refresh", "job:NAME"), shard N: member user
//	                                        id, score due time (unix ms) or, while claimed, the lease
//	                                        score carrying the claim's fence (claims.go); ScheduleDue,
//	                                        AddDue, RescoreDue, ClaimDue, RenewDue, FinishDue (refresher),
//	                                        FinishRuns (job runner), DropDue (engines, job runner),
//	                                        MigrateShards (move_in, move_out)
//	Pclaims:{Pdue:SET:N}  hash    due shard claims in flight in that shard: member -> due time (unix ms),
//	                                        plus a 1 KiB field "" (claim.lua); named Pdue:SET:N:claims
//	                                        when P has a hash tag; ClaimDue, FinishDue, FinishRuns,
//	                                        DropDue, MigrateShards (move_in, move_out)
//	Preauth               zset    own       re-auth queue, hints re-checked against the record: member
//	                                        user id, score flagged at (unix ms); Flag adds; Put,
//	                                        SetState, Quarantine, ReauthQueue remove; Restore re-adds
//	Pevents               stream  own       state transitions: user, from, to, reason, at; refusals
//	                                        (no from/to); capped at EventsMaxLen; Put, Commit, Fail,
//	                                        Flag, SetState, Quarantine, Restore, Note
//	Pauthstate:STATE      string  own       a sealed pending authorization, expiring; PutAuthState,
//	                                        TakeAuthState (auth flow)
//	Pquarantine           zset    own       quarantined users: member user id, score since (unix ms);
//	                                        Quarantine adds; Restore, Put remove
//	Pquarantine:reason    hash    own       quarantined user id -> why (malformed_record, wrong_type,
//	                                        undecryptable_record); as Pquarantine
//	Pshards               hash    own       the due sets' shard layout (layout), each replica's count
//	                                        (r:OWNER = COUNT:unix ms), counts that wrote since
//	                                        (dirty:N); AnnounceShards, WithdrawShards, MigrateShards
//	Pkeycheck             hash    own       key id -> check value of the key, never a key; AddKeyCheck
//	                                        (keyring)
//	Pjobdefs              hash    own       job name -> fingerprint of its schedule (detects edits);
//	                                        SetJobDef, DelJobDef (job runner, under Plock:jobdefs)
//	Pjobpaused            hash    own       job name -> "1" while an operator pauses it; SetPaused
//	Pjobstat:JOB:MINUTE   hash    own       ok, failed: the job's runs in that unix minute; expires
//	                                        after 2h; AddJobStats (job runner)
//	Plock:NAME            string  own       a short lock (jobdefs, stats): the owner, expiring; TryLock,
//	                                        Unlock
//	Pstats:users          hash    own       state -> number of users; SetStateCounts (daemon, under
//	                                        Plock:stats)
//	PSTREAM               stream  own       a redis sink's pulled items (STREAM from the job's sink
//	                                        config, default "pulled"), capped; SinkAdd (job runner)
//
// Every Lua script, MULTI and multi-key command touches one key or one
// slot: the shard migration moves a member between two shards (two
// slots) in two scripts, move_in and move_out (migrate.go says why no run
// is lost). SCAN walks run on every master of a cluster (scan.go).
// Shared indexes (due
// sets, the re-auth queue) are hints: they are written before the record
// when adding and after it when removing, and readers re-check the record,
// so a crash between two steps leaves a stale hint, never a lost user.
// Each script in lua/ (shared code in lua/lib/, prepended at load) has a
// direct test in lua_test.go, and TestEveryScriptIsTested keeps it so.
//
// It does not decide when anything is written or what a state means: the
// consumers do, and declare the interfaces *Store implements
// (refresher.Store, with scheduler.Store's FinishDue; jobs.Store, with
// FinishRuns; tokens.KeyCheckStore, authflow.Store, admin.Gauges).
package redisstore
