package redisstore

import (
	"context"
	"io/fs"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/tokens"
)

// scriptTests names, for each Lua script, the tests that run it against
// a real redis-server and check its effect on the keys and its answer.
// TestEveryScriptIsTested keeps the table complete.
var scriptTests = map[string][]string{
	"claim":           {"TestFenceDiffersFromTheClaimTakenOver", "TestFinishDueFencing", "TestReclaimReportsTheOriginalDue"},
	"finish":          {"TestFinishDueFencing", "TestFinishRunsWrites", "TestClaimsSurviveRenewals"},
	"renew":           {"TestClaimsSurviveRenewals", "TestFenceDiffersFromTheClaimTakenOver"},
	"move_in":         {"TestMoveOnlyUnchanged", "TestMigrateShards"},
	"move_out":        {"TestMoveOnlyUnchanged", "TestMigrateShards"},
	"shards_announce": {"TestMigrateShards", "TestShardsSettleScript"},
	"shards_settle":   {"TestMigrateShards", "TestShardsSettleScript"},
	"quarantine":      {"TestQuarantineAndRestore", "TestWrongTypeReadsAsMalformed"},
	"restore":         {"TestQuarantineAndRestore"},
	"put":             {"TestPutScript"},
	"acquire":         {"TestAcquireScript"},
	"commit":          {"TestCommitScript"},
	"fail":            {"TestFailScript"},
	"flag":            {"TestFlagScript"},
	"release":         {"TestReleaseScript"},
	"rekey":           {"TestRekeyScript"},
	"setstate":        {"TestSetStateScript"},
	"unlock":          {"TestUnlockScript"},
}

