// Package redisstore owns every Redis key, Lua script and pipeline of
// syncd. Nothing else talks to Redis.
//
// Keys (all under the configured prefix P):
//
//	P{u:ID}:tok          hash  the user's token record (the truth)
//	P{u:ID}:quarantine   hash  a record that could not be parsed, set aside
//	Pdue:SET:N           zset  due set SET, shard N: member = user id, score = due (unix ms)
//	Pclaims:{Pdue:SET:N} hash  claims in flight in that shard (see claims.go)
//	Preauth              zset  re-auth queue: member = user id, score = flagged at (unix ms)
//	Pquarantine          zset  quarantined users: member = user id, score = when
//	Pquarantine:reason   hash  quarantined user -> why
//	Pshards              hash  the due sets' shard layout and each replica's shard count
//	Pevents              stream state transitions: user, from, to, reason, at
//
// Per-user keys carry the hash tag {u:ID} so a user's keys share a cluster
// slot; every Lua script touches one key (or one slot), except the shard
// migration's move script, which touches two shards of one due set (on
// Redis Cluster they may sit in different slots). Shared indexes (due
// sets, the re-auth queue) are hints: they are written before the record
// when adding and after it when removing, and readers re-check the record,
// so a crash between two steps leaves a stale hint, never a lost user.
package redisstore
