package jobs_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/jobs"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/provider/fake"
	"github.com/syncd/syncd/internal/redisstore"
	"github.com/syncd/syncd/internal/redistest"
	"github.com/syncd/syncd/internal/refresher"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

const keyYAML = "encryption: {keys: [{id: k1, secret: O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY=}]}\nproviders: [{name: fake, kind: fake}]\n"

func parseJobs(t *testing.T, doc string) []config.JobConfig {
	t.Helper()
	cfg, err := config.Parse(strings.NewReader(keyYAML+doc), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Jobs
}

type bundle struct {
	t       *testing.T
	srv     *redistest.Server
	rdb     *redis.Client
	store   *redisstore.Store
	clk     *clock.Fake
	prov    *fake.Provider
	keys    *tokens.Keyring
	jobs    []config.JobConfig
	runs    chan jobs.Run
	metrics *jobs.Metrics
	// entry is the provider and limits each instance runs with.
	entry jobs.ProviderEntry
	logs  bytes.Buffer
	logMu sync.Mutex
}

func (b *bundle) Write(p []byte) (int, error) {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.logs.Write(p)
}

func setup(t *testing.T, jobsYAML string) *bundle {
	t.Helper()
	srv := redistest.Start(t)
	keys, _ := tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{3}, 32)})
	b := &bundle{t: t, srv: srv, clk: clock.NewFake(t0), keys: keys, jobs: parseJobs(t, jobsYAML),
		runs: make(chan jobs.Run, 100000), metrics: jobs.NewMetrics(prometheus.NewRegistry())}
	b.prov = fake.New(fake.Options{Clock: b.clk, AccessLifetime: time.Hour, Seed: 1})
	b.entry = jobs.ProviderEntry{Provider: b.prov, Burst: 1, MaxConcurrency: 16}
	b.rdb = srv.Client(t)
	b.store = b.newStore()
	return b
}

func (b *bundle) newStore() *redisstore.Store {
	s := redisstore.New(b.srv.Client(b.t), redisstore.Options{Prefix: b.srv.Prefix, Shards: 8})
	if err := s.Ping(context.Background()); err != nil {
		b.t.Fatal(err)
	}
	return s
}

// instance is one replica: its own clients, refresher and runner.
type instance struct {
	ref    *refresher.Refresher
	runner *jobs.Runner
}

func (b *bundle) instance(start bool) *instance {
	b.t.Helper()
	store := b.newStore()
	in := &instance{}
	var err error
	in.runner, err = jobs.NewRunner(store, func(rec tokens.Record, d time.Duration) provider.TokenSource { return in.ref.SourceFrom(rec, d) },
		map[string]jobs.ProviderEntry{"fake": b.entry}, b.jobs,
		jobs.Options{Workers: 16, Batch: 128, Lease: 30 * time.Second, PollInterval: 5 * time.Millisecond, Clock: b.clk,
			Logger: zerolog.New(b), Metrics: b.metrics, Observe: func(r jobs.Run) { b.runs <- r }})
	if err != nil {
		b.t.Fatal(err)
	}
	in.ref, err = refresher.New(store, b.keys, map[string]refresher.ProviderEntry{"fake": {Provider: b.prov, Policy: refresher.Policy{
		Lead: 10 * time.Minute, Jitter: time.Minute, DefaultLifetime: time.Hour, Timeout: 5 * time.Second,
		RetryInitial: time.Second, RetryMax: time.Minute, RetryAfterCap: time.Minute, DegradedAfter: 3}}},
		refresher.Options{Clock: b.clk, Logger: zerolog.New(b), Lease: 30 * time.Second, OnChange: in.runner.UserChanged})
	if err != nil {
		b.t.Fatal(err)
	}
	if start {
		if err := in.runner.Start(context.Background()); err != nil {
			b.t.Fatal(err)
		}
		b.t.Cleanup(func() { _ = in.runner.Stop(context.Background()) })
	}
	return in
}

