package scheduler_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/scheduler"
)

const set = "test"

type bundle struct {
	srv   *redistest.Server
	clk   *clock.Fake
	store *redisstore.Store
	// client and prefix: srv's, or a cluster's (setupCluster).
	client func(t *testing.T) redis.UniversalClient
	prefix string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	b := &bundle{srv: srv, clk: clock.NewFake(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)), prefix: srv.Prefix}
	b.client = func(t *testing.T) redis.UniversalClient { return srv.Client(t) }
	b.store = b.newStore(t)
	return b
}

// setupCluster is setup on a 3-master Redis Cluster (no srv).
func setupCluster(t *testing.T) *bundle {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	c := redistest.StartCluster(t)
	b := &bundle{clk: clock.NewFake(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)), prefix: c.Prefix}
	b.client = func(t *testing.T) redis.UniversalClient { return c.Client(t) }
	b.store = b.newStore(t)
	return b
}

func (b *bundle) newStore(t *testing.T) *redisstore.Store {
	s := redisstore.New(b.client(t), redisstore.Options{Prefix: b.prefix, Shards: 4})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func (b *bundle) schedule(t *testing.T, n int, at time.Time) []string {
	t.Helper()
	members := make([]string, n)
	entries := make([]scheduler.Entry, n)
	for i := range members {
		members[i] = fmt.Sprintf("m%04d", i)
		entries[i] = scheduler.Entry{Member: members[i], At: at}
	}
	if err := b.store.ScheduleDue(context.Background(), set, entries); err != nil {
		t.Fatal(err)
	}
	return members
}

// none: these engines prefetch nothing, and their finishes write nothing.
type none = struct{}

func (b *bundle) engine(t *testing.T, h scheduler.Handler[none, none], workers int) *scheduler.Engine[none, none] {
	t.Helper()
	e := scheduler.NewEngine(b.newStore(t), h, scheduler.Options[none]{
		Set: set, Workers: workers, Batch: 32, Lease: time.Minute, PollInterval: 5 * time.Millisecond,
		Clock: b.clk, Logger: zerolog.Nop(),
	})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	return e
}

func TestEnginesShareWorkWithoutDuplicates(t *testing.T) {
	enginesShareWork(t, setup(t))
}

// TestEnginesShareWorkOnCluster: the same on a Redis Cluster, whose
// masters hold the due set's shards.
func TestEnginesShareWorkOnCluster(t *testing.T) {
	enginesShareWork(t, setupCluster(t))
}

func enginesShareWork(t *testing.T, b *bundle) {
	const n = 600
	members := b.schedule(t, n, b.clk.Now())
	var mu sync.Mutex
	counts := make(map[string]int)
	done := make(chan string, 3*n)
	next := b.clk.Now().Add(time.Hour)
	h := func(_ context.Context, d scheduler.Due, _ none, _ bool) scheduler.Outcome[none] {
		mu.Lock()
		counts[d.Member]++
		mu.Unlock()
		done <- d.Member
		return scheduler.Outcome[none]{Next: next}
	}
	var engines []*scheduler.Engine[none, none]
	for range 3 {
		engines = append(engines, b.engine(t, h, 8))
	}
	for range n {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("timed out")
		}
	}
	// Stop waits for the finishers, so the final state is written.
	for _, e := range engines {
		if err := e.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range members {
		if due, err := b.store.DueAt(context.Background(), set, m); err != nil || !due.Equal(next) {
			t.Fatalf("%s due %v (%v), want %v", m, due, err, next)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, m := range members {
		if counts[m] != 1 {
			t.Fatalf("%s handled %d times, want 1", m, counts[m])
		}
	}
	if n, _ := b.store.DueCount(context.Background(), set, b.clk.Now()); n != 0 {
		t.Fatalf("%d still due", n)
	}
}

func TestZeroNextRemoves(t *testing.T) {
	b := setup(t)
	members := b.schedule(t, 10, b.clk.Now())
	done := make(chan struct{}, 10)
	e := b.engine(t, func(context.Context, scheduler.Due, none, bool) scheduler.Outcome[none] {
		done <- struct{}{}
		return scheduler.Outcome[none]{}
	}, 2)
	for range members {
		<-done
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if due, _ := b.store.DueAt(context.Background(), set, m); !due.IsZero() {
			t.Fatalf("%s still scheduled at %v", m, due)
		}
	}
}

// TestSettledAfterTheWrite: an outcome's Settled hook runs once the
// engine has written the entry's next due time, so an observer that then
// moves the clock past the lease cannot find the claim still open.
func TestSettledAfterTheWrite(t *testing.T) {
	b := setup(t)
	members := b.schedule(t, 20, b.clk.Now())
	next := b.clk.Now().Add(time.Hour)
	type seen struct {
		member string
		due    time.Time
		err    error
	}
	settled := make(chan seen, len(members))
	b.engine(t, func(_ context.Context, d scheduler.Due, _ none, _ bool) scheduler.Outcome[none] {
		return scheduler.Outcome[none]{Next: next, Settled: func() {
			due, err := b.store.DueAt(context.Background(), set, d.Member)
			settled <- seen{d.Member, due, err}
		}}
	}, 4)
	got := map[string]bool{}
	for range members {
		s := <-settled
		if s.err != nil || !s.due.Equal(next) {
			t.Fatalf("%s settled while due at %v (%v), want %v", s.member, s.due, s.err, next)
		}
		if got[s.member] {
			t.Fatalf("%s settled twice", s.member)
		}
		got[s.member] = true
	}
}

func TestStopHandsBackUnstartedClaims(t *testing.T) {
	b := setup(t)
	due := b.clk.Now().Add(-time.Minute)
	members := b.schedule(t, 20, due)
	started := make(chan string, 20)
	e := b.engine(t, func(ctx context.Context, d scheduler.Due, _ none, _ bool) scheduler.Outcome[none] {
		started <- d.Member
		<-ctx.Done() // runs until the grace period is over
		return scheduler.Outcome[none]{Next: d.Due.Add(24 * time.Hour)}
	}, 1)
	running := <-started
	// One worker is busy; the rest of the claimed batch waits in the
	// queue. Stop marks the engine stopping before the (already expired)
	// grace cancels the handler, so every queued entry is handed back
	// at its due time instead of being run.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Stop(ctx); err == nil {
		t.Fatal("Stop past the grace period should report it")
	}
	if len(started) != 0 {
		t.Fatalf("%d more entries ran after Stop", len(started))
	}
	for _, m := range members {
		got, _ := b.store.DueAt(context.Background(), set, m)
		want := due
		if m == running {
			want = due.Add(24 * time.Hour)
		}
		if !got.Equal(want) {
			t.Fatalf("%s due %v, want %v", m, got, want)
		}
	}
}

// TestPrefetchedReachesItsClaim: what Prefetch read for a claim reaches
// that claim's handler, or TakePrefetched, once; the handlers of a batch
// whose prefetch failed get none.
func TestPrefetchedReachesItsClaim(t *testing.T) {
	b := setup(t)
	members := b.schedule(t, 10, b.clk.Now())
	var mu sync.Mutex
	failed := make(map[string]bool)
	prefetched := make(chan struct{}, len(members))
	prefetch := func(_ context.Context, batch []scheduler.Due) ([]string, error) {
		defer func() {
			for range batch {
				prefetched <- struct{}{}
			}
		}()
		if slices.ContainsFunc(batch, func(d scheduler.Due) bool { return d.Member == members[0] }) {
			mu.Lock()
			defer mu.Unlock()
			for _, d := range batch {
				failed[d.Member] = true
			}
			return nil, errors.New("prefetch failed")
		}
		values := make([]string, len(batch))
		for i, d := range batch {
			values[i] = fmt.Sprintf("%s/%d", d.Member, d.Fence)
		}
		return values, nil
	}
	type handled struct {
		d   scheduler.Due
		pre string
		ok  bool
	}
	started, release := make(chan string, 1), make(chan struct{})
	results := make(chan handled, len(members))
	h := func(_ context.Context, d scheduler.Due, pre string, ok bool) scheduler.Outcome[none] {
		select {
		case started <- d.Member: // the first holds the only worker
			<-release
		default:
		}
		results <- handled{d, pre, ok}
		return scheduler.Outcome[none]{}
	}
	e := scheduler.NewEngine(b.store, h, scheduler.Options[string]{Set: set, Workers: 1, Batch: 32,
		PollInterval: 5 * time.Millisecond, Clock: b.clk, Logger: zerolog.Nop(), Prefetch: prefetch})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Stop(context.Background()) })
	timeout := time.After(10 * time.Second)
	first := ""
	for range members {
		select {
		case <-prefetched:
		case <-timeout:
			t.Fatal("timed out waiting for the prefetches")
		}
	}
	select {
	case first = <-started:
	case <-timeout:
		t.Fatal("timed out waiting for the first handler")
	}
	mu.Lock()
	taken := ""
	for _, m := range members {
		if m != first && !failed[m] {
			taken = m
			break
		}
	}
	mu.Unlock()
	if taken == "" {
		t.Fatal("no member left to take from")
	}
	if v, ok := e.TakePrefetched(taken); !ok || !strings.HasPrefix(v, taken+"/") {
		t.Fatalf("TakePrefetched(%s) = %q %v", taken, v, ok)
	}
	if _, ok := e.TakePrefetched(taken); ok {
		t.Fatalf("TakePrefetched(%s) took a value twice", taken)
	}
	close(release)
	for range members {
		var r handled
		select {
		case r = <-results:
		case <-timeout:
			t.Fatal("timed out waiting for the handlers")
		}
		want := fmt.Sprintf("%s/%d", r.d.Member, r.d.Fence)
		switch m := r.d.Member; {
		case m == taken || failed[m]:
			if r.ok {
				t.Errorf("%s: handler got %q, want none", m, r.pre)
			}
		case !r.ok || r.pre != want:
			t.Errorf("%s: handler got %q %v, want %q", m, r.pre, r.ok, want)
		}
	}
}

