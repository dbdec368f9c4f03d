package refresher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testPolicy() refresher.Policy {
	return refresher.Policy{
		Lead: 10 * time.Minute, Jitter: 2 * time.Minute, DefaultLifetime: time.Hour, Timeout: 5 * time.Second,
		RetryInitial: 30 * time.Second, RetryMax: 30 * time.Minute, RetryAfterCap: time.Hour,
		DegradedAfter: 3,
	}
}

// syncBuffer collects every log line of a test for the leak check.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type bundle struct {
	srv     *redistest.Server
	rdb     *redis.Client
	store   *redisstore.Store
	clk     *clock.Fake
	prov    *fake.Provider
	keys    *tokens.Keyring
	logs    *syncBuffer
	metrics *refresher.Metrics
	results chan refresher.Result
	policy  refresher.Policy
}

func setup(t *testing.T, fo fake.Options, policy refresher.Policy) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	clk := clock.NewFake(t0)
	fo.Clock = clk
	keys, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{srv: srv, clk: clk, prov: fake.New(fo), keys: keys, logs: &syncBuffer{},
		metrics: refresher.NewMetrics(prometheus.NewRegistry()), results: make(chan refresher.Result, 100000), policy: policy}
	b.rdb = srv.Client(t)
	b.store = b.newStore(t)
	return b
}

func (b *bundle) newStore(t *testing.T) *redisstore.Store {
	return redisstore.New(b.srv.Client(t), redisstore.Options{Prefix: b.srv.Prefix, Shards: 8})
}

// refresher returns a refresher with its own Redis client, as a separate
// process would have, calling the fake. It is stopped at cleanup.
func (b *bundle) refresher(t *testing.T, start bool) *refresher.Refresher {
	t.Helper()
	if start {
		return b.startWith(t, nil, b.prov, b.policy, 16, time.Minute)
	}
	return b.newWith(t, nil, b.prov, b.policy, 16, time.Minute)
}

func (b *bundle) putUsers(t *testing.T, r *refresher.Refresher, n int) []string {
	t.Helper()
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("user-%04d", i)
		if _, err := r.Put(context.Background(), "fake", b.prov.Issue(users[i])); err != nil {
			t.Fatal(err)
		}
	}
	return users
}

// wait collects results until want of them match outcome, failing on
// timeout. Other outcomes are returned too, for inspection.
func (b *bundle) wait(t *testing.T, outcome refresher.Outcome, want int) []refresher.Result {
	t.Helper()
	var got []refresher.Result
	n := 0
	timeout := time.After(30 * time.Second)
	for n < want {
		select {
		case r := <-b.results:
			got = append(got, r)
			if r.Outcome == outcome {
				n++
			}
		case <-timeout:
			var other []string
			for _, r := range got {
				if r.Outcome != outcome {
					other = append(other, fmt.Sprintf("%s:%s:%v", r.User, r.Outcome, r.Err))
				}
			}
			t.Fatalf("timed out waiting for %d %q results, got %d (of %d results; others %v)", want, outcome, n, len(got), other)
		}
	}
	return got
}

func (b *bundle) record(t *testing.T, user string) tokens.Record {
	t.Helper()
	rec, err := b.store.Load(context.Background(), user)
	if err != nil {
		t.Fatalf("load %s: %v", user, err)
	}
	return rec
}

