package tokens

import (
	"context"
	"errors"
	"fmt"
)

// RotateStats counts what a key rotation did.
type RotateStats struct {
	Scanned int `json:"scanned"`
	Rekeyed int `json:"rekeyed"`
	// Upgraded counts, of Rekeyed, the records that were in the format
	// that did not bind the provider (see Keyring.NeedsReseal).
	Upgraded   int `json:"upgraded"`
	Current    int `json:"current"`    // already under the primary key, provider bound
	Unreadable int `json:"unreadable"` // sealed with a key not configured, or corrupt
	Malformed  int `json:"malformed"`
}

// ErrKeysUnverified: Rotate was given a keyring that Verify has not
// checked against the database; sealing every record with a mistyped
// primary key is what the check prevents.
var ErrKeysUnverified = errors.New("keyring not verified against the database")

// Rotate re-encrypts every record not sealed with the primary key, or
// sealed in the format that did not bind the provider, in batches of about
// batch records, calling progress after each batch. A record written
// meanwhile (refresh, put) is re-read and retried; records written by a
// refresh are sealed with the primary key anyway. keys must be Verified.
func Rotate(ctx context.Context, store Store, keys *Keyring, batch int64, progress func(RotateStats)) (RotateStats, error) {
	var st RotateStats
	if !keys.Verified() {
		return st, ErrKeysUnverified
	}
	var cursor uint64
	for {
		recs, bad, next, err := store.Scan(ctx, cursor, batch)
		if err != nil {
			return st, err
		}
		st.Malformed += len(bad)
		for _, rec := range recs {
			st.Scanned++
			if err := rekey(ctx, store, keys, rec, &st); err != nil {
				return st, err
			}
		}
		if progress != nil {
			progress(st)
		}
		if next == 0 {
			return st, nil
		}
		cursor = next
	}
}

func rekey(ctx context.Context, store Store, keys *Keyring, rec Record, st *RotateStats) error {
	for attempt := 0; attempt < 5; attempt++ {
		if !keys.NeedsReseal(rec) {
			st.Current++
			return nil
		}
		tok, err := keys.OpenRecord(rec)
		if err != nil {
			st.Unreadable++
			return nil
		}
		kid, ct, err := keys.SealToken(tok, rec.Provider)
		if err != nil {
			return err
		}
		ok, err := store.Rekey(ctx, rec.UserID, rec.Version, kid, ct)
		if err != nil {
			return err
		}
		if ok {
			st.Rekeyed++
			if rec.Ciphertext[0] != tokenVersion {
				st.Upgraded++
			}
			return nil
		}
		if rec, err = store.Load(ctx, rec.UserID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if errors.Is(err, ErrMalformedRecord) {
				st.Malformed++
				return nil
			}
			return err
		}
	}
	return fmt.Errorf("rekey user %q: record keeps changing", rec.UserID)
}