func TestStartStopConcurrently(t *testing.T) {
	b := setup(t)
	noop := func(context.Context, scheduler.Due, none, bool) scheduler.Outcome[none] {
		return scheduler.Outcome[none]{}
	}
	e := scheduler.NewEngine(b.store, noop, scheduler.Options[none]{Set: set, Clock: b.clk, PollInterval: time.Millisecond})
	if err := e.Stop(context.Background()); err != nil {
		t.Fatalf("stop before start: %v", err)
	}
	e2 := scheduler.NewEngine(b.store, noop, scheduler.Options[none]{Set: set, Clock: b.clk, PollInterval: time.Millisecond})
	if err := e2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = e2.Stop(context.Background()); _ = e2.Start(context.Background()) }()
	}
	wg.Wait()
	if err := e2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestShardStable(t *testing.T) {
	for _, tc := range []struct {
		member string
		n      int
		want   int
	}{{"a", 1, 0}, {"user-1", 16, scheduler.Shard("user-1", 16)}} {
		if got := scheduler.Shard(tc.member, tc.n); got != tc.want || got < 0 || got >= max(tc.n, 1) {
			t.Fatalf("Shard(%q, %d) = %d", tc.member, tc.n, got)
		}
	}
	// Spread: 10000 members over 16 shards, none more than 20% off even.
	counts := make([]int, 16)
	for i := range 10000 {
		counts[scheduler.Shard(fmt.Sprintf("u%d", i), 16)]++
	}
	for i, c := range counts {
		if c < 500 || c > 750 {
			t.Fatalf("shard %d has %d of 10000", i, c)
		}
	}
}