// assertNoLeak checks that no token value the provider ever issued is in
// any Redis value (DUMP of every key of the test) or any log line.
func (b *bundle) assertNoLeak(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	secrets := b.prov.Secrets()
	if len(secrets) == 0 {
		t.Fatal("no secrets issued; the leak check would prove nothing")
	}
	var dumps bytes.Buffer
	iter := b.rdb.Scan(ctx, 0, b.srv.Prefix+"*", 1000).Iterator()
	keys := 0
	for iter.Next(ctx) {
		keys++
		dumps.WriteString(iter.Val())
		d, err := b.rdb.Dump(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatal(err)
		}
		dumps.WriteString(d)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if keys == 0 {
		t.Fatal("no keys to check")
	}
	logs := b.logs.String()
	for _, s := range secrets {
		if bytes.Contains(dumps.Bytes(), []byte(s)) {
			t.Fatalf("token value %.10s... found in clear text in Redis", s)
		}
		if strings.Contains(logs, s) {
			t.Fatalf("token value %.10s... found in the logs", s)
		}
	}
}

func TestRefreshCyclesAcrossInstances(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 1}, testPolicy())
	const n = 1000
	users := b.putUsers(t, b.refresher(t, false), n)
	rs := []*refresher.Refresher{b.refresher(t, true), b.refresher(t, true), b.refresher(t, true)}

	for cycle := 1; cycle <= 3; cycle++ {
		b.clk.Advance(time.Hour)
		b.wait(t, "ok", n)
		if got, want := b.prov.Stats().Refreshes, n*cycle; got != want {
			t.Fatalf("cycle %d: provider saw %d refreshes, want %d", cycle, got, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range rs {
		if err := r.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := b.prov.Stats()
	if st.Refreshes != 3*n || st.Rejected != 0 || st.Calls != 3*n {
		t.Fatalf("provider stats %+v, want %d refreshes, %d calls, 0 rejected", st, 3*n, 3*n)
	}
	for _, u := range users {
		if got := b.prov.Refreshes(u); got != 3 {
			t.Fatalf("%s refreshed %d times, want 3", u, got)
		}
		if rec := b.record(t, u); rec.State != tokens.Active || rec.Failures != 0 || rec.LastRefresh.IsZero() {
			t.Fatalf("%s: state %s failures %d last refresh %v", u, rec.State, rec.Failures, rec.LastRefresh)
		}
	}
	q, err := b.store.ReauthQueue(context.Background())
	if err != nil || len(q) != 0 {
		t.Fatalf("reauth queue %v, %v; want empty", q, err)
	}
	if got := testutil.ToFloat64(b.metrics.ReauthFlagged.WithLabelValues(tokens.ReasonInvalidGrant)); got != 0 {
		t.Fatalf("reauth flags %v, want 0", got)
	}
	if got := testutil.ToFloat64(b.metrics.RefreshTotal.WithLabelValues("fake", "ok")); got != 3*n {
		t.Fatalf("refresh_total ok %v, want %d", got, 3*n)
	}
	b.assertNoLeak(t)
}

func TestOutageNeverFlags(t *testing.T) {
	p := testPolicy()
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 2}, p)
	const n = 200
	users := b.putUsers(t, b.refresher(t, true), n)
	b.prov.SetOutage(503, 0)

	// Each round moves time past the longest possible retry, so every
	// user makes exactly one attempt per round.
	prevMax := time.Duration(0)
	for attempt := 1; attempt <= 8; attempt++ {
		if attempt == 1 {
			b.clk.Advance(time.Hour)
		} else {
			b.clk.Advance(p.RetryMax + time.Second)
		}
		now := b.clk.Now()
		res := b.wait(t, "transient", n)
		envelope := p.RetryEnvelope(attempt)
		var maxDelay time.Duration
		for _, r := range res {
			if r.Outcome != "transient" {
				continue
			}
			d := r.Next.Sub(now)
			if d < 0 || d > envelope {
				t.Fatalf("attempt %d: retry in %v, want within [0, %v]", attempt, d, envelope)
			}
			maxDelay = max(maxDelay, d)
		}
		// With 200 users the largest full-jitter delay is close to the
		// envelope: it grows until the cap, then stays under it.
		if maxDelay < envelope*8/10 {
			t.Fatalf("attempt %d: longest retry %v, want near the envelope %v", attempt, maxDelay, envelope)
		}
		if envelope < p.RetryMax && maxDelay <= prevMax {
			t.Fatalf("attempt %d: retries did not grow: %v after %v", attempt, maxDelay, prevMax)
		}
		prevMax = maxDelay
	}
	for _, u := range users {
		if rec := b.record(t, u); rec.State != tokens.Degraded || rec.Failures != 8 || rec.LastError != "transient:http_503" {
			t.Fatalf("%s: state %s failures %d last error %q, want degraded after 8 transient failures", u, rec.State, rec.Failures, rec.LastError)
		}
	}

	// Throttling: Retry-After is honoured, up to the cap.
	b.prov.SetOutage(429, 50*time.Minute)
	b.clk.Advance(p.RetryMax + time.Second)
	now := b.clk.Now()
	for _, r := range b.wait(t, "transient", n) {
		if d := r.Next.Sub(now); r.Outcome == "transient" && (d < 50*time.Minute || d > 50*time.Minute+p.RetryMax) {
			t.Fatalf("retry after 429 with Retry-After 50m in %v", d)
		}
	}
	b.prov.SetOutage(429, 5*time.Hour)
	b.clk.Advance(time.Hour + time.Second)
	now = b.clk.Now()
	for _, r := range b.wait(t, "transient", n) {
		if d := r.Next.Sub(now); r.Outcome == "transient" && d != p.RetryAfterCap {
			t.Fatalf("retry after 429 with Retry-After 5h in %v, want the cap %v", d, p.RetryAfterCap)
		}
	}

	// Recovery: every user refreshes and is active again.
	b.prov.SetOutage(0, 0)
	b.clk.Advance(time.Hour + time.Second)
	b.wait(t, "ok", n)
	for _, u := range users {
		if rec := b.record(t, u); rec.State != tokens.Active || rec.Failures != 0 {
			t.Fatalf("%s: state %s failures %d after recovery", u, rec.State, rec.Failures)
		}
	}
	q, _ := b.store.ReauthQueue(context.Background())
	if len(q) != 0 || b.prov.Stats().Rejected != 0 {
		t.Fatalf("after outage: %d in reauth queue, %d rejected", len(q), b.prov.Stats().Rejected)
	}
	events, err := b.store.Events(context.Background(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	degraded, recovered := 0, 0
	for _, e := range events {
		switch {
		case e.To == "degraded" && e.Reason == tokens.ReasonTransientFailures:
			degraded++
		case e.From == "degraded" && e.To == "active" && e.Reason == tokens.ReasonRefreshed:
			recovered++
		case e.To == "reauth_required":
			t.Fatalf("event %+v during an outage", e)
		}
	}
	if degraded != n || recovered != n {
		t.Fatalf("events: %d degraded, %d recovered, want %d each", degraded, recovered, n)
	}
	b.assertNoLeak(t)
}

func TestCircuitBreakerStopsCalls(t *testing.T) {
	p := testPolicy()
	p.CircuitFailures, p.CircuitCooldown = 5, 10*time.Minute
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 3}, p)
	const n = 100
	r := b.refresher(t, false)
	b.putUsers(t, r, n)
	b.prov.SetOutage(503, 0)
	b.clk.Advance(time.Hour)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	// Workers that passed the breaker before it opened still call; after
	// that nobody does until the cooldown ends.
	skipped, failed := 0, 0
	for skipped+failed < n {
		x := <-b.results
		switch x.Outcome {
		case "circuit_open":
			skipped++
			if x.Next.Before(b.clk.Now().Add(p.CircuitCooldown)) {
				t.Fatalf("skipped user due again at %v, before the circuit closes", x.Next)
			}
		case "transient":
			failed++
		default:
			t.Fatalf("unexpected result %+v", x)
		}
	}
	if calls := b.prov.Stats().Calls; calls != failed || calls < 5 || calls > 5+16 {
		t.Fatalf("provider called %d times (%d failures seen), want 5 plus at most the in-flight workers", calls, failed)
	}
	if got := testutil.ToFloat64(b.metrics.CircuitOpen.WithLabelValues("fake")); got != 1 {
		t.Fatalf("circuit gauge %v, want 1", got)
	}
	// After the cooldown one probe goes through; it succeeds and closes
	// the circuit, and everyone refreshes. Users that asked while the
	// probe was in flight are deferred by a cooldown: move time for them.
	b.prov.SetOutage(0, 0)
	b.clk.Advance(p.RetryMax + p.CircuitCooldown + p.Jitter + time.Second)
	for ok := 0; ok < n; {
		select {
		case x := <-b.results:
			switch x.Outcome {
			case "ok":
				ok++
			case "circuit_open":
				b.clk.Advance(p.CircuitCooldown + p.Jitter)
			default:
				t.Fatalf("unexpected result %+v now %v rec %+v", x, b.clk.Now(), b.record(t, x.User))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("timed out after %d refreshes", ok)
		}
	}
	if got := testutil.ToFloat64(b.metrics.CircuitOpen.WithLabelValues("fake")); got != 0 {
		t.Fatalf("circuit gauge %v after recovery, want 0", got)
	}
}

func TestRevokedUserFlaggedOnce(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 4}, testPolicy())
	const n = 20
	r := b.refresher(t, true)
	users := b.putUsers(t, r, n)
	victim := users[7]
	b.prov.Revoke(victim)

	for cycle := 0; cycle < 3; cycle++ {
		b.clk.Advance(time.Hour)
		want := n - 1
		if cycle == 0 {
			want = n - 1
			res := b.wait(t, "ok", want)
			_ = res
		} else {
			b.wait(t, "ok", want)
		}
	}
	rec := b.record(t, victim)
	if rec.State != tokens.ReauthRequired || rec.StateReason != tokens.ReasonInvalidGrant || rec.StateAt.IsZero() {
		t.Fatalf("victim: state %s reason %q at %v", rec.State, rec.StateReason, rec.StateAt)
	}
	if calls := b.prov.Stats().Rejected; calls != 1 {
		t.Fatalf("victim refreshed %d times after revocation, want 1 (it leaves the due set)", calls)
	}
	q, err := b.store.ReauthQueue(context.Background())
	if err != nil || len(q) != 1 || q[0].UserID != victim || q[0].Reason != tokens.ReasonInvalidGrant || q[0].Provider != "fake" {
		t.Fatalf("reauth queue %+v, %v", q, err)
	}
	if got := testutil.ToFloat64(b.metrics.ReauthFlagged.WithLabelValues(tokens.ReasonInvalidGrant)); got != 1 {
		t.Fatalf("reauth_flagged_total %v, want 1", got)
	}
	if due, _ := b.store.DueAt(context.Background(), tokens.RefreshSet, victim); !due.IsZero() {
		t.Fatalf("flagged user still due at %v", due)
	}
	events, _ := b.store.Events(context.Background(), 1000)
	flags := 0
	for _, e := range events {
		if e.User == victim && e.To == "reauth_required" {
			flags++
			if e.From != "active" || e.Reason != tokens.ReasonInvalidGrant {
				t.Fatalf("flag event %+v", e)
			}
		}
	}
	if flags != 1 {
		t.Fatalf("%d flag events, want 1", flags)
	}

	// A new consent: the app stores a fresh token; the user is back.
	tr, err := r.Put(context.Background(), "fake", b.prov.Issue(victim))
	if err != nil || tr == nil || tr.From != tokens.ReauthRequired || tr.To != tokens.Active {
		t.Fatalf("put after reauth: %+v, %v", tr, err)
	}
	if q, _ := b.store.ReauthQueue(context.Background()); len(q) != 0 {
		t.Fatalf("reauth queue after put: %+v", q)
	}
	b.clk.Advance(time.Hour)
	b.wait(t, "ok", n)
	if got := b.prov.Refreshes(victim); got != 1 {
		t.Fatalf("victim refreshed %d times after new consent, want 1", got)
	}
	b.assertNoLeak(t)
}

