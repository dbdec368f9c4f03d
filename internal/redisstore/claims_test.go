package redisstore

import "testing"

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
