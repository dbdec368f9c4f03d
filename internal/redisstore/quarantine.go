package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/tokens"
)

// A token key of the wrong type (a string, a list... where a hash
// belongs) makes Redis answer WRONGTYPE to every hash command and every
// script that touches it. Such a key is a malformed record like a hash
// with a bad field: the readers below turn WRONGTYPE into
// tokens.ErrMalformedRecord for that user only, so one damaged key never
// fails a batch, a walk or a listing, and the refresher quarantines it as
// it quarantines any malformed record.

// wrongType reports whether err is Redis' WRONGTYPE answer.
func wrongType(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "WRONGTYPE")
}

// recordErr turns a WRONGTYPE answer about user's record into a malformed
// record error (naming the problem, never a value); other errors are
// returned as they are.
func recordErr(user string, err error) error {
	if wrongType(err) {
		return fmt.Errorf("user %q: token key is not a hash: %w", user, tokens.ErrMalformedRecord)
	}
	return err
}

// otherErr returns the first error of a pipeline's commands that is not
// WRONGTYPE: a lost connection fails every command; a damaged key fails
// only its own, which the caller handles per user.
func otherErr[C redis.Cmder](cmds []C) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && err != redis.Nil && !wrongType(err) {
			return err
		}
	}
	return nil
}

// refFields are the record fields a walk reads (HMGET): the state and
// provider it needs, and the small required fields that tell a record
// from a damaged hash without reading the sealed secrets.
var refFields = []string{"s", "p", "v", "k", "ae"}

// refOf turns an HMGET of refFields into a user ref. gone: the key does
// not exist (deleted since it was listed); bad: a required field is
// missing or bad, with the same rules as parseRecord (which also checks
// the ciphertext, read only when the record is used).
func refOf(user string, v []any) (ref tokens.UserRef, gone, bad bool) {
	str := func(i int) (string, bool) { s, ok := v[i].(string); return s, ok }
	st, hasS := str(0)
	prov, hasP := str(1)
	ver, hasV := str(2)
	kid, hasK := str(3)
	ae, hasAE := str(4)
	if !hasS && !hasP && !hasV && !hasK && !hasAE {
		return ref, true, false
	}
	state, err := tokens.ParseState(st)
	if err != nil || kid == "" {
		return ref, false, true
	}
	if n, err := strconv.ParseInt(ver, 10, 64); err != nil || n < 1 {
		return ref, false, true
	}
	if n, err := strconv.ParseInt(ae, 10, 64); err != nil || n < 0 {
		return ref, false, true
	}
	return tokens.UserRef{UserID: user, State: state, Provider: prov}, false, false
}

var (
	quarantineScript = script("quarantine")
	restoreScript    = script("restore")
)

// ReasonWrongType is recorded for a token key that is not a hash,
// whatever reason the caller gave.
const ReasonWrongType = "wrong_type"

// Quarantine implements tokens.Store: the record is renamed within its
// slot (whatever its type), listed in the quarantine set with reason,
// and leaves the re-auth queue; due-set entries leave at their next
// claim, which finds no record. Nothing happens when there is no record
// (another replica quarantined it first).
func (s *Store) Quarantine(ctx context.Context, user, reason string, now time.Time) error {
	_, err := s.quarantine(ctx, user, "", "", reason, now)
	return err
}

// QuarantineMalformed implements tokens.Store: it re-reads user's record
// and quarantines it only if it is still malformed (not a hash, or a
// required field missing or bad) and unchanged since that read, so a
// record repaired or rewritten meanwhile (a token stored) is never moved.
// It reports whether it moved the record.
func (s *Store) QuarantineMalformed(ctx context.Context, user string, now time.Time) (bool, error) {
	var typ *redis.StatusCmd
	var all *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		typ = p.Type(ctx, s.tokenKey(user))
		all = p.HGetAll(ctx, s.tokenKey(user))
		return nil
	})
	if err != nil && (typ.Err() != nil || !wrongType(all.Err())) {
		return false, fmt.Errorf("quarantine: %w", err)
	}
	version, reason := "", "malformed_record"
	switch typ.Val() {
	case "none":
		return false, nil
	case "hash":
		if _, err := parseRecord(user, all.Val()); err == nil {
			return false, nil
		}
		version = all.Val()["v"]
	default:
		reason = ReasonWrongType
	}
	return s.quarantine(ctx, user, typ.Val(), version, reason, now)
}

// quarantine runs the quarantine script (see lua/quarantine.lua) and
// records what it moved.
func (s *Store) quarantine(ctx context.Context, user, typ, version, reason string, now time.Time) (bool, error) {
	moved, err := quarantineScript.Run(ctx, s.rdb, []string{s.tokenKey(user), s.quarantineKey(user)}, typ, version).Text()
	if err != nil {
		return false, fmt.Errorf("quarantine: %w", err)
	}
	if moved == "" || moved == "none" {
		return false, nil
	}
	if moved != "hash" {
		reason = ReasonWrongType
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, s.quarantineSet(), redis.Z{Score: float64(ms(now)), Member: user})
		p.HSet(ctx, s.quarantineReasons(), user, reason)
		p.ZRem(ctx, s.reauthKey(), user)
		s.addEvent(ctx, p, &tokens.Transition{UserID: user, To: tokens.Quarantined, Reason: reason, At: now})
		return nil
	})
	if err != nil {
		return true, fmt.Errorf("quarantine: %w", err)
	}
	return true, nil
}

