package refresher_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// setupPrivate is setup on a private server (StartPrivate), which a
// test may give a replica.
func setupPrivate(t *testing.T, fo fake.Options) *bundle {
	t.Helper()
	srv := redistest.StartPrivate(t)
	clk := clock.NewFake(t0)
	fo.Clock = clk
	keys, err := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{srv: srv, clk: clk, prov: fake.New(fo), keys: keys, logs: &syncBuffer{},
		metrics: refresher.NewMetrics(prometheus.NewRegistry()), results: make(chan refresher.Result, 1000), policy: testPolicy()}
	b.rdb = srv.Client(t)
	b.store = b.newStore(t)
	return b
}

// durableStore is a store of its own client whose token commits wait for
// want replicas (-1: automatic) for at most wait.
func (b *bundle) durableStore(t *testing.T, want int, wait time.Duration) *redisstore.Store {
	t.Helper()
	s := redisstore.New(b.srv.Client(t), redisstore.Options{Prefix: b.srv.Prefix, Shards: 8, MinReplicasAcked: want, WaitTimeout: wait})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitCalls is how many WAITs the server ran.
func waitCalls(t *testing.T, c *redis.Client) string {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_wait:calls="); ok {
			n, _, _ := strings.Cut(v, ",")
			return n
		}
	}
	return "0"
}

// held reads fields of user's record on c (a master or a replica).
func held(t *testing.T, c *redis.Client, b *bundle, user string) map[string]string {
	t.Helper()
	key := b.srv.Prefix + "{u:" + user + "}:tok"
	m, err := c.HGetAll(context.Background(), key).Result()
	if err != nil || len(m) == 0 {
		t.Fatalf("record %s: %v %v", key, m, err)
	}
	return m
}

func unackedCount(b *bundle) float64 {
	return testutil.ToFloat64(b.metrics.CommitUnacked.WithLabelValues("fake"))
}

// TestDurableCommitReachesReplica: with a replica, the automatic mode
// waits for it: when a refresh is reported, the replica holds the new
// token.
func TestDurableCommitReachesReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a replica")
	}
	b := setupPrivate(t, fake.Options{AccessLifetime: time.Hour, Seed: 31})
	replica := redistest.StartReplica(t, b.srv)
	rc := replica.Client(t)
	const n = 20
	b.putUsers(t, b.refresher(t, false), n)
	b.clk.Advance(55 * time.Minute)
	b.startWith(t, b.durableStore(t, -1, 5*time.Second), b.prov, b.policy, 4, time.Minute)
	for range n {
		res := b.wait(t, refresher.OutcomeOK, 1)
		res0 := res[len(res)-1]
		m, r := held(t, b.rdb, b, res0.User), held(t, rc, b, res0.User)
		if m["v"] != "2" || r["v"] != m["v"] || r["c"] != m["c"] {
			t.Fatalf("%s: master v%s, replica v%s (same token: %v)", res0.User, m["v"], r["v"], r["c"] == m["c"])
		}
	}
	if got := waitCalls(t, b.rdb); got != "20" {
		t.Fatalf("WAIT ran %s times, want %d", got, n)
	}
	if got := unackedCount(b); got != 0 {
		t.Fatalf("%v commits unacknowledged", got)
	}
	if st := b.prov.Stats(); st.Refreshes != n || st.Reused != 0 {
		t.Fatalf("provider %+v", st)
	}
}

