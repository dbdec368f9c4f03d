package redisstore

import "testing"

// TestKeys pins every key builder's output: a key string that changes is
// a Redis layout that changes under deployed databases. Each key of the
// table in doc.go has a row here.
func TestKeys(t *testing.T) {
	s := New(nil, Options{Prefix: "syncd:", Shards: 4})
	for _, tc := range []struct{ name, got, want string }{
		{"tokenKey", s.tokenKey("alice"), "syncd:{u:alice}:tok"},
		{"quarantineKey", s.quarantineKey("alice"), "syncd:{u:alice}:quarantine"},
		{"jobsKey", s.jobsKey("alice"), "syncd:{u:alice}:jobs"},
		{"outboxKey", s.outboxKey("alice"), "syncd:{u:alice}:outbox"},
		{"OutboxKey", s.OutboxKey("alice"), "syncd:{u:alice}:outbox"},
		{"deadKey", s.deadKey("alice"), "syncd:{u:alice}:dead"},
		{"DeadKey", s.DeadKey("alice"), "syncd:{u:alice}:dead"},
		{"dueKey", s.dueKey("refresh", 3), "syncd:due:refresh:3"},
		{"dueKey job", s.dueKey("job:pull", 15), "syncd:due:job:pull:15"},
		{"claimsKey", s.claimsKey("job:pull", 3), "syncd:claims:{syncd:due:job:pull:3}"},
		{"reauthKey", s.reauthKey(), "syncd:reauth"},
		{"eventsKey", s.eventsKey(), "syncd:events"},
		{"authStateKey", s.authStateKey("st4te"), "syncd:authstate:st4te"},
		{"quarantineSet", s.quarantineSet(), "syncd:quarantine"},
		{"quarantineReasons", s.quarantineReasons(), "syncd:quarantine:reason"},
		{"shardsKey", s.shardsKey(), "syncd:shards"},
		{"keyCheckKey", s.keyCheckKey(), "syncd:keycheck"},
		{"jobDefsKey", s.jobDefsKey(), "syncd:jobdefs"},
		{"jobPausedKey", s.jobPausedKey(), "syncd:jobpaused"},
		{"jobStatKey", s.jobStatKey("pull", 29_000_000), "syncd:jobstat:pull:29000000"},
		{"lockKey", s.lockKey("jobdefs"), "syncd:lock:jobdefs"},
		{"userStatsKey", s.userStatsKey(), "syncd:stats:users"},
		{"sinkKey", s.sinkKey("pulled"), "syncd:pulled"},
		{"tokenPattern", s.tokenPattern(), "syncd:{u:*}:tok"},
		{"duePattern", s.duePattern(), "syncd:due:*"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

// TestKeyPatterns: SCAN patterns escape the prefix's glob characters, and
// the key parsers invert the builders.
func TestKeyPatterns(t *testing.T) {
	s := New(nil, Options{Prefix: "p*:", Shards: 4})
	if got, want := s.tokenPattern(), `p\*:{u:*}:tok`; got != want {
		t.Errorf("tokenPattern = %q, want %q", got, want)
	}
	if got, want := s.duePattern(), `p\*:due:*`; got != want {
		t.Errorf("duePattern = %q, want %q", got, want)
	}
	if u, ok := s.userOfTokenKey("p*:{u:a:b}:tok"); !ok || u != "a:b" {
		t.Errorf("userOfTokenKey: %q %v", u, ok)
	}
	for _, bad := range []string{"p*:{u:a}:jobs", "q:{u:a}:tok"} {
		if u, ok := s.userOfTokenKey(bad); ok {
			t.Errorf("userOfTokenKey(%q) = %q, want no user", bad, u)
		}
	}
	for _, tc := range []struct {
		key   string
		set   string
		shard int
		ok    bool
	}{
		{s.dueKey("job:pull", 12), "job:pull", 12, true},
		{s.dueKey("refresh", 0), "refresh", 0, true},
		{"p*:due:refresh:07", "", 0, false},
		{"p*:due:refresh:-1", "", 0, false},
		{"p*:due:3", "", 0, false},
		{"q:due:refresh:3", "", 0, false},
	} {
		set, shard, ok := s.parseDueKey(tc.key)
		if set != tc.set || shard != tc.shard || ok != tc.ok {
			t.Errorf("parseDueKey(%q) = %q %d %v, want %q %d %v", tc.key, set, shard, ok, tc.set, tc.shard, tc.ok)
		}
	}
}

// TestClaimsKey: a claims key starts with the prefix, like every key, and
// shares its due-set shard's cluster slot.
func TestClaimsKey(t *testing.T) {
	for _, tc := range []struct{ prefix, set, want string }{
		{"syncd:", "job:pull", "syncd:claims:{syncd:due:job:pull:3}"},
		{"{syncd}:", "refresh", "{syncd}:due:refresh:3:claims"},
		{"a{}b:", "x", "a{}b:due:x:3:claims"}, // an empty tag is no tag, and braces cannot be wrapped
		{"a}b:", "x", "a}b:due:x:3:claims"},
	} {
		s := &Store{prefix: tc.prefix}
		if got := s.claimsKey(tc.set, 3); got != tc.want {
			t.Errorf("claimsKey with prefix %q, set %q = %q, want %q", tc.prefix, tc.set, got, tc.want)
		}
	}
}
