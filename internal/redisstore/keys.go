package redisstore

import (
	"strconv"
	"strings"
)

func (s *Store) tokenKey(user string) string {
	return s.prefix + "{u:" + user + "}:tok"
}

func (s *Store) quarantineKey(user string) string {
	return s.prefix + "{u:" + user + "}:quarantine"
}

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

func (s *Store) dueKey(set string, shard int) string {
	return s.prefix + "due:" + set + ":" + strconv.Itoa(shard)
}

func (s *Store) reauthKey() string     { return s.prefix + "reauth" }
func (s *Store) eventsKey() string     { return s.prefix + "events" }
func (s *Store) quarantineSet() string { return s.prefix + "quarantine" }
func (s *Store) keyCheckKey() string   { return s.prefix + "keycheck" }

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
