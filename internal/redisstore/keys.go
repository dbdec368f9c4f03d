package redisstore

import (
	"strconv"
	"strings"
)

// Every Redis key syncd uses is built (and, for SCAN, matched and parsed)
// here and nowhere else; the table in doc.go describes each, in the same
// order, and TestKeys pins every builder's output: a change to a key
// string is a change to the Redis layout of deployed databases.

// ---- per user: hash tag {u:ID}, one cluster slot per user ----

func (s *Store) tokenKey(user string) string      { return s.prefix + "{u:" + user + "}:tok" }
func (s *Store) quarantineKey(user string) string { return s.prefix + "{u:" + user + "}:quarantine" }
func (s *Store) jobsKey(user string) string       { return s.prefix + "{u:" + user + "}:jobs" }
func (s *Store) outboxKey(user string) string     { return s.prefix + "{u:" + user + "}:outbox" }
func (s *Store) deadKey(user string) string       { return s.prefix + "{u:" + user + "}:dead" }

// tokenPattern matches every token record key (SCAN MATCH).
func (s *Store) tokenPattern() string {
	return globEscape(s.prefix) + "{u:*}:tok"
}

// userOfTokenKey returns the user id in a token record key.
func (s *Store) userOfTokenKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, s.prefix+"{u:")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}:tok")
}

// ---- due sets and their claims ----

func (s *Store) dueKey(set string, shard int) string {
	return s.prefix + "due:" + set + ":" + strconv.Itoa(shard)
}

// duePattern matches every due-set shard key, of any set and shard
// number (SCAN MATCH).
func (s *Store) duePattern() string { return globEscape(s.prefix) + "due:*" }

// parseDueKey splits a dueKey into its set and shard number.
func (s *Store) parseDueKey(key string) (set string, shard int, ok bool) {
	rest, ok := strings.CutPrefix(key, s.prefix+"due:")
	if !ok {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, ':')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(rest[i+1:])
	if err != nil || n < 0 || strconv.Itoa(n) != rest[i+1:] {
		return "", 0, false
	}
	return rest[:i], n, true
}

// claimsKey is the claims hash of a due-set shard: under the prefix, like
// every key, and in the shard's cluster slot, so one script may use both.
func (s *Store) claimsKey(set string, shard int) string {
	return claimsKeyOf(s.prefix, s.dueKey(set, shard))
}

// claimsKeyOf names the claims hash of due key due under prefix: due's
// own name plus a suffix when it has a hash tag (the prefix's, which every
// key shares), else due wrapped in one. (A key with braces but no hash
// tag cannot be wrapped; it gets the suffix, which standalone Redis does
// not mind.)
func claimsKeyOf(prefix, due string) string {
	if hasHashTag(due) || strings.ContainsAny(due, "{}") {
		return due + ":claims"
	}
	return prefix + "claims:{" + due + "}"
}

// hasHashTag reports whether Redis Cluster hashes only part of key: a "{"
// followed, later, by a "}" with something between.
func hasHashTag(key string) bool {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(key[i+1:], '}')
	return j > 0
}

// ---- shared: one key each ----

func (s *Store) reauthKey() string                { return s.prefix + "reauth" }
func (s *Store) eventsKey() string                { return s.prefix + "events" }
func (s *Store) authStateKey(state string) string { return s.prefix + "authstate:" + state }
func (s *Store) quarantineSet() string            { return s.prefix + "quarantine" }
func (s *Store) quarantineReasons() string        { return s.prefix + "quarantine:reason" }
func (s *Store) shardsKey() string                { return s.prefix + "shards" }
func (s *Store) keyCheckKey() string              { return s.prefix + "keycheck" }

// ---- job bookkeeping ----

func (s *Store) jobDefsKey() string   { return s.prefix + "jobdefs" }
func (s *Store) jobPausedKey() string { return s.prefix + "jobpaused" }

func (s *Store) jobStatKey(job string, minute int64) string {
	return s.prefix + "jobstat:" + job + ":" + strconv.FormatInt(minute, 10)
}

func (s *Store) lockKey(name string) string { return s.prefix + "lock:" + name }
func (s *Store) userStatsKey() string       { return s.prefix + "stats:users" }

// sinkKey is a redis sink's stream; its name comes from the job's config.
func (s *Store) sinkKey(stream string) string { return s.prefix + stream }

// globEscape escapes s for a SCAN MATCH pattern.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