func (b *bundle) put(in *instance, users ...string) {
	b.t.Helper()
	for _, u := range users {
		if _, err := in.ref.Put(context.Background(), "fake", b.prov.Issue(u)); err != nil {
			b.t.Fatal(err)
		}
	}
}

func userIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("u%04d", i)
	}
	return out
}

// wait collects runs until want of them have result, per job.
func (b *bundle) wait(result jobs.Result, want map[string]int) []jobs.Run {
	b.t.Helper()
	var got []jobs.Run
	left := 0
	for _, n := range want {
		left += n
	}
	timeout := time.After(60 * time.Second)
	for left > 0 {
		select {
		case r := <-b.runs:
			got = append(got, r)
			if r.Result == result && want[r.Job] > 0 {
				want[r.Job]--
				left--
			}
		case <-timeout:
			b.t.Fatalf("timed out waiting for %q runs: still want %v (got %d runs)", result, want, len(got))
		}
	}
	return got
}

func (b *bundle) outbox(user string, items ...string) {
	b.t.Helper()
	for i, it := range items {
		if err := b.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: b.store.OutboxKey(user),
			Values: []any{"data", it, "mime_type", "text/plain", "id", fmt.Sprintf("%s-%d", user, i), "tags", "a,b"}}).Err(); err != nil {
			b.t.Fatal(err)
		}
	}
}

func TestEveryUserEverySlotOnce(t *testing.T) {
	b := setup(t, `jobs:
  - {name: pull, kind: pull, schedule: "@every 2s"}
  - {name: push, kind: push, schedule: "@every 2s"}
`)
	const n = 2000
	users := userIDs(n)
	first := b.instance(false)
	b.put(first, users...) // before any runner started: Sync schedules them
	for _, u := range users {
		b.outbox(u, "first-"+u, "second-"+u)
	}
	for range 3 {
		b.instance(true)
	}
	for slot := 1; slot <= 5; slot++ {
		b.clk.Advance(2 * time.Second)
		b.wait("ok", map[string]int{"pull": n, "push": n})
	}
	for _, u := range users {
		pulls := b.prov.Pulls(u)
		if len(pulls) != 5 {
			t.Fatalf("%s pulled %d times in 5 slots, want 5", u, len(pulls))
		}
		for i := 1; i < len(pulls); i++ {
			if !pulls[i].After(pulls[i-1]) {
				t.Fatalf("%s pulled twice in one slot: %v", u, pulls)
			}
		}
		pushed := b.prov.Pushed(u)
		if len(pushed) != 2 || string(pushed[0].Data) != "first-"+u || string(pushed[1].Data) != "second-"+u {
			t.Fatalf("%s pushed %d items, want first and second in order", u, len(pushed))
		}
	}
	if n, _ := b.rdb.XLen(context.Background(), b.srv.Prefix+"pulled").Result(); n != 5*2000 {
		t.Fatalf("sink stream holds %d items, want %d", n, 5*2000)
	}
	st, err := b.store.JobState(context.Background(), users[7], "pull")
	if err != nil || st.Cursor != "5" || st.Failures != 0 || st.LastSuccess.IsZero() {
		t.Fatalf("job state %+v, %v", st, err)
	}
	if got := testutil.ToFloat64(b.metrics.Runs.WithLabelValues("pull", "ok")); got != 5*n {
		t.Fatalf("runs metric %v", got)
	}
}

func TestCrashedInstanceUsersRunElsewhere(t *testing.T) {
	b := setup(t, `jobs: [{name: pull, kind: pull, schedule: "@every 1m"}]`)
	users := userIDs(50)
	in := b.instance(false)
	b.put(in, users...)
	if err := in.runner.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	// A replica claims every due entry and dies holding the leases.
	b.clk.Advance(time.Minute)
	now := b.clk.Now()
	claimed := 0
	for sh := range 8 {
		ds, err := b.store.ClaimDue(context.Background(), jobs.SetName("pull"), sh, now, now.Add(30*time.Second), 1000)
		if err != nil {
			t.Fatal(err)
		}
		claimed += len(ds)
	}
	if claimed != 50 {
		t.Fatalf("claimed %d", claimed)
	}
	b.instance(true)
	if n, _ := b.store.DueCount(context.Background(), jobs.SetName("pull"), b.clk.Now()); n != 0 {
		t.Fatalf("%d due while the leases hold", n)
	}
	b.clk.Advance(31 * time.Second) // the dead replica's leases run out
	b.wait("ok", map[string]int{"pull": 50})
	for _, u := range users {
		if len(b.prov.Pulls(u)) != 1 {
			t.Fatalf("%s pulled %d times", u, len(b.prov.Pulls(u)))
		}
	}
}