func TestExpiredRefreshTokenFlagsWithoutCalling(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, RefreshLifetime: 90 * time.Minute, Seed: 5}, testPolicy())
	r := b.refresher(t, true)
	users := b.putUsers(t, r, 1)
	b.clk.Advance(2 * time.Hour) // past both expiries: the due refresh never happened (daemon down)
	res := b.wait(t, "reauth", 1)
	if rec := b.record(t, users[0]); rec.StateReason != tokens.ReasonRefreshTokenExpired {
		t.Fatalf("reason %q, results %+v", rec.StateReason, res)
	}
	if calls := b.prov.Stats().Calls; calls != 0 {
		t.Fatalf("provider called %d times for an expired refresh token", calls)
	}
}

func TestRefreshTokenLapseRefreshedAhead(t *testing.T) {
	// Access tokens live 1h, refresh tokens only 30m: the refresh
	// token's expiry decides when to refresh.
	b := setup(t, fake.Options{AccessLifetime: time.Hour, RefreshLifetime: 30 * time.Minute, Seed: 6}, testPolicy())
	r := b.refresher(t, true)
	users := b.putUsers(t, r, 10)
	due, _ := b.store.DueAt(context.Background(), tokens.RefreshSet, users[0])
	if lapse := t0.Add(30 * time.Minute); !due.Before(lapse.Add(-b.policy.Lead)) && !due.Equal(lapse.Add(-b.policy.Lead)) {
		t.Fatalf("due %v, want by %v", due, lapse.Add(-b.policy.Lead))
	}
	b.clk.Advance(20 * time.Minute)
	b.wait(t, "ok", 10)
	if st := b.prov.Stats(); st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNewerTokenAdoptedInsteadOfFlagging(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 7}, testPolicy())
	r0 := b.refresher(t, false)
	users := b.putUsers(t, r0, 1)
	u := users[0]
	// While the refresh is in flight the app stores a new consent, which
	// invalidates the refresh token being used: the provider answers
	// invalid_grant, but the user must not be flagged.
	racing := &racingProvider{inner: b.prov, before: func() {
		if _, err := r0.Put(context.Background(), "fake", b.prov.Issue(u)); err != nil {
			t.Error(err)
		}
	}}
	b.clk.Advance(time.Hour)
	b.startWith(t, nil, racing, b.policy, 0, time.Minute)
	// The newer token is not assumed alive: it is verified by refreshing
	// it at once, and the user stays active because that works.
	res := b.wait(t, "ok", 1)
	if rec := b.record(t, u); rec.State != tokens.Active {
		t.Fatalf("state %s after a racing put, results %+v", rec.State, res)
	}
	if st := b.prov.Stats(); st.Rejected != 1 || st.Refreshes != 1 {
		t.Fatalf("stats %+v: the in-flight refresh should have been rejected and the newer token refreshed", st)
	}
	if got := testutil.ToFloat64(b.metrics.ReauthFlagged.WithLabelValues(tokens.ReasonInvalidGrant)); got != 0 {
		t.Fatalf("flagged %v times", got)
	}
	// A put is not a reuse: the token refused was never rotated.
	if got := testutil.ToFloat64(b.metrics.RefreshTotal.WithLabelValues("fake", "superseded")); got != 1 {
		t.Fatalf("superseded counted %v times", got)
	}
	if got := testutil.ToFloat64(b.metrics.RefreshTotal.WithLabelValues("fake", "reuse")); got != 0 {
		t.Fatalf("reuse counted %v times", got)
	}
}

