package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/tokens"
)

// damaged is a store holding three good records ("g0".."g2"), one token
// key of the wrong type ("str", a string) and one hash missing required
// fields ("half"); both damaged users are also in the re-auth queue.
type damaged struct {
	srv   *redistest.Server
	rdb   *redis.Client
	store *redisstore.Store
	now   time.Time
}

const secretValue = "garbage-secret-value"

func setupDamaged(t *testing.T) *damaged {
	t.Helper()
	srv := redistest.Start(t)
	d := &damaged{srv: srv, rdb: srv.Client(t), now: time.Now().Truncate(time.Millisecond)}
	d.store = redisstore.New(srv.Client(t), redisstore.Options{Prefix: srv.Prefix, Shards: 4})
	ctx := context.Background()
	if err := d.store.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	var recs []tokens.Record
	for _, u := range []string{"g0", "g1", "g2"} {
		recs = append(recs, tokens.Record{UserID: u, Provider: "fake", KeyID: "k1", Ciphertext: []byte("sealed-" + u), AccessExpiry: d.now.Add(time.Hour)})
	}
	if err := d.store.PutMany(ctx, recs, d.now); err != nil {
		t.Fatal(err)
	}
	if err := d.rdb.Set(ctx, d.key("str"), secretValue, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := d.rdb.HSet(ctx, d.key("half"), "s", "active", "p", "fake", "c", secretValue).Err(); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"str", "half"} {
		if err := d.rdb.ZAdd(ctx, srv.Prefix+"reauth", redis.Z{Score: float64(d.now.UnixMilli()), Member: u}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (d *damaged) key(user string) string { return d.srv.Prefix + "{u:" + user + "}:tok" }

func isMalformed(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, tokens.ErrMalformedRecord) {
		t.Errorf("%s: got %v, want a malformed record error", what, err)
	}
	if err != nil && strings.Contains(err.Error(), secretValue) {
		t.Errorf("%s: the error shows a stored value: %v", what, err)
	}
}

// TestWrongTypeReadsAsMalformed: a token key that is not a hash reads as a
// malformed record on every path (single reads, lease scripts, batch
// reads, walks), and never fails the other users of a batch or a walk.
func TestWrongTypeReadsAsMalformed(t *testing.T) {
	d := setupDamaged(t)
	ctx := context.Background()
	s := d.store

	_, err := s.Load(ctx, "str")
	isMalformed(t, "load", err)
	_, _, err = s.Acquire(ctx, "str", "me", d.now, d.now.Add(time.Minute))
	isMalformed(t, "acquire", err)
	leases, err := s.AcquireMany(ctx, []string{"g0", "str", "g1"}, "me", d.now, d.now.Add(time.Minute))
	if err != nil {
		t.Errorf("acquire many: %v", err)
	} else {
		if leases[0].Err != nil || leases[0].Status != tokens.Acquired || leases[2].Err != nil || leases[2].Status != tokens.Acquired {
			t.Errorf("acquire many: the good users were not acquired: %+v", leases)
		}
		isMalformed(t, "acquire many", leases[1].Err)
	}
	_, _, err = s.LoadForRun(ctx, "str", "pull")
	isMalformed(t, "load for run", err)
	loaded, err := s.LoadManyForRun(ctx, []string{"g0", "str", "half"}, "pull")
	if err != nil {
		t.Errorf("load many for run: %v", err)
	} else {
		if loaded[0].Err != nil || loaded[0].Record.UserID != "g0" {
			t.Errorf("load many for run: g0: %+v", loaded[0])
		}
		isMalformed(t, "load many for run (wrong type)", loaded[1].Err)
		isMalformed(t, "load many for run (missing fields)", loaded[2].Err)
	}
	refs, err := s.UserRefs(ctx, []string{"g0", "str", "half"})
	if err != nil || len(refs) != 1 || refs[0].UserID != "g0" {
		t.Errorf("user refs: %+v %v", refs, err)
	}

	var recs []tokens.Record
	var bad []string
	var cursor uint64
	for {
		r, b, next, err := s.Scan(ctx, cursor, 2)
		if err != nil {
			t.Errorf("scan: %v", err)
			break
		}
		recs, bad = append(recs, r...), append(bad, b...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(recs) != 3 || len(bad) != 2 {
		t.Errorf("scan: %d records, malformed %v; want 3 and [str half]", len(recs), bad)
	}

	counts, err := tokens.CountStates(ctx, s)
	if err != nil || counts["active"] != 3 {
		t.Errorf("count states: %v %v", counts, err)
	}
	q, err := s.ReauthQueue(ctx)
	if err != nil || len(q) != 0 {
		t.Errorf("reauth queue: %+v %v", q, err)
	}
}