// TestEveryScriptIsTested: every lua/*.lua has a row in scriptTests, and
// every test a row names exists in this package.
func TestEveryScriptIsTested(t *testing.T) {
	var src strings.Builder
	files, err := fs.Glob(os.DirFS("."), "*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	scripts, err := fs.Glob(luaFS, "lua/*.lua")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for _, p := range scripts {
		name := strings.TrimSuffix(strings.TrimPrefix(p, "lua/"), ".lua")
		seen[name] = true
		if len(scriptTests[name]) == 0 {
			t.Errorf("lua/%s.lua has no test in scriptTests", name)
		}
	}
	for name, tests := range scriptTests {
		if !seen[name] {
			t.Errorf("scriptTests names lua/%s.lua, which does not exist", name)
		}
		for _, tn := range tests {
			if !strings.Contains(src.String(), "func "+tn+"(t *testing.T)") {
				t.Errorf("scriptTests: %s: no test %s", name, tn)
			}
		}
	}
}

// luaBundle is a store over a private Redis, its client, and a clock
// reading far from the wall clock.
type luaBundle struct {
	s   *Store
	rdb *redis.Client
	t0  time.Time
}

func setupLua(t *testing.T) (*luaBundle, context.Context) {
	t.Helper()
	srv := redistest.Start(t)
	b := &luaBundle{rdb: srv.Client(t), t0: time.UnixMilli(1_800_000_000_000).UTC()}
	b.s = New(b.rdb, Options{Prefix: srv.Prefix, Shards: 1})
	ctx := context.Background()
	if err := b.s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	return b, ctx
}

// fields returns user's token record hash.
func (b *luaBundle) fields(t *testing.T, user string) map[string]string {
	t.Helper()
	m, err := b.rdb.HGetAll(context.Background(), b.s.tokenKey(user)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// want checks the named fields of user's record ("" for absent).
func (b *luaBundle) want(t *testing.T, user string, want map[string]string) {
	t.Helper()
	got := b.fields(t, user)
	for f, v := range want {
		if got[f] != v {
			t.Errorf("%s: field %s = %q, want %q", user, f, got[f], v)
		}
	}
}

// put stores a token for user at t0 (version 1, active).
func (b *luaBundle) put(t *testing.T, user string) tokens.Record {
	t.Helper()
	rec := tokens.Record{UserID: user, Provider: "fake", KeyID: "k1", Ciphertext: []byte("sealed-1"),
		AccessExpiry: b.t0.Add(time.Hour), RefreshExpiry: b.t0.Add(24 * time.Hour)}
	if _, _, err := b.s.Put(context.Background(), rec, tokens.ReasonStored, b.t0); err != nil {
		t.Fatal(err)
	}
	rec.Version = 1
	return rec
}

func (b *luaBundle) set(t *testing.T, user string, kv ...any) {
	t.Helper()
	if err := b.rdb.HSet(context.Background(), b.s.tokenKey(user), kv...).Err(); err != nil {
		t.Fatal(err)
	}
}

func formatInt(n int64) string { return strconv.FormatInt(n, 10) }

// TestPutScript: a put creates a record at version 1, active; a put over
// a record bumps the version, makes it active (a disabled user stays
// disabled), resets failures and drops any refresh lease, so a refresh in
// flight is fenced out.
func TestPutScript(t *testing.T) {
	b, ctx := setupLua(t)
	rec := tokens.Record{UserID: "u", Provider: "fake", KeyID: "k1", Ciphertext: []byte("c1"), AccessExpiry: b.t0.Add(time.Hour)}

	st, tr, err := b.s.Put(ctx, rec, tokens.ReasonStored, b.t0)
	if err != nil || st != tokens.Active || tr == nil || tr.From != "" || tr.To != tokens.Active {
		t.Fatalf("new: %v %+v %v", st, tr, err)
	}
	b.want(t, "u", map[string]string{"v": "1", "p": "fake", "k": "k1", "c": "c1", "ae": formatInt(ms(b.t0.Add(time.Hour))), "re": "0",
		"f": "0", "s": "active", "sr": tokens.ReasonStored, "sa": formatInt(ms(b.t0)), "ca": formatInt(ms(b.t0))})

	// A degraded record with a refresh in flight.
	b.set(t, "u", "s", "degraded", "f", 3, "le", "transient:http_503", "lo", "L1", "lu", ms(b.t0.Add(time.Minute)), "xl", 1)
	later := b.t0.Add(time.Minute)
	rec.KeyID, rec.Ciphertext = "k2", []byte("c2")
	st, tr, err = b.s.Put(ctx, rec, tokens.ReasonReauthorized, later)
	if err != nil || st != tokens.Active || tr == nil || tr.From != tokens.Degraded || tr.To != tokens.Active {
		t.Fatalf("over degraded: %v %+v %v", st, tr, err)
	}
	b.want(t, "u", map[string]string{"v": "2", "k": "k2", "c": "c2", "f": "0", "s": "active", "sr": tokens.ReasonReauthorized,
		"sa": formatInt(ms(later)), "ca": formatInt(ms(b.t0)), "le": "", "lo": "", "lu": "", "xl": ""})

	// Active stays active: no transition, the state's time is kept.
	st, tr, err = b.s.Put(ctx, rec, tokens.ReasonStored, later.Add(time.Minute))
	if err != nil || st != tokens.Active || tr != nil {
		t.Fatalf("over active: %v %+v %v", st, tr, err)
	}
	b.want(t, "u", map[string]string{"v": "3", "sa": formatInt(ms(later)), "sr": tokens.ReasonReauthorized})

	// A disabled user stays disabled.
	b.set(t, "u", "s", "disabled", "sr", tokens.ReasonOperator)
	st, tr, err = b.s.Put(ctx, rec, tokens.ReasonStored, later.Add(2*time.Minute))
	if err != nil || st != tokens.Disabled || tr != nil {
		t.Fatalf("over disabled: %v %+v %v", st, tr, err)
	}
	b.want(t, "u", map[string]string{"v": "4", "s": "disabled", "sr": tokens.ReasonOperator})

	// The script's own answer: {version, from, to}.
	vals, err := putScript.Run(ctx, b.rdb, []string{b.s.tokenKey("u")}, "fake", "k3", "c3", 1, 0, ms(later), tokens.ReasonStored).Slice()
	if err != nil || !reflect.DeepEqual(vals, []any{int64(5), "disabled", "disabled"}) {
		t.Fatalf("put answered %v %v", vals, err)
	}
}

// TestAcquireScript: the lease goes to the first caller; another caller
// is refused while the lease runs and for a grace after its end, then
// takes it over and the record says the lease ended unreleased; a holder
// renews its own lease under a new id; users who are not active or
// degraded are not leased.
func TestAcquireScript(t *testing.T) {
	b, ctx := setupLua(t)
	t0 := b.t0
	minute := func(n float64) time.Time { return t0.Add(time.Duration(n * float64(time.Minute))) }

	if _, st, err := b.s.Acquire(ctx, "nobody", "L1", "", t0, minute(1)); err != nil || st != tokens.AcquireMissing {
		t.Fatalf("no record: %v %v", st, err)
	}
	if n, _ := b.rdb.Exists(ctx, b.s.tokenKey("nobody")).Result(); n != 0 {
		t.Fatal("acquire created a record")
	}
	b.put(t, "u")

	// Free: the caller gets the lease and the record with it.
	rec, st, err := b.s.Acquire(ctx, "u", "L1", "", t0, minute(1))
	if err != nil || st != tokens.Acquired || rec.LeaseID != "L1" || !rec.LeaseUntil.Equal(minute(1)) || rec.Version != 1 {
		t.Fatalf("free: %v %+v %v", st, rec, err)
	}
	b.want(t, "u", map[string]string{"lo": "L1", "lu": formatInt(ms(minute(1))), "xl": ""})

	// Held by another: busy, the lease untouched.
	rec, st, err = b.s.Acquire(ctx, "u", "L2", "", minute(0.5), minute(1.5))
	if err != nil || st != tokens.AcquireBusy || rec.LeaseID != "L1" {
		t.Fatalf("held: %v %+v %v", st, rec, err)
	}
	b.want(t, "u", map[string]string{"lo": "L1", "lu": formatInt(ms(minute(1)))})

	// The holder renews under a new id.
	if _, st, err = b.s.Acquire(ctx, "u", "L3", "L1", minute(0.5), minute(2)); err != nil || st != tokens.Acquired {
		t.Fatalf("renew: %v %v", st, err)
	}
	b.want(t, "u", map[string]string{"lo": "L3", "lu": formatInt(ms(minute(2))), "xl": ""})

	// Expired but within the grace (one lease length, until - now, after
	// its end): still busy.
	if _, st, err = b.s.Acquire(ctx, "u", "L4", "", minute(2.5), minute(3.5)); err != nil || st != tokens.AcquireBusy {
		t.Fatalf("within grace: %v %v", st, err)
	}
	b.want(t, "u", map[string]string{"lo": "L3"})

	// After the grace: taken over, marked as ended unreleased.
	rec, st, err = b.s.Acquire(ctx, "u", "L4", "", minute(3), minute(4))
	if err != nil || st != tokens.Acquired || rec.LeaseID != "L4" || !rec.LeaseExpired {
		t.Fatalf("after grace: %v %+v %v", st, rec, err)
	}
	b.want(t, "u", map[string]string{"lo": "L4", "lu": formatInt(ms(minute(4))), "xl": "1"})

	// Not runnable: answered with the record, no lease taken.
	for _, s := range []string{"reauth_required", "disabled"} {
		b.put(t, "n-"+s)
		b.set(t, "n-"+s, "s", s)
		rec, st, err := b.s.Acquire(ctx, "n-"+s, "L5", "", t0, minute(1))
		if err != nil || st != tokens.AcquireNotRunnable || string(rec.State) != s {
			t.Fatalf("%s: %v %+v %v", s, st, rec, err)
		}
		b.want(t, "n-"+s, map[string]string{"lo": "", "lu": ""})
	}
}

// TestCommitScript: a commit is fenced by the version only: it stores
// the refreshed token, bumps the version, clears the failure count and
// the unreleased mark, releases the lease if it is the caller's (and
// leaves another holder's alone), and brings a degraded user back.
func TestCommitScript(t *testing.T) {
	b, ctx := setupLua(t)
	rec := b.put(t, "u")
	if _, _, err := b.s.Acquire(ctx, "u", "L1", "", b.t0, b.t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	b.set(t, "u", "f", 2, "le", "transient:http_503", "xl", 1)
	now := b.t0.Add(10 * time.Second)
	rec.KeyID, rec.Ciphertext, rec.AccessExpiry = "k2", []byte("sealed-2"), now.Add(time.Hour)

	ok, tr, err := b.s.Commit(ctx, "L1", rec, tokens.ReasonRefreshed, now)
	if err != nil || !ok || tr != nil {
		t.Fatalf("commit: %v %+v %v", ok, tr, err)
	}
	b.want(t, "u", map[string]string{"v": "2", "k": "k2", "c": "sealed-2", "ae": formatInt(ms(now.Add(time.Hour))), "lr": formatInt(ms(now)),
		"f": "0", "le": "", "xl": "", "lo": "", "lu": "", "s": "active", "sr": tokens.ReasonStored})

	// Version mismatch (a token was stored meanwhile): fenced out.
	rec.KeyID = "k3"
	if ok, _, err := b.s.Commit(ctx, "L1", rec, tokens.ReasonRefreshed, now); err != nil || ok {
		t.Fatalf("stale version: %v %v", ok, err)
	}
	b.want(t, "u", map[string]string{"v": "2", "k": "k2"})

	// A holder whose lease was taken over still stores its token (the
	// only copy of a rotated one); the new holder keeps its lease.
	if _, _, err := b.s.Acquire(ctx, "u", "L2", "", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	rec.Version = 2
	if ok, _, err := b.s.Commit(ctx, "L1", rec, tokens.ReasonRefreshed, now); err != nil || !ok {
		t.Fatalf("taken-over holder: %v %v", ok, err)
	}
	b.want(t, "u", map[string]string{"v": "3", "k": "k3", "lo": "L2"})

	// Degraded comes back to active.
	b.set(t, "u", "s", "degraded")
	rec.Version = 3
	ok, tr, err = b.s.Commit(ctx, "L2", rec, tokens.ReasonRefreshed, now)
	if err != nil || !ok || tr == nil || tr.From != tokens.Degraded || tr.To != tokens.Active {
		t.Fatalf("degraded: %v %+v %v", ok, tr, err)
	}
	b.want(t, "u", map[string]string{"v": "4", "s": "active", "sr": tokens.ReasonRefreshed, "sa": formatInt(ms(now)), "lo": ""})

	// The script's own answers.
	key := []string{b.s.tokenKey("u")}
	if v, err := commitScript.Run(ctx, b.rdb, key, "L9", 3, "k", "c", 1, 0, ms(now), "r").Slice(); err != nil || !reflect.DeepEqual(v, []any{int64(0)}) {
		t.Fatalf("fenced out answered %v %v", v, err)
	}
	if v, err := commitScript.Run(ctx, b.rdb, key, "L9", 4, "k", "c", 1, 0, ms(now), "r").Slice(); err != nil || !reflect.DeepEqual(v, []any{int64(1), int64(5), ""}) {
		t.Fatalf("commit answered %v %v", v, err)
	}

	// Held: a commit that waits for replicas keeps its lease.
	if _, _, err := b.s.Acquire(ctx, "u", "L3", "", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if v, err := commitScript.Run(ctx, b.rdb, key, "L3", 5, "k", "c", 1, 0, ms(now), "r", "1").Slice(); err != nil || !reflect.DeepEqual(v, []any{int64(1), int64(6), ""}) {
		t.Fatalf("held commit answered %v %v", v, err)
	}
	b.want(t, "u", map[string]string{"v": "6", "lo": "L3"})
}

// TestFailScript: a failure is fenced by the version and the lease; it
// counts, records the error, releases the lease and clears the
// unreleased mark, and degrades an active user at the threshold.
func TestFailScript(t *testing.T) {
	b, ctx := setupLua(t)
	b.put(t, "u")
	acquire := func(lease string) {
		t.Helper()
		if _, st, err := b.s.Acquire(ctx, "u", lease, "", b.t0, b.t0.Add(time.Minute)); err != nil || st != tokens.Acquired {
			t.Fatalf("acquire %s: %v %v", lease, st, err)
		}
	}
	acquire("L1")
	b.set(t, "u", "xl", 1)
	now := b.t0.Add(time.Second)

	ok, f, tr, err := b.s.Fail(ctx, "u", "L1", 1, "transient:http_503", 2, tokens.ReasonTransientFailures, now)
	if err != nil || !ok || f != 1 || tr != nil {
		t.Fatalf("first failure: %v %d %+v %v", ok, f, tr, err)
	}
	b.want(t, "u", map[string]string{"f": "1", "le": "transient:http_503", "lo": "", "lu": "", "xl": "", "s": "active"})

	// The lease is gone: the same caller is fenced out.
	if ok, _, _, err := b.s.Fail(ctx, "u", "L1", 1, "x", 2, tokens.ReasonTransientFailures, now); err != nil || ok {
		t.Fatalf("without the lease: %v %v", ok, err)
	}
	// So is a caller with the lease but a stale version.
	acquire("L2")
	if ok, _, _, err := b.s.Fail(ctx, "u", "L2", 7, "x", 2, tokens.ReasonTransientFailures, now); err != nil || ok {
		t.Fatalf("stale version: %v %v", ok, err)
	}
	b.want(t, "u", map[string]string{"f": "1", "lo": "L2"})

	// The threshold degrades the user.
	ok, f, tr, err = b.s.Fail(ctx, "u", "L2", 1, "transient:timeout", 2, tokens.ReasonTransientFailures, now)
	if err != nil || !ok || f != 2 || tr == nil || tr.From != tokens.Active || tr.To != tokens.Degraded {
		t.Fatalf("threshold: %v %d %+v %v", ok, f, tr, err)
	}
	b.want(t, "u", map[string]string{"f": "2", "s": "degraded", "sr": tokens.ReasonTransientFailures, "sa": formatInt(ms(now)), "le": "transient:timeout"})

	// Already degraded: counted, no transition.
	acquire("L3")
	v, err := failScript.Run(ctx, b.rdb, []string{b.s.tokenKey("u")}, "L3", 1, "transient:timeout", 2, ms(now), tokens.ReasonTransientFailures).Slice()
	if err != nil || !reflect.DeepEqual(v, []any{int64(1), int64(3), ""}) {
		t.Fatalf("degraded failure answered %v %v", v, err)
	}
}

// TestFlagScript: flagging needs the current version and the lease; it
// sets reauth_required with why and since when, counts the failure and
// drops the lease; a second flag finds the user already flagged; a stale
// flag changes nothing and leaves no queue entry.
func TestFlagScript(t *testing.T) {
	b, ctx := setupLua(t)
	inQueue := func(user string) bool {
		t.Helper()
		_, err := b.rdb.ZScore(ctx, b.s.reauthKey(), user).Result()
		return err == nil
	}
	now := b.t0.Add(time.Second)

	if res, tr, err := b.s.Flag(ctx, "nobody", "L1", 1, tokens.ReasonInvalidGrant, "reauth:invalid_grant", now); err != nil || res != tokens.FlagStale || tr != nil {
		t.Fatalf("no record: %v %+v %v", res, tr, err)
	}
	if inQueue("nobody") {
		t.Fatal("a user without a record was left queued")
	}

	b.put(t, "u")
	if _, _, err := b.s.Acquire(ctx, "u", "L1", "", b.t0, b.t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lease   string
		version int64
	}{{"L1", 2}, {"L2", 1}} {
		if res, _, err := b.s.Flag(ctx, "u", tc.lease, tc.version, tokens.ReasonInvalidGrant, "reauth:invalid_grant", now); err != nil || res != tokens.FlagStale {
			t.Fatalf("lease %s version %d: %v %v", tc.lease, tc.version, res, err)
		}
		if inQueue("u") {
			t.Fatalf("lease %s version %d: a stale flag left a queue entry", tc.lease, tc.version)
		}
	}
	b.want(t, "u", map[string]string{"s": "active", "lo": "L1", "f": "0"})

	b.set(t, "u", "xl", 1)
	res, tr, err := b.s.Flag(ctx, "u", "L1", 1, tokens.ReasonInvalidGrant, "reauth:invalid_grant", now)
	if err != nil || res != tokens.Flagged || tr == nil || tr.From != tokens.Active || tr.To != tokens.ReauthRequired {
		t.Fatalf("flag: %v %+v %v", res, tr, err)
	}
	b.want(t, "u", map[string]string{"s": "reauth_required", "sr": tokens.ReasonInvalidGrant, "sa": formatInt(ms(now)),
		"le": "reauth:invalid_grant", "f": "1", "lo": "", "lu": "", "xl": "", "v": "1"})
	if sc, err := b.rdb.ZScore(ctx, b.s.reauthKey(), "u").Result(); err != nil || int64(sc) != ms(now) {
		t.Fatalf("queue entry %v %v", sc, err)
	}

	if res, tr, err := b.s.Flag(ctx, "u", "L1", 1, tokens.ReasonInvalidGrant, "reauth:invalid_grant", now.Add(time.Second)); err != nil || res != tokens.AlreadyFlagged || tr != nil {
		t.Fatalf("again: %v %+v %v", res, tr, err)
	}
	b.want(t, "u", map[string]string{"f": "1", "sa": formatInt(ms(now))})

	// The script's own answers: {status, state}.
	key := []string{b.s.tokenKey("u")}
	for _, tc := range []struct {
		version int64
		want    []any
	}{{1, []any{int64(3), "reauth_required"}}, {2, []any{int64(2), "reauth_required"}}} {
		if v, err := flagScript.Run(ctx, b.rdb, key, "L1", tc.version, "r", ms(now), "e").Slice(); err != nil || !reflect.DeepEqual(v, tc.want) {
			t.Fatalf("version %d answered %v %v, want %v", tc.version, v, err, tc.want)
		}
	}
}

// TestReleaseScript: only the lease's holder releases it.
func TestReleaseScript(t *testing.T) {
	b, ctx := setupLua(t)
	b.put(t, "u")
	if _, _, err := b.s.Acquire(ctx, "u", "L1", "", b.t0, b.t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	key := []string{b.s.tokenKey("u")}
	if n, err := releaseScript.Run(ctx, b.rdb, key, "L2").Int(); err != nil || n != 0 {
		t.Fatalf("another's release answered %d %v", n, err)
	}
	b.want(t, "u", map[string]string{"lo": "L1", "lu": formatInt(ms(b.t0.Add(time.Minute)))})
	if err := b.s.Release(ctx, "u", "L1"); err != nil {
		t.Fatal(err)
	}
	b.want(t, "u", map[string]string{"lo": "", "lu": "", "v": "1"})
	if n, err := releaseScript.Run(ctx, b.rdb, key, "L1").Int(); err != nil || n != 0 {
		t.Fatalf("second release answered %d %v", n, err)
	}
}

// TestRekeyScript: a rekey replaces the key id and ciphertext only at
// the version the caller read, and does not bump it.
func TestRekeyScript(t *testing.T) {
	b, ctx := setupLua(t)
	b.put(t, "u")
	if ok, err := b.s.Rekey(ctx, "u", 2, "k2", []byte("c2")); err != nil || ok {
		t.Fatalf("stale version: %v %v", ok, err)
	}
	b.want(t, "u", map[string]string{"k": "k1", "c": "sealed-1"})
	if ok, err := b.s.Rekey(ctx, "u", 1, "k2", []byte("c2")); err != nil || !ok {
		t.Fatalf("rekey: %v %v", ok, err)
	}
	b.want(t, "u", map[string]string{"k": "k2", "c": "c2", "v": "1"})
	if ok, err := b.s.Rekey(ctx, "nobody", 1, "k2", []byte("c2")); err != nil || ok {
		t.Fatalf("no record: %v %v", ok, err)
	}
	if n, _ := b.rdb.Exists(ctx, b.s.tokenKey("nobody")).Result(); n != 0 {
		t.Fatal("rekey created a record")
	}
}

// TestSetStateScript: an operator disables any user and enables only a
// disabled one; the refresh lease is left alone; a disabled user leaves
// the re-auth queue.
func TestSetStateScript(t *testing.T) {
	b, ctx := setupLua(t)
	now := b.t0.Add(time.Second)
	if _, err := b.s.SetState(ctx, "nobody", tokens.Disabled, tokens.ReasonOperator, now); err != tokens.ErrNotFound {
		t.Fatalf("no record: %v", err)
	}
	if n, _ := b.rdb.Exists(ctx, b.s.tokenKey("nobody")).Result(); n != 0 {
		t.Fatal("set state created a record")
	}

	b.put(t, "u")
	if _, _, err := b.s.Acquire(ctx, "u", "L1", "", b.t0, b.t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := b.rdb.ZAdd(ctx, b.s.reauthKey(), redis.Z{Score: 1, Member: "u"}).Err(); err != nil {
		t.Fatal(err)
	}
	tr, err := b.s.SetState(ctx, "u", tokens.Disabled, tokens.ReasonOperator, now)
	if err != nil || tr == nil || tr.From != tokens.Active || tr.To != tokens.Disabled {
		t.Fatalf("disable: %+v %v", tr, err)
	}
	b.want(t, "u", map[string]string{"s": "disabled", "sr": tokens.ReasonOperator, "sa": formatInt(ms(now)), "lo": "L1"})
	if n, _ := b.rdb.ZCard(ctx, b.s.reauthKey()).Result(); n != 0 {
		t.Fatal("a disabled user is still queued")
	}
	if tr, err := b.s.SetState(ctx, "u", tokens.Disabled, "again", now.Add(time.Second)); err != nil || tr != nil {
		t.Fatalf("disable twice: %+v %v", tr, err)
	}
	b.want(t, "u", map[string]string{"sr": tokens.ReasonOperator, "sa": formatInt(ms(now))})

	tr, err = b.s.SetState(ctx, "u", tokens.Active, tokens.ReasonOperator, now.Add(time.Second))
	if err != nil || tr == nil || tr.From != tokens.Disabled || tr.To != tokens.Active {
		t.Fatalf("enable: %+v %v", tr, err)
	}
	b.want(t, "u", map[string]string{"s": "active", "sa": formatInt(ms(now.Add(time.Second)))})

	// Enabling moves only a disabled user: the script answers the state
	// and leaves it.
	b.set(t, "u", "s", "reauth_required", "sr", tokens.ReasonInvalidGrant)
	if from, err := setStateScript.Run(ctx, b.rdb, []string{b.s.tokenKey("u")}, "active", "r", ms(now)).Text(); err != nil || from != "reauth_required" {
		t.Fatalf("enable reauth_required answered %q %v", from, err)
	}
	b.want(t, "u", map[string]string{"s": "reauth_required", "sr": tokens.ReasonInvalidGrant})
}

// TestUnlockScript: only the lock's owner releases it.
func TestUnlockScript(t *testing.T) {
	b, ctx := setupLua(t)
	if ok, err := b.s.TryLock(ctx, "stats", "me", time.Minute); err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	key := []string{b.s.lockKey("stats")}
	if n, err := unlockScript.Run(ctx, b.rdb, key, "other").Int(); err != nil || n != 0 {
		t.Fatalf("another's unlock answered %d %v", n, err)
	}
	if ok, _ := b.s.TryLock(ctx, "stats", "other", time.Minute); ok {
		t.Fatal("lock taken while held")
	}
	if err := b.s.Unlock(ctx, "stats", "me"); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.rdb.Exists(ctx, key[0]).Result(); n != 0 {
		t.Fatal("the lock is still there")
	}
	if n, err := unlockScript.Run(ctx, b.rdb, key, "me").Int(); err != nil || n != 0 {
		t.Fatalf("second unlock answered %d %v", n, err)
	}
}

// TestShardsSettleScript: an announcement of a count other than the
// layout marks that count dirty; settling records the layout, drops the
// dirty marks and stale announcements, and refuses (nothing recorded)
// when a dirty mark changed since the caller read it.
func TestShardsSettleScript(t *testing.T) {
	b, ctx := setupLua(t)
	key := b.s.shardsKey()
	s4 := New(b.rdb, Options{Prefix: b.s.prefix, Shards: 4})
	s16 := New(b.rdb, Options{Prefix: b.s.prefix, Shards: 16})
	if err := b.rdb.HSet(ctx, key, "layout", 4).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s4.AnnounceShards(ctx, "four", b.t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s16.AnnounceShards(ctx, "old", b.t0); err != nil {
		t.Fatal(err)
	}
	h, _ := b.rdb.HGetAll(ctx, key).Result()
	if want := map[string]string{"layout": "4", "r:four": "4:" + formatInt(ms(b.t0.Add(time.Hour))), "r:old": "16:" + formatInt(ms(b.t0)), "dirty:16": "1"}; !reflect.DeepEqual(h, want) {
		t.Fatalf("after announcements %v, want %v", h, want)
	}

	cutoff := ms(b.t0.Add(time.Minute))
	if n, err := shardsSettleScript.Run(ctx, b.rdb, []string{key}, 4, cutoff, "dirty:16", "0").Int(); err != nil || n != 0 {
		t.Fatalf("dirtied meanwhile answered %d %v", n, err)
	}
	if got, _ := b.rdb.HGetAll(ctx, key).Result(); !reflect.DeepEqual(got, h) {
		t.Fatalf("a refused settle changed %v to %v", h, got)
	}
	if n, err := shardsSettleScript.Run(ctx, b.rdb, []string{key}, 4, cutoff, "dirty:16", "1").Int(); err != nil || n != 1 {
		t.Fatalf("settle answered %d %v", n, err)
	}
	h, _ = b.rdb.HGetAll(ctx, key).Result()
	if want := map[string]string{"layout": "4", "r:four": "4:" + formatInt(ms(b.t0.Add(time.Hour)))}; !reflect.DeepEqual(h, want) {
		t.Fatalf("after settling %v, want %v", h, want)
	}
}