type racingProvider struct {
	inner  refresher.Provider
	once   sync.Once
	before func()
}

func (p *racingProvider) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	p.once.Do(p.before)
	return p.inner.Refresh(ctx, t)
}

func TestCrashedHolderBlocksOnlyUntilLeaseEnds(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 8}, testPolicy())
	r0 := b.refresher(t, false)
	users := b.putUsers(t, r0, 2)
	stuck, other := users[0], users[1]
	ctx := context.Background()

	// A refresher claims the user and takes its lease, then dies.
	b.clk.Advance(time.Hour)
	now := b.clk.Now()
	lease := time.Minute
	sh := scheduler.Shard(stuck, 8)
	claimed, err := b.store.ClaimDue(ctx, tokens.RefreshSet, sh, now, now.Add(lease), 10)
	if err != nil || !containsMember(claimed, stuck) {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	if _, st, err := b.store.Acquire(ctx, stuck, "dead-replica", "", now, now.Add(lease)); err != nil || st != tokens.Acquired {
		t.Fatalf("acquire: %v %v", st, err)
	}
	// Entries of other users in that shard were claimed too; hand them back.
	var back []scheduler.Done[struct{}]
	for _, c := range claimed {
		if c.Member != stuck {
			back = append(back, scheduler.Done[struct{}]{Member: c.Member, Fence: c.Fence, Next: now})
		}
	}
	if len(back) > 0 {
		if _, err := b.store.FinishDue(ctx, tokens.RefreshSet, back); err != nil {
			t.Fatal(err)
		}
	}

	b.refresher(t, true)
	b.wait(t, "ok", 1)
	if b.prov.Refreshes(other) != 1 || b.prov.Refreshes(stuck) != 0 {
		t.Fatalf("refreshes: other %d stuck %d; want 1 and 0 while the lease holds", b.prov.Refreshes(other), b.prov.Refreshes(stuck))
	}
	b.clk.Advance(2*lease + time.Second) // the lease, then its grace
	b.wait(t, "ok", 1)
	if b.prov.Refreshes(stuck) != 1 {
		t.Fatalf("stuck user refreshed %d times after the lease, want 1", b.prov.Refreshes(stuck))
	}
	if rec := b.record(t, stuck); rec.LeaseID != "" || rec.State != tokens.Active {
		t.Fatalf("after takeover: owner %q state %s", rec.LeaseID, rec.State)
	}
}

func containsMember(ds []scheduler.Due, m string) bool {
	for _, d := range ds {
		if d.Member == m {
			return true
		}
	}
	return false
}

func TestMalformedRecordQuarantined(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 9}, testPolicy())
	r := b.refresher(t, true)
	users := b.putUsers(t, r, 3)
	ctx := context.Background()
	// Corrupt one record behind syncd's back.
	key := b.srv.Prefix + "{u:" + users[1] + "}:tok"
	if err := b.rdb.HSet(ctx, key, "ae", "not-a-number").Err(); err != nil {
		t.Fatal(err)
	}
	b.clk.Advance(time.Hour)
	res := b.wait(t, "ok", 2)
	quarantined := false
	for _, r := range res {
		quarantined = quarantined || (r.User == users[1] && r.Outcome == "error")
	}
	if !quarantined {
		b.wait(t, "error", 1)
	}
	_, err := b.store.Load(ctx, users[1])
	if !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("load after quarantine: %v", err)
	}
	q, err := b.store.Quarantined(ctx)
	if err != nil || len(q) != 1 || q[0] != users[1] {
		t.Fatalf("quarantined %v %v", q, err)
	}
	if got := testutil.ToFloat64(b.metrics.Quarantined); got != 1 {
		t.Fatalf("quarantine metric %v", got)
	}
}