func TestUnauthorizedMidPullRefreshesOnce(t *testing.T) {
	b := setup(t, `jobs: [{name: pull, kind: pull, schedule: "@every 1m"}]`)
	in := b.instance(true)
	b.put(in, "alice")
	b.prov.InvalidateAccess("alice")
	b.clk.Advance(time.Minute)
	b.wait("ok", map[string]int{"pull": 1})
	if st := b.prov.Stats(); st.Refreshes != 1 || st.Rejected != 0 {
		t.Fatalf("provider stats %+v: want one refresh, no rejection", st)
	}
	if rec, _ := b.store.Load(context.Background(), "alice"); rec.State != tokens.Active {
		t.Fatalf("state %s", rec.State)
	}
}

func TestReauthUserPausesAndResumes(t *testing.T) {
	b := setup(t, `jobs: [{name: pull, kind: pull, schedule: "@every 1m"}]`)
	in := b.instance(true)
	b.put(in, "bob", "carol")
	b.clk.Advance(time.Minute)
	b.wait("ok", map[string]int{"pull": 2})
	// Bob's consent is revoked and his access token dies: the next pull's
	// refresh fails for good, he is flagged and leaves the job.
	b.prov.Revoke("bob")
	b.prov.InvalidateAccess("bob")
	b.clk.Advance(time.Minute)
	got := b.wait("ok", map[string]int{"pull": 1})
	left := false
	for _, r := range got {
		left = left || (r.User == "bob" && r.Result == "left")
	}
	if !left {
		b.wait("left", map[string]int{"pull": 1})
	}
	if due, _ := b.store.DueAt(context.Background(), jobs.SetName("pull"), "bob"); !due.IsZero() {
		t.Fatalf("flagged user still due at %v", due)
	}
	b.clk.Advance(time.Minute)
	b.wait("ok", map[string]int{"pull": 1})
	if n := len(b.prov.Pulls("bob")); n != 1 {
		t.Fatalf("bob pulled %d times, want only the first", n)
	}
	// New consent: bob is back in the next slot.
	b.put(in, "bob")
	b.clk.Advance(time.Minute)
	b.wait("ok", map[string]int{"pull": 2})
	if n := len(b.prov.Pulls("bob")); n != 2 {
		t.Fatalf("bob pulled %d times after re-consent, want 2", n)
	}
}

func TestPushOrderAndDeadLetter(t *testing.T) {
	b := setup(t, `jobs: [{name: push, kind: push, schedule: "@every 1m", retry: {attempts: 2, initial: 1s, max: 2s}}]`)
	in := b.instance(true)
	b.put(in, "dora")
	b.outbox("dora", "a", "b", "poison-1", "c", "d")
	ctx := context.Background()
	// Run 1 delivers a and b, fails on the poison item; two retries fail
	// too; the third failure dead-letters it and c, d go through.
	b.clk.Advance(time.Minute)
	for i := 0; i < 2; i++ {
		r := b.wait("failed", map[string]int{"push": 1})
		if last := r[len(r)-1]; last.Next.Sub(b.clk.Now()) > 2*time.Second {
			t.Fatalf("retry %d at %v, want within the retry policy", i, last.Next)
		}
		b.clk.Advance(2 * time.Second)
	}
	b.wait("ok", map[string]int{"push": 1})
	var got []string
	for _, it := range b.prov.Pushed("dora") {
		got = append(got, string(it.Data))
	}
	if strings.Join(got, ",") != "a,b,c,d" {
		t.Fatalf("pushed %v, want a,b,c,d", got)
	}
	dead, err := b.rdb.XRange(ctx, b.store.DeadKey("dora"), "-", "+").Result()
	if err != nil || len(dead) != 1 || dead[0].Values["data"] != "poison-1" || !strings.Contains(dead[0].Values["error"].(string), "http_400") {
		t.Fatalf("dead letters %v, %v", dead, err)
	}
	if n, _ := b.rdb.XLen(ctx, b.store.OutboxKey("dora")).Result(); n != 0 {
		t.Fatalf("outbox still holds %d", n)
	}
}