// TestUnackedCommitKeptAndRetried: the replica is frozen, so WAIT times
// out. The commit is not trusted: it is counted, the token is kept in
// memory with its lease, and the user is not reported refreshed. The next
// attempt commits the kept token again, without calling the provider and
// without presenting the old token, once replicas acknowledge it; also
// when a failover lost the first commit (the old record is back).
func TestUnackedCommitKeptAndRetried(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a replica")
	}
	for _, failover := range []bool{false, true} {
		name := "replica catches up"
		if failover {
			name = "failover lost the commit"
		}
		t.Run(name, func(t *testing.T) {
			b := setupPrivate(t, fake.Options{AccessLifetime: time.Hour, Seed: 32})
			replica := redistest.StartReplica(t, b.srv)
			rc := replica.Client(t)
			u := b.putUsers(t, b.refresher(t, false), 1)[0]
			before := held(t, b.rdb, b, u)
			ctx := context.Background()

			thaw := replica.Freeze(t)
			b.clk.Advance(55 * time.Minute)
			b.startWith(t, b.durableStore(t, -1, time.Second), b.prov, b.policy, 1, time.Minute)
			res := b.wait(t, refresher.OutcomeError, 1)
			if err := res[len(res)-1].Err; !errors.Is(err, tokens.ErrUnacked) {
				t.Fatalf("result: %v", err)
			}
			if got := unackedCount(b); got != 1 {
				t.Fatalf("%v commits counted unacknowledged, want 1", got)
			}
			stored := held(t, b.rdb, b, u)
			if stored["v"] != "2" || stored["lo"] == "" {
				t.Fatalf("master: v%s, lease %q: want v2 with the lease kept", stored["v"], stored["lo"])
			}
			if !strings.Contains(b.logs.String(), "not acknowledged by replicas") {
				t.Fatal("not logged")
			}
			thaw()
			redistest.WaitReplicated(t, b.rdb)
			if failover {
				// The promoted replica never had the commit: the old
				// record is back.
				args := []any{}
				for k, v := range before {
					args = append(args, k, v)
				}
				key := b.srv.Prefix + "{u:" + u + "}:tok"
				if _, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Del(ctx, key)
					p.HSet(ctx, key, args...)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}

			b.clk.Advance(20 * time.Second) // the retry, a quarter lease later
			b.wait(t, refresher.OutcomeOK, 1)
			m, r := held(t, b.rdb, b, u), held(t, rc, b, u)
			if m["c"] != stored["c"] || r["c"] != m["c"] || r["v"] != m["v"] {
				t.Fatalf("master v%s, replica v%s; master holds the kept token: %v, replica the same: %v", m["v"], r["v"], m["c"] == stored["c"], r["c"] == m["c"])
			}
			// Committed again over the first commit (v3), or over the old
			// record the failover brought back (v2).
			if want := map[bool]string{false: "3", true: "2"}[failover]; m["v"] != want {
				t.Fatalf("master v%s, want v%s", m["v"], want)
			}
			if m["lo"] != "" {
				t.Fatalf("lease %q not released after the acknowledged commit", m["lo"])
			}
			if got := b.prov.Refreshes(u); got != 1 {
				t.Fatalf("provider refreshed %d times, want 1", got)
			}
			if st := b.prov.Stats(); st.Reused != 0 || st.Rejected != 0 {
				t.Fatalf("provider %+v", st)
			}
			if got := unackedCount(b); got != 1 {
				t.Fatalf("%v commits counted unacknowledged, want 1", got)
			}
			b.assertNoLeak(t)
		})
	}
}

// TestSingleNodeDoesNotWait: on a single node the automatic mode sends
// no WAIT (no added latency).
func TestSingleNodeDoesNotWait(t *testing.T) {
	b := setupPrivate(t, fake.Options{AccessLifetime: time.Hour, Seed: 33})
	const n = 10
	b.putUsers(t, b.refresher(t, false), n)
	b.clk.Advance(55 * time.Minute)
	b.startWith(t, b.durableStore(t, -1, time.Second), b.prov, b.policy, 4, time.Minute)
	b.wait(t, refresher.OutcomeOK, n)
	if got := waitCalls(t, b.rdb); got != "0" {
		t.Fatalf("WAIT ran %s times on a single node", got)
	}
	if got := unackedCount(b); got != 0 {
		t.Fatalf("%v commits unacknowledged", got)
	}
}

