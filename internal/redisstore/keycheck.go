package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// KeyChecks implements tokens.KeyCheckStore: the hash P + "keycheck",
// key id → check value (never a key).
func (s *Store) KeyChecks(ctx context.Context) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.keyCheckKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("key check values: %w", err)
	}
	return m, nil
}

// AddKeyCheck implements tokens.KeyCheckStore: HSETNX and HGET in one
// transaction, so the value returned is the one that stays.
func (s *Store) AddKeyCheck(ctx context.Context, kid, value string) (string, error) {
	var get *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSetNX(ctx, s.keyCheckKey(), kid, value)
		get = p.HGet(ctx, s.keyCheckKey(), kid)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("key check value %q: %w", kid, err)
	}
	return get.Val(), nil
}
