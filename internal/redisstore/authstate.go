package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ---- pending authorizations (authflow.Store) ----

// PutAuthState stores a sealed pending authorization under state for ttl,
// unless state is already taken (then false).
func (s *Store) PutAuthState(ctx context.Context, state string, blob []byte, ttl time.Duration) (bool, error) {
	err := s.rdb.SetArgs(ctx, s.authStateKey(state), blob, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store authorization state: %w", err)
	}
	return true, nil
}

// TakeAuthState reads and deletes the pending authorization under state
// in one transaction, so only one caller ever gets it; it returns nil when
// there is none, and the time it had left to live.
func (s *Store) TakeAuthState(ctx context.Context, state string) ([]byte, time.Duration, error) {
	key := s.authStateKey(state)
	var ttl *redis.DurationCmd
	var get *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		ttl = p.PTTL(ctx, key)
		get = p.GetDel(ctx, key)
		return nil
	})
	if errors.Is(err, redis.Nil) || errors.Is(get.Err(), redis.Nil) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("take authorization state: %w", err)
	}
	b, _ := get.Bytes()
	return b, ttl.Val(), nil
}

// Note appends an event that is not a state change (e.g. a refused
// authorization) to the events stream.
func (s *Store) Note(ctx context.Context, user, reason string, now time.Time) error {
	err := s.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: s.eventsKey(),
		MaxLen: s.maxEv,
		Approx: true,
		Values: []any{"user", user, "reason", reason, "at", now.UTC().Format(time.RFC3339Nano)},
	}).Err()
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}
