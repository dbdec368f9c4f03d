package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/scheduler"
)

// Claims of due-set entries (the claims hash of each due shard, see the
// key table in doc.go):
//
// A claim re-scores an entry to its lease end, rounded up to a second,
// plus a tag naming the claim's fence (milliseconds and a fraction of one:
// due times are whole milliseconds, so a fraction marks a lease). Lease
// renewals keep the tag: a renewal whose answer was lost costs nothing,
// and the score alone fences every write, as cheaply as before. The fence
// is drawn per claim from about two million and always differs from that
// of the claim it takes an entry over from; a claimer that lost an entry
// two claims ago would have to have drawn the same fence as the current
// one to pass for it. The record keeps what the lease score hides, the
// time the entry was due, so an entry claimed again after its claimer
// died is due at its slot, not at the dead lease. Finishes delete the
// records of entries that no claim holds any more; claim.lua says why
// the hash keeps a 1 KiB field "". Every script touching a shard takes
// both keys, which claimsKey puts in one cluster slot.

// fences is how many fences a claim's tag can carry (see claim.lua).
const fences = 1000 * 2047

// newFence draws a claim's fence, 1..fences (0 is the engine's "no
// claim").
func newFence() int64 { return rand.Int64N(fences) + 1 }

// fencedCmd is a script call that go-redis must not retry by itself. A
// retry of a fenced write whose first attempt reached Redis answers for
// the first attempt's effect, not for the claim (with fences that
// renewals moved, a renewal retried after its first attempt landed
// reported the claim lost), and a claim retried so takes other entries
// than the engine asked for. A failed call's outcome is left to the
// engine, which knows what is safe to repeat.
type fencedCmd struct{ *redis.Cmd }

// NoRetry implements redis.Cmder.
func (fencedCmd) NoRetry() bool { return true }

// processor is a client or a pipeline.
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// evalFenced queues (on a pipeline) or runs (on a client) sc by EVALSHA,
// without go-redis retries.
func evalFenced(ctx context.Context, c processor, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, "evalsha", sc.Hash(), len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(ctx, a...)
	_ = c.Process(ctx, fencedCmd{cmd})
	return cmd
}

// runFenced runs sc without go-redis retries; if Redis lost the script
// (restart, SCRIPT FLUSH: nothing ran) it is loaded and run once more.
func (s *Store) runFenced(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := evalFenced(ctx, s.rdb, sc, keys, args...)
	if cmd.Err() != nil && redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		if err := s.loadScripts(ctx); err != nil {
			cmd.SetErr(err)
			return cmd
		}
		cmd = evalFenced(ctx, s.rdb, sc, keys, args...)
	}
	return cmd
}

// dueErr wraps an error of a due-set write for the engine: one that is
// not Redis' answer (a timeout, a broken connection) leaves the write's
// outcome unknown.
func dueErr(op, set string, err error) error {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return fmt.Errorf("%s %s: %w: %w", op, set, scheduler.ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("%s %s: %w", op, set, err)
}