// lostCommit is a store whose first Commit lands and then, before its
// answer arrives, a failover brings back an older record (rolledBack, at
// another version): the caller sees no answer, and its retry is fenced
// out by the version.
type lostCommit struct {
	refresher.Store
	rdb        *redis.Client
	key        string
	rolledBack map[string]string
	once       sync.Once
}

func (s *lostCommit) Commit(ctx context.Context, lease string, rec tokens.Record, reason string, now time.Time) (bool, *tokens.Transition, error) {
	lost := false
	s.once.Do(func() { lost = true })
	ok, tr, err := s.Store.Commit(ctx, lease, rec, reason, now)
	if !lost || err != nil {
		return ok, tr, err
	}
	args := []any{}
	for k, v := range s.rolledBack {
		args = append(args, k, v)
	}
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.key)
		p.HSet(ctx, s.key, args...)
		return nil
	}); err != nil {
		return false, nil, err
	}
	return false, nil, fmt.Errorf("commit token: %w", scheduler.ErrOutcomeUnknown)
}

// issuedTokens records the tokens the provider hands out.
type issuedTokens struct {
	inner refresher.Provider
	mu    sync.Mutex
	last  tokens.Token
}

func (p *issuedTokens) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	out, err := p.inner.Refresh(ctx, t)
	if err == nil {
		p.mu.Lock()
		p.last = out
		p.mu.Unlock()
	}
	return out, err
}

// TestRefusedRetryAfterLostCommitKeepsTheToken: a refresh's commit lands
// but its answer is lost, and a failover brings back an older record, so
// the retry is fenced out. That is not a newer token superseding this
// one: the provider has rotated the token, and the one it returned is the
// only live one. It is kept and stored at the next attempt, without
// calling the provider again (before the fix the refresher adopted the
// older record, and the live token was gone).
func TestRefusedRetryAfterLostCommitKeepsTheToken(t *testing.T) {
	b := setupPrivate(t, fake.Options{AccessLifetime: time.Hour, Seed: 33})
	r0 := b.refresher(t, false)
	ctx := context.Background()
	const u = "lost-1"
	if _, err := r0.Put(ctx, "fake", b.prov.Issue(u)); err != nil {
		t.Fatal(err)
	}
	older := held(t, b.rdb, b, u)
	if _, err := r0.Put(ctx, "fake", b.prov.Issue(u)); err != nil {
		t.Fatal(err)
	}
	store := &lostCommit{Store: b.newStore(t), rdb: b.rdb, key: b.srv.Prefix + "{u:" + u + "}:tok", rolledBack: older}
	prov := &issuedTokens{inner: b.prov}
	b.clk.Advance(55 * time.Minute)
	b.startWith(t, store, prov, b.policy, 1, time.Minute)
	for done := false; !done; {
		select {
		case res := <-b.results:
			if res.Outcome == refresher.OutcomeOK {
				done = true
				break
			}
			if res.Outcome == refresher.OutcomeReauth {
				t.Fatalf("user flagged: the live token was lost (%v)", res.Err)
			}
			// Kept for the next attempt, a quarter lease later.
			b.clk.Advance(20 * time.Second)
		case <-time.After(30 * time.Second):
			t.Fatal("the user was never refreshed")
		}
	}
	rec, err := b.store.Load(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := b.keys.OpenRecord(rec)
	if err != nil {
		t.Fatal(err)
	}
	prov.mu.Lock()
	live := prov.last
	prov.mu.Unlock()
	if stored.RefreshToken != live.RefreshToken {
		t.Fatalf("stored refresh token is not the one the provider issued last (record v%d)", rec.Version)
	}
	if got := b.prov.Refreshes(u); got != 1 {
		t.Fatalf("provider refreshed %d times, want 1", got)
	}
	if st := b.prov.Stats(); st.Reused != 0 || st.Rejected != 0 {
		t.Fatalf("provider %+v", st)
	}
}