func TestOnUseRefreshIsSingleAcrossReplicas(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 10, Latency: 20 * time.Millisecond}, testPolicy())
	replicas := []*refresher.Refresher{b.refresher(t, false), b.refresher(t, false), b.refresher(t, false)}
	users := b.putUsers(t, replicas[0], 1)
	u := users[0]
	ctx := context.Background()

	// Fresh enough: no refresh.
	tok, err := replicas[1].Token(ctx, u, 30*time.Minute)
	if err != nil || b.prov.Stats().Calls != 0 {
		t.Fatalf("token: %v, calls %d", err, b.prov.Stats().Calls)
	}
	// A job needs the token for longer than it has: 30 callers on three
	// replicas, one refresh.
	var wg sync.WaitGroup
	got := make(chan tokens.Token, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nt, err := replicas[i%3].Token(ctx, u, 2*time.Hour)
			if err != nil {
				t.Error(err)
				return
			}
			got <- nt
		}()
	}
	wg.Wait()
	close(got)
	if st := b.prov.Stats(); st.Refreshes != 1 || st.Rejected != 0 {
		t.Fatalf("provider stats %+v, want exactly one refresh", st)
	}
	var fresh tokens.Token
	for nt := range got {
		if nt.AccessToken == tok.AccessToken {
			t.Fatal("a caller got the old token")
		}
		fresh = nt
	}
	// A 401 with the old token: someone already refreshed, no new refresh.
	if nt, err := replicas[2].Rejected(ctx, u, tok); err != nil || nt.AccessToken != fresh.AccessToken || b.prov.Stats().Refreshes != 1 {
		t.Fatalf("rejected old token: %v, refreshes %d", err, b.prov.Stats().Refreshes)
	}
	// A 401 with the current token, reported by every replica at once:
	// one refresh.
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := replicas[i].Rejected(ctx, u, fresh); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st := b.prov.Stats(); st.Refreshes != 2 || st.Rejected != 0 {
		t.Fatalf("provider stats %+v after concurrent 401s, want 2 refreshes and none rejected", st)
	}
	// A flagged user gets a clear error.
	b.prov.Revoke(u)
	b.clk.Advance(time.Minute)
	if _, err := replicas[0].Token(ctx, u, 3*time.Hour); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("revoked: %v", err)
	}
	if _, err := replicas[1].Token(ctx, u, 0); !errors.Is(err, tokens.ErrReauthRequired) {
		t.Fatalf("flagged: %v", err)
	}
	b.assertNoLeak(t)
}

// TestReconcileRepairsMissingRefreshEntry: a runnable user whose refresh
// entry is missing (a crash between storing the record and scheduling it)
// is found by the housekeeping walk, scheduled now and refreshed; users
// that are fine, or not runnable, are left alone.
func TestReconcileRepairsMissingRefreshEntry(t *testing.T) {
	b := setup(t, fake.Options{}, testPolicy())
	r := b.refresher(t, false)
	ctx := context.Background()
	users := b.putUsers(t, r, 5)
	if _, err := r.Disable(ctx, users[4]); err != nil {
		t.Fatal(err)
	}
	// The crash: user 0's record is active but its refresh entry is gone.
	if err := b.store.ScheduleDue(ctx, tokens.RefreshSet, []scheduler.Entry{{Member: users[0]}}); err != nil {
		t.Fatal(err)
	}
	counts, repaired, err := r.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if repaired != 1 || counts["active"] != 4 || counts["disabled"] != 1 {
		t.Fatalf("repaired %d, counts %v", repaired, counts)
	}
	if at, _ := b.store.DueAt(ctx, tokens.RefreshSet, users[0]); !at.Equal(b.clk.Now().Truncate(time.Millisecond)) {
		t.Fatalf("user 0 due %v, want now", at)
	}
	if at, _ := b.store.DueAt(ctx, tokens.RefreshSet, users[4]); !at.IsZero() {
		t.Fatalf("the disabled user was scheduled: %v", at)
	}
	// A second walk finds nothing to repair.
	if _, repaired, err := r.Reconcile(ctx); err != nil || repaired != 0 {
		t.Fatalf("second walk repaired %d (%v)", repaired, err)
	}
	if !strings.Contains(b.logs.String(), "had no refresh entry") {
		t.Fatal("the repair was not logged")
	}
}

// stallStore returns a store on a client of its own with a read timeout
// well below the stalls tests cause, as syncd runs with, and no retries.
func (b *bundle) stallStore(t *testing.T) *redisstore.Store {
	t.Helper()
	opt, err := redis.ParseURL(b.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opt.ReadTimeout, opt.MaxRetries = 200*time.Millisecond, -1
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })
	store := redisstore.New(rdb, redisstore.Options{Prefix: b.srv.Prefix, Shards: 8})
	if err := store.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return store
}