func TestSyncAddsChangesAndRemovesJobs(t *testing.T) {
	b := setup(t, `jobs: [{name: daily, kind: pull, schedule: "0 3 * * *"}]`)
	in := b.instance(false)
	b.put(in, userIDs(30)...)
	ctx := context.Background()
	if err := in.runner.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	due, _ := b.store.DueAt(ctx, jobs.SetName("daily"), "u0001")
	if want := time.Date(2026, 6, 2, 3, 0, 0, 0, time.UTC); !due.Equal(want) {
		t.Fatalf("daily due %v, want %v", due, want)
	}
	// A disabled user is not scheduled for a new job.
	if _, err := in.ref.Disable(ctx, "u0029"); err != nil {
		t.Fatal(err)
	}
	// Edit the schedule and add a job: one Sync re-scores and schedules.
	b.jobs = parseJobs(t, `jobs:
  - {name: daily, kind: pull, schedule: "*/5 * * * *"}
  - {name: hourly, kind: push, schedule: "@hourly"}
`)
	in2 := b.instance(false)
	if err := in2.runner.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if due, _ := b.store.DueAt(ctx, jobs.SetName("daily"), "u0001"); !due.Equal(t0.Add(5 * time.Minute)) {
		t.Fatalf("re-scored due %v", due)
	}
	if n, _ := b.store.DueCount(ctx, jobs.SetName("hourly"), t0.Add(time.Hour)); n != 29 {
		t.Fatalf("hourly scheduled %d users, want 29 (one is disabled)", n)
	}
	// With several providers the users' records decide: only this job's
	// provider's runnable users are scheduled.
	b.jobs = parseJobs(t, `jobs:
  - {name: daily, kind: pull, schedule: "*/5 * * * *"}
  - {name: hourly, kind: push, schedule: "@hourly"}
  - {name: other, kind: pull, schedule: "@hourly"}
`)
	multi, err := jobs.NewRunner(b.store, nil, map[string]jobs.ProviderEntry{"fake": {Provider: b.prov}, "second": {Provider: b.prov}}, b.jobs,
		jobs.Options{Clock: b.clk, Logger: zerolog.New(b)})
	if err != nil {
		t.Fatal(err)
	}
	if err := multi.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.store.DueCount(ctx, jobs.SetName("other"), t0.Add(time.Hour)); n != 29 {
		t.Fatalf("with two providers, other scheduled %d users, want 29", n)
	}
	// Remove daily.
	b.jobs = parseJobs(t, `jobs: [{name: hourly, kind: push, schedule: "@hourly"}]`)
	if err := b.instance(false).runner.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.store.DueCount(ctx, jobs.SetName("daily"), t0.Add(48*time.Hour)); n != 0 {
		t.Fatalf("removed job still has %d entries", n)
	}
}

