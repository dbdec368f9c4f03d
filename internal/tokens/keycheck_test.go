package tokens_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/tokens"
)

func keyringOf(t *testing.T, b byte) *tokens.Keyring {
	t.Helper()
	k, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{b}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyKeys(t *testing.T) {
	setup := func(t *testing.T) (*redisstore.Store, func() map[string]string) {
		t.Helper()
		srv := redistest.Start(t)
		rdb := srv.Client(t)
		store := redisstore.New(rdb, redisstore.Options{Prefix: srv.Prefix, Shards: 4})
		checks := func() map[string]string {
			t.Helper()
			m, err := rdb.HGetAll(context.Background(), srv.Prefix+"keycheck").Result()
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		return store, checks
	}
	put := func(t *testing.T, store *redisstore.Store, keys *tokens.Keyring, users ...string) {
		t.Helper()
		for _, u := range users {
			kid, ct, err := keys.SealToken(tokens.Token{UserID: u, AccessToken: "AT-" + u, RefreshToken: "RT-" + u}, "fake")
			if err != nil {
				t.Fatal(err)
			}
			rec := tokens.Record{UserID: u, Provider: "fake", KeyID: kid, Ciphertext: ct, AccessExpiry: time.Now().Add(time.Hour)}
			if _, _, err := store.Put(context.Background(), rec, tokens.ReasonStored, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx := context.Background()

	t.Run("first writer wins", func(t *testing.T) {
		store, checks := setup(t)
		right, wrong := keyringOf(t, 7), keyringOf(t, 9)
		if right.Verified() {
			t.Fatal("verified before Verify")
		}
		if err := right.Verify(ctx, store); err != nil || !right.Verified() {
			t.Fatalf("first use: %v, verified %v", err, right.Verified())
		}
		want := checks()
		if len(want) != 1 || len(want["k1"]) != 64 {
			t.Fatalf("check values %v", want)
		}
		err := wrong.Verify(ctx, store)
		var me *tokens.KeyMismatchError
		if !errors.As(err, &me) || !errors.Is(err, tokens.ErrKeyMismatch) || me.KeyID != "k1" {
			t.Fatalf("wrong key: err = %v", err)
		}
		if got, want := err.Error(), `keys: key "k1" does not match the key this database was sealed with (check value differs); fix encryption.keys`; got != want {
			t.Fatalf("error %q, want %q", got, want)
		}
		if wrong.Verified() {
			t.Fatal("a wrong key is verified")
		}
		if got := checks(); !maps.Equal(got, want) {
			t.Fatalf("check values changed: %v", got)
		}
		if err := keyringOf(t, 7).Verify(ctx, store); err != nil {
			t.Fatalf("the right key again: %v", err)
		}
	})

	t.Run("records from before check values prove the key", func(t *testing.T) {
		store, checks := setup(t)
		right, wrong := keyringOf(t, 7), keyringOf(t, 9)
		put(t, store, right, "a", "b")
		err := wrong.Verify(ctx, store)
		if !errors.Is(err, tokens.ErrKeyMismatch) || err.Error() != `keys: key "k1" does not match the key this database was sealed with (it opens none of the 2 records sealed with it that were tried); fix encryption.keys` {
			t.Fatalf("wrong key: err = %v", err)
		}
		if got := checks(); len(got) != 0 {
			t.Fatalf("a wrong key wrote a check value: %v", got)
		}
		// One damaged record does not make the right key wrong.
		put(t, store, wrong, "c")
		if err := right.Verify(ctx, store); err != nil {
			t.Fatalf("right key: %v", err)
		}
		if got := checks(); len(got) != 1 {
			t.Fatalf("check values %v", got)
		}
		if err := wrong.Verify(ctx, store); !errors.Is(err, tokens.ErrKeyMismatch) {
			t.Fatalf("wrong key after the check value: %v", err)
		}
	})

	t.Run("concurrent first use", func(t *testing.T) {
		store, checks := setup(t)
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			wg.Go(func() { errs[i] = keyringOf(t, byte(7+i%2)).Verify(ctx, store) })
		}
		wg.Wait()
		winner := checks()["k1"]
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
				if keyringOf(t, byte(7+i%2)).Verify(ctx, store) != nil {
					t.Fatalf("goroutine %d verified a key that is not the stored one", i)
				}
			case !errors.Is(err, tokens.ErrKeyMismatch):
				t.Fatalf("goroutine %d: %v", i, err)
			}
		}
		if ok != 8 || winner == "" {
			t.Fatalf("%d of 16 verified, want the 8 with the winning key", ok)
		}
	})

	t.Run("rotate needs a verified keyring", func(t *testing.T) {
		store, _ := setup(t)
		keys := keyringOf(t, 7)
		put(t, store, keys, "a")
		if _, err := tokens.Rotate(ctx, store, keys, 10, nil); !errors.Is(err, tokens.ErrKeysUnverified) {
			t.Fatalf("rotate unverified: %v", err)
		}
		if err := keys.Verify(ctx, store); err != nil {
			t.Fatal(err)
		}
		if _, err := tokens.Rotate(ctx, store, keys, 10, nil); err != nil {
			t.Fatalf("rotate verified: %v", err)
		}
	})
}
