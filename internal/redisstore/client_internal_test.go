package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/errkind"
)

// reply is an answer of Redis, as go-redis returns it.
type reply string

func (r reply) Error() string { return string(r) }
func (reply) RedisError()     {}

func TestOutage(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{reply("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{reply("NOSCRIPT No matching script. Please use EVAL."), false},
		{reply("ERR Error running script: fenced"), false},
		{errors.New("redis: can't marshal chan int"), false},
		{reply("LOADING Redis is loading the dataset in memory"), true},
		{reply("MASTERDOWN Link with MASTER is down"), true},
		{reply("READONLY You can't write against a read only replica."), true},
		{reply("ERR max number of clients reached"), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}, true},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), true},
		{context.Canceled, true},
		{redis.ErrPoolTimeout, true},
		{redis.ErrPoolExhausted, true},
		{redis.ErrClosed, true},
		{errkind.Mark(errkind.Conflict, context.DeadlineExceeded), false},
	} {
		if got := outage(tc.err); got != tc.want {
			t.Errorf("outage(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
