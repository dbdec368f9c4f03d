package tokens

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/syncd/syncd/internal/errkind"
)

// ErrKeyMismatch means a configured key is not the key the database's
// records were sealed with under the same id (a mistyped secret, a bad
// rollout). Nothing may be opened or sealed with it.
var ErrKeyMismatch = errkind.New(errkind.Invalid, "key does not match the database")

// KeyMismatchError names the key id whose key differs, never the key.
type KeyMismatchError struct {
	KeyID string
	// Why says how it was found: "check value differs", or, for a key id
	// without a check value yet, that it opened none of the records
	// sealed with it that were tried.
	Why string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("keys: key %q does not match the key this database was sealed with (%s); fix encryption.keys", e.KeyID, e.Why)
}

// Unwrap makes errors.Is(err, ErrKeyMismatch) hold.
func (e *KeyMismatchError) Unwrap() error { return ErrKeyMismatch }

// KeyCheckStore keeps the key check values (internal/redisstore): one
// per key id, written once, never overwritten.
type KeyCheckStore interface {
	// KeyChecks returns every stored key id → check value.
	KeyChecks(ctx context.Context) (map[string]string, error)
	// AddKeyCheck stores value for kid unless a value is stored already
	// (the first writer wins) and returns the value stored.
	AddKeyCheck(ctx context.Context, kid, value string) (string, error)
	// Scan walks the token records (see Store.Scan).
	Scan(ctx context.Context, cursor uint64, count int64) (recs []Record, malformed []string, next uint64, err error)
}

// proveTries bounds how many records of a key id without a check value
// Verify tries before it calls the key wrong.
const proveTries = 3

// Verify checks every key of the keyring against the database's check
// values and marks the keyring Verified. Every command that opens or seals
// records calls it once Redis answers, before anything else, and refuses
// to run on an error; nothing is written but check values.
//
// A key id with a check value must match it (else *KeyMismatchError,
// "check value differs"). A key id without one (its first use, or records
// from before check values) is first proved against the records sealed
// with it: if there are such records and none of the first proveTries
// opens, the key is wrong (*KeyMismatchError) and no value is written.
// Otherwise its check value is written with set-if-absent, and if another
// process wrote a different one first, that one wins and this key is
// wrong. Proving walks every record once per new key id; later calls
// read one hash. Other errors are Redis's.
func (k *Keyring) Verify(ctx context.Context, s KeyCheckStore) error {
	stored, err := s.KeyChecks(ctx)
	if err != nil {
		return fmt.Errorf("keys: read check values: %w", err)
	}
	var missing []string
	for _, id := range slices.Sorted(maps.Keys(k.checks)) {
		v, ok := stored[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		if !hmac.Equal([]byte(v), []byte(k.checks[id])) {
			return &KeyMismatchError{KeyID: id, Why: "check value differs"}
		}
	}
	if len(missing) > 0 {
		if err := k.prove(ctx, s, missing); err != nil {
			return err
		}
		for _, id := range missing {
			got, err := s.AddKeyCheck(ctx, id, k.checks[id])
			if err != nil {
				return fmt.Errorf("keys: write check value: %w", err)
			}
			if !hmac.Equal([]byte(got), []byte(k.checks[id])) {
				return &KeyMismatchError{KeyID: id, Why: "check value differs"}
			}
		}
	}
	k.verified.Store(true)
	return nil
}

// prove walks the records until each key id in ids has opened one of its
// records or failed proveTries times, and fails for the first id whose
// records all failed.
func (k *Keyring) prove(ctx context.Context, s KeyCheckStore, ids []string) error {
	tried := make(map[string]int, len(ids))
	open := make(map[string]bool, len(ids))
	pending := len(ids)
	for _, id := range ids {
		tried[id] = 0
	}
	var cursor uint64
	for pending > 0 {
		recs, _, next, err := s.Scan(ctx, cursor, 500)
		if err != nil {
			return fmt.Errorf("keys: prove key against records: %w", err)
		}
		for _, rec := range recs {
			n, ok := tried[rec.KeyID]
			if !ok || open[rec.KeyID] || n >= proveTries {
				continue
			}
			_, err := k.OpenRecord(rec)
			switch {
			case err == nil:
				open[rec.KeyID] = true
				pending--
			case errors.Is(err, ErrDecrypt):
				if tried[rec.KeyID] = n + 1; n+1 == proveTries {
					pending--
				}
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	for _, id := range ids {
		if n := tried[id]; n > 0 && !open[id] {
			return &KeyMismatchError{KeyID: id, Why: fmt.Sprintf("it opens none of the %d records sealed with it that were tried", n)}
		}
	}
	return nil
}

// Verified reports whether Verify matched every key of the keyring
// against the database. Only then is a record that fails to open under a
// configured key id known to be damaged rather than the key being wrong
// (see the refresher's openFailure).
func (k *Keyring) Verified() bool { return k != nil && k.verified.Load() }