// BenchmarkClaim measures the claim script: batches of 256 due entries
// claimed and finished, as the engine does.
func BenchmarkClaim(b *testing.B) {
	srv := redistest.Start(b)
	opt, _ := redis.ParseURL(srv.URL)
	opt.Protocol = 2
	store := redisstore.New(redis.NewClient(opt), redisstore.Options{Prefix: srv.Prefix, Shards: 1})
	ctx := context.Background()
	if err := store.Ping(ctx); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	entries := make([]scheduler.Entry, 256)
	for i := range entries {
		entries[i] = scheduler.Entry{Member: fmt.Sprintf("m%d", i), At: now.Add(-time.Second)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := store.ScheduleDue(ctx, set, entries); err != nil {
			b.Fatal(err)
		}
		ds, err := store.ClaimDue(ctx, set, 0, now, now.Add(time.Minute), 256)
		if err != nil || len(ds) != 256 {
			b.Fatalf("claimed %d: %v", len(ds), err)
		}
		done := make([]scheduler.Done[none], len(ds))
		for i, d := range ds {
			done[i] = scheduler.Done[none]{Member: d.Member, Fence: d.Fence, Next: now.Add(-time.Second)}
		}
		if _, err := store.FinishDue(ctx, set, done); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/entry")
}

// finishWatch wraps the real store and reports each member whose finish
// (a FinishDue to the handlers' answer) Redis answered.
type finishWatch struct {
	scheduler.Store[none]
	finished time.Time
	answered chan string
}

func (w *finishWatch) FinishDue(ctx context.Context, set string, done []scheduler.Done[none]) ([]bool, error) {
	held, err := w.Store.FinishDue(ctx, set, done)
	if err == nil {
		for _, d := range done {
			if d.Next.Equal(w.finished) {
				w.answered <- d.Member
			}
		}
	}
	return held, err
}

// TestRunsFinishedAcrossAnOutageRunOnce: runs in flight when Redis stops
// answering for longer than the client's read timeout finish once, even
// after every lease has passed. A lease renewal whose outcome the engine
// never learned (Redis applied it after the client gave up, or applied a
// go-redis retry of it) must not cost the claim, and a finish that fails
// during the outage is not dropped.
func TestRunsFinishedAcrossAnOutageRunOnce(t *testing.T) {
	const n, lease = 50, 1500 * time.Millisecond // heartbeats every 500ms
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	finished := t0.Add(time.Hour)
	type bundle struct {
		srv     *redistest.Server
		store   *redisstore.Store
		clk     *clock.Fake
		engine  *scheduler.Engine[none, none]
		release chan struct{}
		mu      sync.Mutex
		claimed map[string]int
		claims  map[string]scheduler.Due
	}
	setup := func(t *testing.T) *bundle {
		t.Helper()
		b := &bundle{srv: redistest.StartPrivate(t), clk: clock.NewFake(t0), release: make(chan struct{}),
			claimed: make(map[string]int), claims: make(map[string]scheduler.Due)}
		opt, err := redis.ParseURL(b.srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		opt.ReadTimeout = 100 * time.Millisecond
		redisstore.TuneClient(opt, 64, lease)
		rdb := redis.NewClient(opt)
		t.Cleanup(func() { _ = rdb.Close() })
		b.store = redisstore.New(rdb, redisstore.Options{Prefix: b.srv.Prefix, Shards: 1})
		ctx := context.Background()
		if err := b.store.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		var entries []scheduler.Entry
		for i := range n {
			entries = append(entries, scheduler.Entry{Member: fmt.Sprintf("m%02d", i), At: t0})
		}
		// The sentinel comes due with any entry a lost finish left leased
		// (one shard: one claim takes them in score order).
		entries = append(entries, scheduler.Entry{Member: "sentinel", At: t0.Add(5 * lease)})
		if err := b.store.ScheduleDue(ctx, set, entries); err != nil {
			t.Fatal(err)
		}
		started := make(chan struct{}, n)
		sentinel := make(chan struct{}, 1)
		h := func(_ context.Context, d scheduler.Due, _ none, _ bool) scheduler.Outcome[none] {
			if d.Member != "sentinel" {
				started <- struct{}{}
				<-b.release
			}
			return scheduler.Outcome[none]{Next: finished}
		}
		// Claims are counted as they are handed to workers: a member
		// claimed twice runs twice.
		prefetch := func(_ context.Context, batch []scheduler.Due) ([]none, error) {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, d := range batch {
				b.claimed[d.Member]++
				b.claims[d.Member] = d
				if d.Member == "sentinel" {
					sentinel <- struct{}{}
				}
			}
			return nil, nil
		}
		watch := &finishWatch{Store: b.store, finished: finished, answered: make(chan string, 10*n)}
		b.engine = scheduler.NewEngine(watch, h, scheduler.Options[none]{Set: set, Workers: n + 1, Batch: 64, Lease: lease,
			PollInterval: 5 * time.Millisecond, Clock: b.clk, Logger: zerolog.Nop(), Prefetch: prefetch})
		if err := b.engine.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.engine.Stop(context.Background()) })
		for range n {
			select {
			case <-started:
			case <-time.After(20 * time.Second):
				t.Fatal("timed out waiting for the runs to start")
			}
		}
		// Renewals from now on move the lease.
		b.clk.Advance(100 * time.Millisecond)
		t.Cleanup(func() {
			if t.Failed() {
				return
			}
			// Once Redis has answered every finish, every lease passes:
			// whatever is still leased comes due, and the sentinel with it.
			answered := make(map[string]bool)
			timeout := time.After(20 * time.Second)
		wait:
			for len(answered) < n {
				select {
				case m := <-watch.answered:
					answered[m] = true
				case <-timeout:
					t.Errorf("Redis answered the finishes of %d of %d runs", len(answered), n)
					break wait
				}
			}
			b.clk.Advance(10 * lease)
			b.engine.Notify()
			select {
			case <-sentinel:
			case <-time.After(20 * time.Second):
				t.Error("timed out waiting for the sentinel's claim")
				return
			}
			if err := b.engine.Stop(ctx); err != nil {
				t.Error(err)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			var again []string
			for m, c := range b.claimed {
				if m != "sentinel" && c != 1 {
					again = append(again, fmt.Sprintf("%s×%d", m, c))
				}
			}
			if len(again) > 0 {
				slices.Sort(again)
				t.Errorf("%d of %d finished runs were claimed to run again: %v", len(again), n, again)
				return
			}
			for i := range n {
				m := fmt.Sprintf("m%02d", i)
				if due, err := b.store.DueAt(ctx, set, m); err != nil || !due.Equal(finished) {
					t.Errorf("%s due %v (%v), want %v", m, due, err, finished)
				}
			}
		})
		return b
	}

	t.Run("renewal applied after its caller gave up", func(t *testing.T) {
		b := setup(t)
		// What a heartbeat that timed out on the client but reached Redis
		// leaves behind: every lease renewed, the engine none the wiser.
		b.mu.Lock()
		var renew []scheduler.Due
		for _, d := range b.claims {
			renew = append(renew, d)
		}
		b.mu.Unlock()
		renewed, err := b.store.RenewDue(context.Background(), set, b.clk.Now().Add(lease), renew)
		if err != nil {
			t.Fatal(err)
		}
		for i, ok := range renewed {
			if !ok {
				t.Fatalf("renewal of %s refused", renew[i].Member)
			}
		}
		close(b.release)
	})

	t.Run("finish during a pause", func(t *testing.T) {
		b := setup(t)
		over := b.srv.Pause(t, 2*time.Second)
		close(b.release) // the finishes meet a paused Redis
		select {
		case <-over:
		case <-time.After(20 * time.Second):
			t.Fatal("the pause did not end")
		}
	})
}