// newWith returns a refresher over store (nil: a store of its own) that
// calls prov, with workers (0: the default) and lease.
func (b *bundle) newWith(t *testing.T, store refresher.Store, prov refresher.Provider, policy refresher.Policy, workers int, lease time.Duration) *refresher.Refresher {
	t.Helper()
	if store == nil {
		s := b.newStore(t)
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		store = s
	}
	r, err := refresher.New(store, b.keys, map[string]refresher.ProviderEntry{"fake": {Provider: prov, Policy: policy}},
		refresher.Options{Workers: workers, Batch: 64, PollInterval: 5 * time.Millisecond, Lease: lease, Clock: b.clk,
			Logger: zerolog.New(b.logs), Metrics: b.metrics, Observe: func(res refresher.Result) { b.results <- res }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// startWith is newWith, started; it is stopped at cleanup, after the
// test's deferred calls (which release any gate).
func (b *bundle) startWith(t *testing.T, store refresher.Store, prov refresher.Provider, policy refresher.Policy, workers int, lease time.Duration) *refresher.Refresher {
	t.Helper()
	r := b.newWith(t, store, prov, policy, workers, lease)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return r
}

// failedAcquires is a store that reports each user whose lease could not
// be taken or renewed (the call failed).
type failedAcquires struct {
	refresher.Store
	users chan string
}

func (s failedAcquires) Acquire(ctx context.Context, user, lease, renew string, now, until time.Time) (tokens.Record, tokens.AcquireStatus, error) {
	rec, st, err := s.Store.Acquire(ctx, user, lease, renew, now, until)
	if err != nil {
		s.users <- user
	}
	return rec, st, err
}

// gatedProvider holds the refresh of one user until released, so a test
// can act while the refresher is busy with it.
type gatedProvider struct {
	inner   refresher.Provider
	user    string
	started chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
}

func newGate(inner refresher.Provider, user string) *gatedProvider {
	return &gatedProvider{inner: inner, user: user, started: make(chan struct{}), release: make(chan struct{})}
}

// waitStarted waits for the held call to begin.
func (p *gatedProvider) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-p.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the held refresh never started")
	}
}

// open lets the held call go on; it may be called more than once.
func (p *gatedProvider) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

func (p *gatedProvider) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	if t.UserID == p.user {
		p.once.Do(func() {
			close(p.started)
			<-p.release
		})
	}
	return p.inner.Refresh(ctx, t)
}

// TestJobRefreshWhileRefresherHoldsClaim: the refresher has claimed two
// users and taken both leases; while it is busy with the first, a job in
// the same process needs a fresh token for the second. The second user's
// refresh token must be presented exactly once (before the fix the job
// took the refresher's lease because the owner was the process, rotated
// the token, and the queued handler then presented the rotated-away one).
func TestJobRefreshWhileRefresherHoldsClaim(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 11}, testPolicy())
	r0 := b.refresher(t, false)
	ctx := context.Background()
	// Two users of one shard, so one claim takes both, in due order.
	var pair []string
	for i := 0; len(pair) < 2; i++ {
		u := fmt.Sprintf("user-%04d", i)
		if scheduler.Shard(u, 8) == 0 {
			pair = append(pair, u)
		}
	}
	first, second := pair[0], pair[1]
	for _, u := range pair {
		if _, err := r0.Put(ctx, "fake", b.prov.Issue(u)); err != nil {
			t.Fatal(err)
		}
	}
	b.clk.Advance(55 * time.Minute) // both tokens inside the lead
	now := b.clk.Now()
	if err := b.store.ScheduleDue(ctx, tokens.RefreshSet, []scheduler.Entry{
		{Member: first, At: now.Add(-2 * time.Minute)}, {Member: second, At: now.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	gate := newGate(b.prov, first)
	defer gate.open()
	r := b.startWith(t, nil, gate, b.policy, 1, time.Minute)
	gate.waitStarted(t)
	// The job: it needs the second user's token for longer than it lives.
	tok, err := r.Token(ctx, second, time.Hour)
	if err != nil {
		t.Fatalf("job token: %v", err)
	}
	gate.open()
	res := b.wait(t, "ok", 1)
	for len(res) < 2 {
		select {
		case x := <-b.results:
			res = append(res, x)
		case <-time.After(10 * time.Second):
			t.Fatalf("the second user's claim was never handled: %+v", res)
		}
	}
	if n := b.prov.Refreshes(second); n != 1 {
		t.Fatalf("second user refreshed %d times, want 1 (results %+v)", n, res)
	}
	if st := b.prov.Stats(); st.Reused != 0 || st.Rejected != 0 {
		t.Fatalf("provider stats %+v: a rotated refresh token was presented again", st)
	}
	rec := b.record(t, second)
	if rec.State != tokens.Active {
		t.Fatalf("second user %s", rec.State)
	}
	cur, err := r.Token(ctx, second, 0)
	if err != nil || cur.AccessToken != tok.AccessToken {
		t.Fatalf("stored token is not the one the job got: %v", err)
	}
}

// TestRotatedTokenKeptThroughRedisStall: Redis stops answering writes
// while the provider rotates a token. The refresher keeps the new token in
// memory and retries the commit until Redis is back, so the next refresh
// presents the current token (before the fix the single commit failed,
// the rotated token was forgotten and the next attempt presented the old
// one: invalid_grant, and the user flagged).
func TestRotatedTokenKeptThroughRedisStall(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 12}, testPolicy())
	r0 := b.refresher(t, false)
	users := b.putUsers(t, r0, 1)
	u := users[0]
	ctx := context.Background()
	b.clk.Advance(55 * time.Minute)

	gate := newGate(b.prov, u)
	defer gate.open()
	b.startWith(t, b.stallStore(t), gate, b.policy, 4, time.Minute)
	gate.waitStarted(t)
	// Writes (and scripts) stall for 1.5 s, from before the provider answers.
	if err := b.rdb.Do(ctx, "CLIENT", "PAUSE", "1500", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	gate.open()
	res := b.wait(t, "ok", 1)
	if st := b.prov.Stats(); st.Refreshes != 1 || st.Rejected != 0 {
		t.Fatalf("provider %+v, results %+v", st, res)
	}
	if !strings.Contains(b.logs.String(), "retrying while the lease lasts") {
		t.Fatal("the stall did not fail a commit; the test proves nothing")
	}
	// The next refresh presents the token stored after the stall.
	b.clk.Advance(time.Hour)
	b.wait(t, "ok", 1)
	if st := b.prov.Stats(); st.Refreshes != 2 || st.Rejected != 0 || st.Reused != 0 {
		t.Fatalf("provider %+v after the second refresh", st)
	}
	if rec := b.record(t, u); rec.State != tokens.Active {
		t.Fatalf("state %s", rec.State)
	}
	b.assertNoLeak(t)
}

// countingProvider counts refresh calls and holds them until hold is
// closed.
type countingProvider struct {
	inner   refresher.Provider
	calls   atomic.Int64
	started chan string // the user, when a call starts and there is room
	hold    chan struct{}
}

func (p *countingProvider) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	p.calls.Add(1)
	select {
	case p.started <- t.UserID:
	default:
	}
	<-p.hold
	return p.inner.Refresh(ctx, t)
}

