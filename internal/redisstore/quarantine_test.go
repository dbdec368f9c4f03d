package redisstore_test

import (
	"context"
	"errors"
	"slices"
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
	_, _, err = s.Acquire(ctx, "str", "me", "", d.now, d.now.Add(time.Minute))
	isMalformed(t, "acquire", err)
	leases, err := s.AcquireMany(ctx, []string{"g0", "str", "g1"}, []string{"me-1", "me-2", "me-3"}, d.now, d.now.Add(time.Minute))
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

// TestQuarantineAndRestore: damaged records are moved aside (whatever
// their type) and listed with why and since when; a record that parses
// again comes back, a user waiting for consent re-enters the re-auth
// queue, a live record is never overwritten, and a stored token discards
// the quarantined copy.
func TestQuarantineAndRestore(t *testing.T) {
	d := setupDamaged(t)
	ctx := context.Background()
	s := d.store
	for user, want := range map[string]bool{"str": true, "half": true, "g0": false, "nobody": false} {
		moved, err := s.QuarantineMalformed(ctx, user, d.now)
		if err != nil || moved != want {
			t.Fatalf("quarantine %s: moved %v (%v), want %v", user, moved, err, want)
		}
	}
	if typ, _ := d.rdb.Type(ctx, d.srv.Prefix+"{u:str}:quarantine").Result(); typ != "string" {
		t.Fatalf("the wrong-type key was not moved aside as it was: %q", typ)
	}
	list, err := s.QuarantineList(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("quarantine list %+v %v", list, err)
	}
	got := map[string]string{list[0].UserID: list[0].Reason, list[1].UserID: list[1].Reason}
	if got["str"] != "wrong_type" || got["half"] != "malformed_record" || !list[0].Since.Equal(d.now) {
		t.Fatalf("quarantine list %+v", list)
	}
	if n, err := s.QuarantineCount(ctx); n != 2 || err != nil {
		t.Fatalf("quarantine count %d %v", n, err)
	}
	if _, err := s.Load(ctx, "str"); !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("a quarantined user still loads: %v", err)
	}

	// Still damaged: refused, naming the problem and never a value.
	_, err = s.QuarantinedRecord(ctx, "str")
	isMalformed(t, "quarantined wrong type", err)
	_, err = s.QuarantinedRecord(ctx, "half")
	isMalformed(t, "quarantined half", err)
	if err == nil || !strings.Contains(err.Error(), `field "v"`) {
		t.Fatalf("the refusal does not name the field: %v", err)
	}
	if _, err := s.QuarantinedRecord(ctx, "g0"); !errors.Is(err, tokens.ErrNotQuarantined) {
		t.Fatalf("g0: %v", err)
	}

	// The operator repairs the fields: half comes back, once.
	if err := d.rdb.HSet(ctx, d.srv.Prefix+"{u:half}:quarantine", "v", "3", "k", "k1", "ae", d.now.Add(time.Hour).UnixMilli(), "lo", "dead-replica", "lu", "1").Err(); err != nil {
		t.Fatal(err)
	}
	rec, err := s.QuarantinedRecord(ctx, "half")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := s.Restore(ctx, rec, d.now)
	if err != nil || tr == nil || tr.From != tokens.Quarantined || tr.To != tokens.Active {
		t.Fatalf("restore: %+v %v", tr, err)
	}
	back, err := s.Load(ctx, "half")
	if err != nil || back.Version != 3 || back.LeaseID != "" {
		t.Fatalf("restored record %+v %v", back, err)
	}
	if _, err := s.Restore(ctx, rec, d.now); !errors.Is(err, tokens.ErrLiveRecord) {
		t.Fatalf("second restore: %v", err)
	}
	if list, _ := s.QuarantineList(ctx); len(list) != 1 || list[0].UserID != "str" {
		t.Fatalf("after restore: %+v", list)
	}

	// A copy quarantined while the user has a live record is never
	// written over it.
	if err := d.rdb.Copy(ctx, d.key("g2"), d.srv.Prefix+"{u:g2}:quarantine", 0, false).Err(); err != nil {
		t.Fatal(err)
	}
	rec, err = s.QuarantinedRecord(ctx, "g2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore(ctx, rec, d.now); !errors.Is(err, tokens.ErrLiveRecord) {
		t.Fatalf("restore over a live record: %v", err)
	}

	// A user waiting for consent goes back to the re-auth queue.
	acq, _, err := s.Acquire(ctx, "g1", "me", "", d.now, d.now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	flaggedAt := d.now.Add(-time.Hour)
	if res, _, err := s.Flag(ctx, "g1", "me", acq.Version, tokens.ReasonInvalidGrant, "reauth:invalid_grant", flaggedAt); err != nil || res != tokens.Flagged {
		t.Fatalf("flag: %v %v", res, err)
	}
	if err := s.Quarantine(ctx, "g1", "undecryptable_record", d.now); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.ReauthQueue(ctx); len(q) != 0 {
		t.Fatalf("a quarantined user is still queued: %+v", q)
	}
	rec, err = s.QuarantinedRecord(ctx, "g1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore(ctx, rec, d.now); err != nil {
		t.Fatal(err)
	}
	if q, _ := s.ReauthQueue(ctx); len(q) != 1 || q[0].UserID != "g1" || !q[0].Since.Equal(flaggedAt) {
		t.Fatalf("re-auth queue after restore: %+v", q)
	}
	evs, err := s.Events(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for _, e := range evs {
		if e.User == "g1" {
			trail = append(trail, e.From+">"+e.To+":"+e.Reason)
		}
	}
	if got, want := strings.Join(trail, " "), "active>reauth_required:invalid_grant >quarantined:undecryptable_record quarantined>reauth_required:restored"; got != want {
		t.Fatalf("events %q, want %q", got, want)
	}

	// A token stored for a quarantined user supersedes the copy.
	if _, _, err := s.Put(ctx, tokens.Record{UserID: "str", Provider: "fake", KeyID: "k1", Ciphertext: []byte("sealed"), AccessExpiry: d.now.Add(time.Hour)}, tokens.ReasonStored, d.now); err != nil {
		t.Fatal(err)
	}
	if n, _ := d.rdb.Exists(ctx, d.srv.Prefix+"{u:str}:quarantine").Result(); n != 0 {
		t.Fatal("the superseded quarantined copy is still there")
	}
	if list, _ := s.QuarantineList(ctx); len(list) != 0 {
		t.Fatalf("after put: %+v", list)
	}

	// A token stored for a user whose key is of the wrong type replaces
	// it (the key is quarantined on the way, then superseded).
	if err := d.rdb.RPush(ctx, d.key("list"), secretValue).Err(); err != nil {
		t.Fatal(err)
	}
	st, _, err := s.Put(ctx, tokens.Record{UserID: "list", Provider: "fake", KeyID: "k1", Ciphertext: []byte("sealed"), AccessExpiry: d.now.Add(time.Hour)}, tokens.ReasonStored, d.now)
	if err != nil || st != tokens.Active {
		t.Fatalf("put over a wrong-type key: %v %v", st, err)
	}
	if _, err := s.Load(ctx, "list"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.QuarantineList(ctx); len(list) != 0 {
		t.Fatalf("after put over a wrong-type key: %+v", list)
	}
}

// TestOversizedRecordIsMalformed: a record bigger than MaxRecordBytes (a
// field that grew by a bug or by hand) reads as malformed on every path
// and is quarantined; a record holding the largest token ParseToken
// accepts stays well under the cap.
func TestOversizedRecordIsMalformed(t *testing.T) {
	d := setupDamaged(t)
	ctx := context.Background()
	s := d.store

	big := tokens.Record{UserID: "big", Provider: "fake", KeyID: "k1", Ciphertext: []byte(strings.Repeat("c", tokens.MaxTokenInput+64)), AccessExpiry: d.now.Add(time.Hour)}
	fat := tokens.Record{UserID: "fat", Provider: "fake", KeyID: "k1", Ciphertext: []byte("sealed"), AccessExpiry: d.now.Add(time.Hour)}
	if err := s.PutMany(ctx, []tokens.Record{big, fat}, d.now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "big"); err != nil {
		t.Fatalf("a record with the largest token: %v", err)
	}
	if err := d.rdb.HSet(ctx, d.key("fat"), "le", strings.Repeat(secretValue, redisstore.MaxRecordBytes/len(secretValue)+1)).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Load(ctx, "fat")
	isMalformed(t, "load", err)
	_, _, err = s.Acquire(ctx, "fat", "lease", "", d.now, d.now.Add(time.Minute))
	isMalformed(t, "acquire", err)
	loaded, err := s.LoadManyForRun(ctx, []string{"g0", "fat"}, "pull")
	if err != nil || loaded[0].Err != nil {
		t.Fatalf("load many: %v %+v", err, loaded)
	}
	isMalformed(t, "load many", loaded[1].Err)
	recs, bad, _, err := s.Scan(ctx, 0, 1000)
	if err != nil || !slices.Contains(bad, "fat") || slices.ContainsFunc(recs, func(r tokens.Record) bool { return r.UserID == "fat" }) {
		t.Fatalf("scan: %v, bad %v", err, bad)
	}
	moved, err := s.QuarantineMalformed(ctx, "fat", d.now)
	if err != nil || !moved {
		t.Fatalf("quarantine: %v %v", moved, err)
	}
	if list, _ := s.QuarantineList(ctx); !slices.ContainsFunc(list, func(e tokens.QuarantineEntry) bool {
		return e.UserID == "fat" && e.Reason == "malformed_record"
	}) {
		t.Fatalf("quarantine list: %+v", list)
	}
}