func TestPauseAndTrigger(t *testing.T) {
	b := setup(t, `jobs: [{name: pull, kind: pull, schedule: "@daily"}]`)
	in := b.instance(true)
	b.put(in, "erin", "fred")
	ctx := context.Background()
	if _, err := in.runner.Trigger(ctx, "pull", "erin"); err != nil {
		t.Fatal(err)
	}
	b.wait("ok", map[string]int{"pull": 1})
	if len(b.prov.Pulls("erin")) != 1 || len(b.prov.Pulls("fred")) != 0 {
		t.Fatal("trigger ran the wrong users")
	}
	if _, err := in.runner.Trigger(ctx, "nope", ""); err == nil {
		t.Fatal("trigger of an unknown job succeeded")
	}
	if err := in.runner.SetPaused(ctx, "pull", true); err != nil {
		t.Fatal(err)
	}
	paused, _ := b.store.PausedJobs(ctx)
	if !paused["pull"] {
		t.Fatal("not paused")
	}
	if err := in.runner.SetPaused(ctx, "pull", false); err != nil {
		t.Fatal(err)
	}
	if n, err := in.runner.Trigger(ctx, "pull", ""); err != nil || n != 2 {
		t.Fatalf("trigger all: %d %v", n, err)
	}
	b.wait("ok", map[string]int{"pull": 2})
}

var _ jobs.Store = (*redisstore.Store)(nil)
var _ scheduler.Store[struct{}] = (*redisstore.Store)(nil)

// collect returns the next n runs of each job, whatever their result.
func (b *bundle) collect(n int, jobNames ...string) []jobs.Run {
	b.t.Helper()
	left := make(map[string]int)
	for _, j := range jobNames {
		left[j] = n
	}
	var got []jobs.Run
	timeout := time.After(60 * time.Second)
	for total := n * len(jobNames); total > 0; {
		select {
		case r := <-b.runs:
			got = append(got, r)
			if left[r.Job] > 0 {
				left[r.Job]--
				total--
			}
		case <-timeout:
			b.t.Fatalf("timed out: still waiting for runs %v (got %d)", left, len(got))
		}
	}
	return got
}

// TestSpreadSlotsRunOnTime: with a spread, each member's slot is offset
// inside the window, and its due time goes through Redis (milliseconds)
// and back. A run claimed on time is on time under both missed-run
// policies: it runs, once per slot, and no slot counts as missed.
func TestSpreadSlotsRunOnTime(t *testing.T) {
	for _, tc := range []struct {
		name, schedule, spread string
		period                 time.Duration
	}{
		{"six fields", "*/20 * * * * *", "15s", 20 * time.Second},
		{"five fields", "* * * * *", "45s", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := setup(t, fmt.Sprintf(`jobs:
  - {name: skip, kind: pull, schedule: "%[1]s", spread: %[2]s, missed: skip}
  - {name: once, kind: pull, schedule: "%[1]s", spread: %[2]s, missed: once}
`, tc.schedule, tc.spread))
			const n = 40
			in := b.instance(true)
			b.put(in, userIDs(n)...)
			spread, _ := time.ParseDuration(tc.spread)
			const slots = 3
			for k := range slots {
				// Every member's offset in slot k (t0 is slot 0's start)
				// has passed; its next slot has not come.
				b.clk.Set(t0.Add(time.Duration(k)*tc.period + spread))
				bad := make(map[string]int)
				var example jobs.Run
				for _, r := range b.collect(n, "skip", "once") {
					if r.Result != "ok" {
						bad[r.Job]++
						example = r
					}
				}
				if len(bad) > 0 {
					t.Errorf("slot %d: runs not ok per job %v, e.g. %s for %s: %s (due %v, now %v)",
						k, bad, example.Job, example.User, example.Result, example.Due, b.clk.Now())
				}
			}
			for _, job := range []string{"skip", "once"} {
				if got := testutil.ToFloat64(b.metrics.Missed.WithLabelValues(job)); got != 0 {
					t.Errorf("%s: %v missed slots counted, want 0", job, got)
				}
				if got := testutil.ToFloat64(b.metrics.Runs.WithLabelValues(job, "ok")); got != slots*n {
					t.Errorf("%s: %v runs, want %d", job, got, slots*n)
				}
			}
		})
	}
}