// TestStoreFailureStopsProviderCalls: once storing a rotated token has
// failed, the rest of the claimed batch does not call the provider until
// Redis answers again (before the fix every prefetched user was still
// refreshed, and each rotation was lost), and the rotated token that
// could not be stored within its lease is kept and stored when Redis is
// back.
func TestStoreFailureStopsProviderCalls(t *testing.T) {
	policy := testPolicy()
	policy.Timeout = time.Second
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 13}, policy)
	r0 := b.refresher(t, false)
	users := b.putUsers(t, r0, 20)
	ctx := context.Background()
	b.clk.Advance(55 * time.Minute)

	prov := &countingProvider{inner: b.prov, started: make(chan string, 1), hold: make(chan struct{})}
	// A 3 s lease (real seconds: the commit retries in real time) so the
	// rotated token's commit gives up within the test.
	store := failedAcquires{Store: b.stallStore(t), users: make(chan string, 100)}
	b.startWith(t, store, prov, policy, 1, 3*time.Second)
	var first string
	select {
	case first = <-prov.started:
	case <-time.After(10 * time.Second):
		t.Fatal("no refresh started")
	}
	// The claimed batch: every user of the first user's shard.
	var batch []string
	for _, u := range users {
		if scheduler.Shard(u, 8) == scheduler.Shard(first, 8) {
			batch = append(batch, u)
		}
	}
	if len(batch) < 2 {
		t.Fatalf("batch of %d; the test needs more", len(batch))
	}
	if err := b.rdb.Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	unpaused := false
	unpause := func() {
		if !unpaused {
			unpaused = true
			if err := b.rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Error(err)
			}
		}
	}
	defer unpause()
	close(prov.hold)
	// Every user of the batch is handled while Redis takes no writes: the
	// first one's rotation is lost when its lease ends, the rest fail to
	// renew their lease (a store call failed since the batch's) and do
	// not call the provider. (Claims of other shards fail too.)
	failed := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(failed) < len(batch)-1 {
		select {
		case u := <-store.users:
			if u != first && slices.Contains(batch, u) {
				failed[u] = true
			}
		case <-deadline:
			t.Fatalf("%d of %d users failed to renew during the stall: %v", len(failed), len(batch)-1, failed)
		}
	}
	if n := prov.calls.Load(); n != 1 {
		t.Fatalf("the provider was called %d times while Redis took no writes, want 1", n)
	}
	if !strings.Contains(b.logs.String(), "kept in memory for the next attempt") {
		t.Fatal("the rotated token was not kept")
	}
	// Redis is back: the handled entries are rescheduled (their results
	// reach Observe once written), and the next attempt stores the token
	// kept in memory instead of presenting the spent one.
	unpause()
	got := map[string]refresher.Outcome{}
	for len(got) < len(batch) {
		select {
		case res := <-b.results:
			if slices.Contains(batch, res.User) {
				got[res.User] = res.Outcome
			}
		case <-deadline:
			t.Fatalf("%d of %d results written after the stall: %v", len(got), len(batch), got)
		}
	}
	if got[first] == refresher.OutcomeOK {
		t.Fatalf("first user refreshed during the stall: %v", got)
	}
	b.clk.Advance(time.Minute)
	for {
		select {
		case res := <-b.results:
			if res.User != first {
				continue
			}
			if res.Outcome != "ok" {
				t.Fatalf("first user: %s %v", res.Outcome, res.Err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the first user was never handled again")
		}
		break
	}
	if st := b.prov.Stats(); st.Reused != 0 || b.prov.Refreshes(first) != 1 {
		t.Fatalf("provider %+v, first user refreshed %d times", st, b.prov.Refreshes(first))
	}
	if got := b.record(t, first); got.State != tokens.Active || got.LastRefresh.IsZero() {
		t.Fatalf("first user %s, last refresh %v", got.State, got.LastRefresh)
	}
}

// TestNewerTokenVerifiedAfterReuse: a refresher stalls past its lease in
// the provider call; a job on another replica takes the lease over and
// rotates the token;
// the stalled call then presents the rotated-away token, the strict
// provider revokes the grant. The newer token found in Redis is not
// assumed alive: it is refreshed at once, refused too, and the user is
// flagged instead of staying active with a dead token (before the fix it
// was adopted silently at info level). The reuse is counted and logged at
// warn.
func TestNewerTokenVerifiedAfterReuse(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 14}, testPolicy())
	r0 := b.refresher(t, false)
	u := b.putUsers(t, r0, 1)[0]
	ctx := context.Background()
	b.clk.Advance(55 * time.Minute)

	gate := newGate(b.prov, u)
	defer gate.open()
	b.startWith(t, nil, gate, b.policy, 1, time.Minute)
	gate.waitStarted(t)
	// The stalled call outlives its lease; a job on another replica
	// takes the lease over and rotates the token.
	b.clk.Advance(2 * time.Minute)
	if _, err := b.refresher(t, false).Token(ctx, u, time.Hour); err != nil {
		t.Fatalf("other replica: %v", err)
	}
	gate.open()
	b.wait(t, "reauth", 1)
	if rec := b.record(t, u); rec.State != tokens.ReauthRequired {
		t.Fatalf("state %s, want reauth_required: the grant was revoked by the reuse", rec.State)
	}
	if got := testutil.ToFloat64(b.metrics.RefreshTotal.WithLabelValues("fake", "reuse")); got != 1 {
		t.Fatalf("reuse counted %v times, want 1", got)
	}
	if st := b.prov.Stats(); st.Reused < 1 || st.Refreshes != 1 {
		t.Fatalf("provider %+v", st)
	}
	if !strings.Contains(b.logs.String(), `"level":"warn"`) || !strings.Contains(b.logs.String(), "spent twice") {
		t.Fatal("the reuse was not logged at warn")
	}
	b.assertNoLeak(t)
}