// Quarantined lists quarantined users.
func (s *Store) Quarantined(ctx context.Context) ([]string, error) {
	return s.rdb.ZRange(ctx, s.quarantineSet(), 0, -1).Result()
}

// QuarantineList lists quarantined users, oldest first, with why and
// since when. It never reads the records themselves.
func (s *Store) QuarantineList(ctx context.Context) ([]tokens.QuarantineEntry, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, s.quarantineSet(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("quarantine list: %w", err)
	}
	out := make([]tokens.QuarantineEntry, len(zs))
	if len(zs) == 0 {
		return out, nil
	}
	users := make([]string, len(zs))
	for i, z := range zs {
		users[i] = z.Member.(string)
	}
	reasons, err := s.rdb.HMGet(ctx, s.quarantineReasons(), users...).Result()
	if err != nil {
		return nil, fmt.Errorf("quarantine list: %w", err)
	}
	for i, z := range zs {
		reason, _ := reasons[i].(string)
		out[i] = tokens.QuarantineEntry{UserID: users[i], Reason: reason, Since: fromMS(int64(z.Score))}
	}
	return out, nil
}

// QuarantineCount is how many users are quarantined (the
// syncd_records_quarantined gauge).
func (s *Store) QuarantineCount(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.quarantineSet()).Result()
	if err != nil {
		return 0, fmt.Errorf("quarantine count: %w", err)
	}
	return n, nil
}

// QuarantinedRecord implements tokens.Store: the quarantined copy of
// user's record, parsed as a live one would be. tokens.ErrNotQuarantined
// when there is none; a malformed record error naming the problem when it
// still does not parse.
func (s *Store) QuarantinedRecord(ctx context.Context, user string) (tokens.Record, error) {
	var typ *redis.StatusCmd
	var all *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		typ = p.Type(ctx, s.quarantineKey(user))
		all = p.HGetAll(ctx, s.quarantineKey(user))
		return nil
	})
	if err != nil && (typ.Err() != nil || !wrongType(all.Err())) {
		return tokens.Record{}, fmt.Errorf("quarantined record: %w", err)
	}
	switch typ.Val() {
	case "none":
		return tokens.Record{}, fmt.Errorf("user %q: %w", user, tokens.ErrNotQuarantined)
	case "hash":
		return parseRecord(user, all.Val())
	default:
		return tokens.Record{}, fmt.Errorf("user %q: quarantined key is a %s, not a hash: %w", user, typ.Val(), tokens.ErrMalformedRecord)
	}
}

// Restore implements tokens.Store: the quarantined copy, unchanged since
// rec was read from it (same version), becomes the user's record again,
// without its old refresh lease; it leaves the quarantine listing, and a
// user who was waiting for re-authorization re-enters the re-auth queue.
// It never overwrites a live record (tokens.ErrLiveRecord). The caller
// schedules the user.
func (s *Store) Restore(ctx context.Context, rec tokens.Record, now time.Time) (*tokens.Transition, error) {
	user := rec.UserID
	n, err := restoreScript.Run(ctx, s.rdb, []string{s.quarantineKey(user), s.tokenKey(user)}, rec.Version).Int64()
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	switch n {
	case -1:
		return nil, fmt.Errorf("user %q: %w", user, tokens.ErrLiveRecord)
	case -2:
		return nil, fmt.Errorf("user %q: the quarantined record changed while it was checked; try again", user)
	case 0:
		return nil, fmt.Errorf("user %q: %w", user, tokens.ErrNotQuarantined)
	}
	tr := &tokens.Transition{UserID: user, From: tokens.Quarantined, To: rec.State, Reason: tokens.ReasonRestored, At: now}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.quarantineSet(), user)
		p.HDel(ctx, s.quarantineReasons(), user)
		if rec.State == tokens.ReauthRequired {
			since := rec.StateAt
			if since.IsZero() {
				since = now
			}
			p.ZAddNX(ctx, s.reauthKey(), redis.Z{Score: float64(ms(since)), Member: user})
		}
		s.addEvent(ctx, p, tr)
		return nil
	})
	if err != nil {
		return tr, fmt.Errorf("restore: %w", err)
	}
	return tr, nil
}

// forgetQuarantine drops user's quarantined copy and listing: a token
// stored for the user supersedes whatever was set aside.
func (s *Store) forgetQuarantine(ctx context.Context, p redis.Pipeliner, user string) {
	p.ZRem(ctx, s.quarantineSet(), user)
	p.HDel(ctx, s.quarantineReasons(), user)
	p.Unlink(ctx, s.quarantineKey(user))
}
