package redisstore

import (
	"fmt"
	"strconv"

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