// TestLostAnswerAndGracePeriod measures what a provider's rotation grace
// period buys: the provider rotates ten users' tokens but its answers are
// lost (a timeout on our side), so syncd still holds the spent tokens and
// presents them again at the retry. A strict provider (no grace) treats
// that as reuse and revokes every grant; syncd flags the users and counts
// each as a lost rotation. With a grace period longer than the retry
// delay the retry is accepted and nobody is flagged.
func TestLostAnswerAndGracePeriod(t *testing.T) {
	for _, tc := range []struct {
		grace       time.Duration
		wantFlagged int
	}{{0, 10}, {5 * time.Minute, 0}} {
		t.Run(fmt.Sprintf("grace=%s", tc.grace), func(t *testing.T) {
			policy := testPolicy()
			policy.RetryInitial = 30 * time.Second
			b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 15, RotationGracePeriod: tc.grace}, policy)
			users := b.putUsers(t, b.refresher(t, false), 10)
			b.prov.LoseResponses(len(users))
			b.clk.Advance(55 * time.Minute)
			b.refresher(t, true)
			b.wait(t, "transient", len(users))
			// The retries come within RetryEnvelope(1) = 30 s.
			b.clk.Advance(time.Minute)
			want := refresher.OutcomeOK
			if tc.wantFlagged > 0 {
				want = refresher.OutcomeReauth
			}
			b.wait(t, want, len(users))
			flagged := 0
			for _, u := range users {
				if b.record(t, u).State == tokens.ReauthRequired {
					flagged++
				}
			}
			lost := testutil.ToFloat64(b.metrics.RefreshTotal.WithLabelValues("fake", "lost"))
			st := b.prov.Stats()
			t.Logf("grace=%s users=%d lost_answers=%d flagged=%d counted_lost=%v reuses=%d grace_refreshes=%d",
				tc.grace, len(users), len(users), flagged, lost, st.Reused, st.GraceRefreshes)
			if flagged != tc.wantFlagged || int(lost) != tc.wantFlagged {
				t.Fatalf("flagged %d, counted lost %v; want %d", flagged, lost, tc.wantFlagged)
			}
		})
	}
}

// TestCrashAfterRotationCountedAsLost: a replica takes the lease, the
// provider rotates the token, and the replica dies (kill -9) before it
// stores the answer. No client can save that rotation from a strict
// provider; after the lease the next refresher presents the old token,
// the user is flagged, and the loss is counted as "lost" (not as a plain
// revocation) because the lease had ended without a release.
func TestCrashAfterRotationCountedAsLost(t *testing.T) {
	b := setup(t, fake.Options{AccessLifetime: time.Hour, Seed: 16}, testPolicy())
	r := b.refresher(t, false)
	u := b.putUsers(t, r, 1)[0]
	ctx := context.Background()
	b.clk.Advance(55 * time.Minute)
	now := b.clk.Now()
	rec, st, err := b.store.Acquire(ctx, u, "dead-replica/1", "", now, now.Add(time.Minute))
	if err != nil || st != tokens.Acquired {
		t.Fatalf("acquire: %v %v", st, err)
	}
	tok, err := b.keys.OpenRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.prov.Refresh(ctx, tok); err != nil { // the answer dies with the replica
		t.Fatal(err)
	}
	b.clk.Advance(3 * time.Minute) // past the lease and its grace
	b.refresher(t, true)
	b.wait(t, "reauth", 1)
	if got := testutil.ToFloat64(b.metrics.RefreshTotal.WithLabelValues("fake", "lost")); got != 1 {
		t.Fatalf("lost counted %v, want 1", got)
	}
	if !strings.Contains(b.logs.String(), "rotated token was probably lost") {
		t.Fatal("no warning about the lost rotation")
	}
}