// TestReclaimKeepsTheOriginalSlot: a replica claims an entry and dies
// holding the lease; the replica that takes it after the lease sees the
// slot the entry was due at, not the dead lease, so the missed-run policy
// counts the slots that passed meanwhile.
func TestReclaimKeepsTheOriginalSlot(t *testing.T) {
	b := setup(t, `jobs:
  - {name: once, kind: pull, schedule: "* * * * *", missed: once}
  - {name: skip, kind: pull, schedule: "* * * * *", missed: skip}
`)
	in := b.instance(false)
	b.put(in, "ann")
	ctx := context.Background()
	if err := in.runner.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	slot := t0.Add(time.Minute)
	b.clk.Set(slot)
	for _, job := range []string{"once", "skip"} {
		sh := scheduler.Shard("ann", 8)
		ds, err := b.store.ClaimDue(ctx, jobs.SetName(job), sh, slot, slot.Add(150*time.Second), 10)
		if err != nil || len(ds) != 1 || !ds[0].Due.Equal(slot) {
			t.Fatalf("%s: dead replica's claim %v, %v", job, ds, err)
		}
	}
	// The dead lease ends after the slots at +1m and +2m have passed.
	b.clk.Set(slot.Add(151 * time.Second))
	b.instance(true)
	for _, r := range b.collect(1, "once", "skip") {
		if !r.Due.Equal(slot) {
			t.Errorf("%s: re-claimed run due %v, want the original slot %v", r.Job, r.Due, slot)
		}
		want := map[string]jobs.Result{"once": jobs.ResultOK, "skip": jobs.ResultSkipped}[r.Job]
		if r.Result != want {
			t.Errorf("%s: %s, want %s", r.Job, r.Result, want)
		}
	}
	// once: the two slots under the dead lease were missed (one catch-up
	// run replaces them); skip: those two and the original slot.
	for job, want := range map[string]float64{"once": 2, "skip": 3} {
		if got := testutil.ToFloat64(b.metrics.Missed.WithLabelValues(job)); got != want {
			t.Errorf("%s: %v missed slots, want %v", job, got, want)
		}
	}
}

// blockingProvider holds the first pull until its context ends and
// reports how much of its timeout every pull had left when it started.
type blockingProvider struct {
	*fake.Provider
	once sync.Once
	left chan time.Duration
}

func (p *blockingProvider) Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error) {
	deadline, _ := ctx.Deadline()
	p.left <- time.Until(deadline)
	first := false
	p.once.Do(func() { first = true })
	if first {
		<-ctx.Done() // runs out its own timeout, holding the only slot
		return provider.PullResult{}, ctx.Err()
	}
	return p.Provider.Pull(ctx, user, src, cursor, deliver)
}

// TestTimeoutStartsWithTheRun: the job timeout bounds the run, not the
// wait for the provider's max_concurrency slot, so a run queued behind a
// slow one gets its whole timeout.
func TestTimeoutStartsWithTheRun(t *testing.T) {
	const timeout = time.Second
	b := setup(t, `jobs: [{name: pull, kind: pull, schedule: "@every 1m", timeout: 1s}]`)
	bp := &blockingProvider{Provider: b.prov, left: make(chan time.Duration, 4)}
	b.entry = jobs.ProviderEntry{Provider: bp, MaxConcurrency: 1}
	in := b.instance(true)
	b.put(in, "ann", "bob")
	b.clk.Advance(time.Minute)
	var results []string
	for _, r := range b.collect(2, "pull") {
		results = append(results, r.User+":"+string(r.Result))
	}
	slices.Sort(results)
	// One run waits out its timeout holding the slot; the other waited
	// that long for the slot, then runs with its own timeout.
	first := <-bp.left
	var second time.Duration
	select {
	case second = <-bp.left:
	default:
		t.Fatalf("the queued run never reached the provider; results %v", results)
	}
	if first < timeout/2 || second < timeout/2 {
		t.Fatalf("pulls started with %v and %v of their %v timeout left, want most of it; results %v", first, second, timeout, results)
	}
	if n := testutil.ToFloat64(b.metrics.Runs.WithLabelValues("pull", "ok")); n != 1 {
		t.Fatalf("%v runs ok, want 1 (the queued one); results %v", n, results)
	}
}
