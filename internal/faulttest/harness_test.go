package faulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sort"
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

// providerName is the one provider every scenario configures.
const providerName = "fake"

const configHead = "encryption: {keys: [{id: k1, secret: O0Nsm/A/uTufnXBMX9/72PPt6667YXKFEl0HJFwwdDY=}]}\nproviders: [{name: fake, kind: fake}]\n"

// Real-time scenarios run on durations scaled down about 20 times from
// production, so that one test second stands for about 20 production
// seconds:
//
//	lease 3s             production 1m (refresher.lease, runner.lease)
//	heartbeat 1s         production 20s (lease/3)
//	provider timeout 1s  production 30s (providers[].timeout; 20s scaled)
//	read timeout 250ms   production 3s (go-redis' default read and write
//	                     timeout; 5s scaled, the least a busy 2-core test
//	                     machine answers within reliably)
//	provider latency     150ms, production about 3s per refresh
//	job every 2s         production 40s, spread over the whole period,
//	                     job timeout 1s (production 20s)
//	lead 2s, jitter 0.5s production 10m and 2m; only when the tokens come
//	                     due matters here.
//
// Stored tokens are due 0.5 to 1s after they are stored and expire 3s
// after; refreshed ones live an hour, so every user is refreshed exactly
// once, by the refresher or by a job that needs a token valid for its
// timeout.
func realTime(users int, aof bool) params {
	return params{users: users, replicas: 3, clk: clock.Real{},
		lease: 3 * time.Second, timeout: time.Second, readTimeout: 250 * time.Millisecond,
		lead: 2 * time.Second, jitter: 500 * time.Millisecond, latency: 150 * time.Millisecond,
		jobs: `jobs: [{name: pull, kind: pull, schedule: "@every 2s", spread: 2s, timeout: 1s, missed: once}]`,
		aof:  aof}
}

// startFleet stores every user's token, due in 1s, and starts the
// replicas. It returns when every user was scheduled: the job's slots
// after it are every user's.
func (h *harness) startFleet() time.Time {
	h.t.Helper()
	rs := make([]*replica, h.p.replicas)
	for i := range rs {
		rs[i] = h.replica(fmt.Sprintf("r%d", i))
	}
	h.put(rs[0], time.Second)
	scheduled := h.now()
	for _, r := range rs {
		r.start()
	}
	return scheduled
}

// params shape one scenario. Durations are either on a fake clock (moved
// by the test) or scaled-down real ones; each scenario says how its
// durations map to production.
type params struct {
	users    int
	replicas int
	// clk is a *clock.Fake or clock.Real{}.
	clk clock.Clock
	// lease is both the refresher's and the runner's lease (production
	// default 1m); heartbeats renew claims every lease/3.
	lease time.Duration
	// timeout bounds one provider refresh call (production default 30s).
	timeout time.Duration
	// lead and jitter: the refresh policy (production 10m and 2m).
	lead, jitter time.Duration
	// latency of every provider refresh, so refreshes are in flight.
	latency time.Duration
	// readTimeout is the replicas' Redis read and write timeout (go-redis
	// default 3s); 0 keeps the default.
	readTimeout time.Duration
	// workers and batch of every engine.
	workers, batch int
	// poll is the engines' poll interval.
	poll time.Duration
	// jobs is the YAML of the jobs list: one pull job (the provider counts
	// pulls per user, not per job).
	jobs string
	// aof starts Redis with an append-only file fsynced on every write.
	aof bool
}

// harness is one scenario: a private Redis, the strict provider, the
// replicas, and the counters every scenario reports.
type harness struct {
	t    *testing.T
	p    params
	srv  *redistest.Server
	obs  *redisstore.Store // the test's own view of Redis
	prov *fake.Provider
	keys *tokens.Keyring
	jobs []config.JobConfig
	// job is the one pull job and its timing.
	job    config.JobConfig
	timing scheduler.Timing

	tokMetrics *refresher.Metrics
	jobMetrics *jobs.Metrics
	logs       *logBuffer

	users []string

	mu       sync.Mutex
	results  []refresher.Result
	runs     []observedRun
	pulls    []pulled
	replicas []*replica
	changed  chan struct{} // a result, run or provider call happened
	// traces: per user, the provider calls and runs made for it, in order; the
	// users of failed assertions are listed in suspects, by assertion.
	traces   map[string][]string
	suspects map[string][]string
}

// observedRun is a finished run, where and when it finished.
type observedRun struct {
	jobs.Run
	replica string
	at      time.Time
}

// pulled is a successful pull: when a replica's run started it.
type pulled struct {
	user, replica string
	at            time.Time
}

// logBuffer collects every replica's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines that contain every one of words.
func (l *logBuffer) lines(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ln := range strings.Split(l.b.String(), "\n") {
		ok := ln != ""
		for _, w := range words {
			ok = ok && strings.Contains(ln, w)
		}
		if ok {
			out = append(out, ln)
		}
	}
	return out
}

func newHarness(t *testing.T, p params) *harness {
	t.Helper()
	if p.workers == 0 {
		p.workers = 8
	}
	if p.batch == 0 {
		p.batch = 64
	}
	if p.poll == 0 {
		p.poll = 10 * time.Millisecond
	}
	var opts []redistest.Option
	if p.aof {
		opts = append(opts, redistest.AppendOnly())
	}
	h := &harness{t: t, p: p, srv: redistest.StartPrivate(t, opts...), logs: &logBuffer{},
		tokMetrics: refresher.NewMetrics(prometheus.NewRegistry()), jobMetrics: jobs.NewMetrics(prometheus.NewRegistry()),
		changed: make(chan struct{}, 1)}
	var err error
	h.keys, err = tokens.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{5}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	// Refreshed tokens live an hour: no scenario lasts long enough for a
	// second refresh, so every user is refreshed exactly as often as the
	// test makes its stored token due.
	h.prov = fake.New(fake.Options{Clock: p.clk, AccessLifetime: time.Hour, Latency: p.latency, Seed: 11})
	cfg, err := config.Parse(strings.NewReader(configHead+p.jobs), t.TempDir(), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	h.jobs = cfg.Jobs
	if len(h.jobs) != 1 || h.jobs[0].Kind != config.JobPull {
		t.Fatalf("harness: want exactly one pull job, got %d", len(h.jobs))
	}
	h.job = h.jobs[0]
	h.timing = scheduler.Timing{Schedule: h.job.Schedule, Spread: h.job.Spread, Missed: string(h.job.Missed), Salt: h.job.Name}
	rdb := h.srv.Client(t)
	h.obs = redisstore.New(rdb, redisstore.Options{Prefix: h.srv.Prefix, Shards: 8})
	if err := h.obs.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range p.users {
		h.users = append(h.users, fmt.Sprintf("u%04d", i))
	}
	t.Cleanup(h.stopAll)
	return h
}

func (h *harness) now() time.Time { return h.p.clk.Now() }

// advance moves a fake clock; it fails the test in real time.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	f, ok := h.p.clk.(*clock.Fake)
	if !ok {
		h.t.Fatal("harness: advance needs a fake clock")
	}
	f.Advance(d)
}

func (h *harness) trace(user, what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.traces == nil {
		h.traces = make(map[string][]string)
	}
	h.traces[user] = append(h.traces[user], what)
}

// suspect notes a user a check failed on, under why.
func (h *harness) suspect(why, user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.suspects == nil {
		h.suspects = make(map[string][]string)
	}
	if !slices.Contains(h.suspects[why], user) {
		h.suspects[why] = append(h.suspects[why], user)
	}
}

func (h *harness) notify() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// policy is the refresh policy of the scenario.
func (h *harness) policy() refresher.Policy {
	return refresher.Policy{Lead: h.p.lead, Jitter: h.p.jitter, DefaultLifetime: time.Hour, Timeout: h.p.timeout,
		RetryInitial: h.p.lease / 4, RetryMax: h.p.lease, RetryAfterCap: h.p.lease, DegradedAfter: 3}
}

func init() {
	// go-redis reports connections it drops through its own logger; the
	// replicas' errors are in their logs.
	redis.SetLogger(quietRedis{})
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// errDead is what a killed replica's calls get: nothing leaves the
// process any more.
var errDead = errors.New("faulttest: replica killed")

// replica is one syncd process: its own Redis client, refresher and
// runner, wired as `syncd run` wires them.
type replica struct {
	h      *harness
	name   string
	rdb    *redis.Client
	store  *redisstore.Store
	ref    *refresher.Refresher
	runner *jobs.Runner

	dead   atomic.Bool
	killed chan struct{} // closed by kill
	hold   atomic.Pointer[gate]

	mu      sync.Mutex
	started bool
	stopped bool
}

// gate holds a replica's provider calls (those match selects) before
// they leave the process, until released or the replica is killed.
type gate struct {
	match   func(op, user string) bool
	held    atomic.Int64
	release chan struct{}
}

// replica builds a replica; start runs it.
func (h *harness) replica(name string) *replica {
	h.t.Helper()
	r := &replica{h: h, name: name, killed: make(chan struct{})}
	opt, err := redis.ParseURL(h.srv.URL)
	if err != nil {
		h.t.Fatal(err)
	}
	if h.p.readTimeout > 0 {
		opt.ReadTimeout, opt.WriteTimeout = h.p.readTimeout, h.p.readTimeout
	}
	redisstore.TuneClient(opt, 2*h.p.workers, h.p.lease)
	r.rdb = redis.NewClient(opt)
	r.rdb.AddHook(deadHook{r: r})
	h.t.Cleanup(func() { _ = r.rdb.Close() })
	log := zerolog.New(h.logs).Level(zerolog.InfoLevel).With().Str("replica", name).Logger()
	r.store = redisstore.New(r.rdb, redisstore.Options{Prefix: h.srv.Prefix, Shards: 8, Logger: log})
	if err := r.store.Ping(context.Background()); err != nil {
		h.t.Fatal(err)
	}
	link := &link{r: r}
	r.runner, err = jobs.NewRunner(r.store,
		func(rec tokens.Record, d time.Duration) provider.TokenSource { return r.ref.SourceFrom(rec, d) },
		map[string]jobs.ProviderEntry{providerName: {Provider: link, MaxConcurrency: h.p.workers}}, h.jobs,
		jobs.Options{Owner: name, Workers: h.p.workers, Batch: h.p.batch, Lease: h.p.lease, PollInterval: h.p.poll,
			Clock: h.p.clk, Logger: log, Metrics: h.jobMetrics, Observe: func(run jobs.Run) {
				h.mu.Lock()
				h.runs = append(h.runs, observedRun{Run: run, replica: name, at: run.At})
				h.mu.Unlock()
				h.trace(run.User, fmt.Sprintf("%s run %s (due %s, next %s) at %s: %v", name, run.Result, run.Due.Format("05.000"), run.Next.Format("05.000"), run.At.Format("05.000"), errText(run.Err)))
				h.notify()
			}})
	if err != nil {
		h.t.Fatal(err)
	}
	r.ref, err = refresher.New(r.store, h.keys, map[string]refresher.ProviderEntry{providerName: {Provider: link, Policy: h.policy()}},
		refresher.Options{Owner: name, Workers: h.p.workers, Batch: h.p.batch, PollInterval: h.p.poll, Lease: h.p.lease,
			Clock: h.p.clk, Logger: log, Metrics: h.tokMetrics, OnChange: r.runner.UserChanged,
			Observe: func(res refresher.Result) {
				h.mu.Lock()
				h.results = append(h.results, res)
				h.mu.Unlock()
				h.notify()
			}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.replicas = append(h.replicas, r)
	h.mu.Unlock()
	return r
}

// start runs the replica's runner and refresher, as `syncd run` does.
func (r *replica) start() {
	r.h.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.runner.Start(context.Background()); err != nil {
		r.h.t.Fatalf("%s: runner start: %v", r.name, err)
	}
	if err := r.ref.Start(context.Background()); err != nil {
		r.h.t.Fatalf("%s: refresher start: %v", r.name, err)
	}
	r.started = true
}

// stop shuts the replica down gracefully within grace, as SIGTERM does.
func (r *replica) stop(grace time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started || r.stopped {
		return
	}
	r.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = r.runner.Stop(ctx) }()
	go func() { defer wg.Done(); _ = r.ref.Stop(ctx) }()
	wg.Wait()
}

// kill is kill -9 seen from outside the process: from this instant no
// command of the replica reaches Redis and no call reaches the provider,
// and nothing is released or handed back. Its goroutines go on inside
// the dead process (they only meet errDead), which is what an observer
// cannot tell apart from a vanished process; they are stopped at cleanup.
func (r *replica) kill() {
	if r.dead.CompareAndSwap(false, true) {
		close(r.killed)
	}
}

// holdCalls makes the replica's provider calls that match selects (op is
// "refresh", "pull" or "push"; nil selects all) wait before they leave
// the process, until the returned gate is opened (or the replica killed).
func (r *replica) holdCalls(match func(op, user string) bool) *gate {
	if match == nil {
		match = func(string, string) bool { return true }
	}
	g := &gate{match: match, release: make(chan struct{})}
	r.hold.Store(g)
	r.h.t.Cleanup(g.open)
	return g
}

func (g *gate) open() {
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

// pass is what every provider call of a replica goes through: it fails
// once the replica is dead, and waits at a gate if one is set.
func (r *replica) pass(ctx context.Context, op, user string) error {
	if r.dead.Load() {
		return errDead
	}
	if g := r.hold.Load(); g != nil && g.match(op, user) {
		g.held.Add(1)
		r.h.notify()
		select {
		case <-g.release:
		case <-r.killed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if r.dead.Load() {
		return errDead
	}
	return nil
}

// link is a replica's connection to the provider: refreshes and data
// calls go through replica.pass.
type link struct{ r *replica }

func (l *link) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	if err := l.r.pass(ctx, "refresh", t.UserID); err != nil {
		return tokens.Token{}, tokens.NewRefreshError(0, "network", 0, err)
	}
	nt, err := l.r.h.prov.Refresh(ctx, t)
	l.r.h.trace(t.UserID, fmt.Sprintf("%s refresh from the %s: %v", l.r.name, caller(), errText(err)))
	return nt, err
}

// caller says whether a provider call comes from a job run or from the
// refresher's own pass, for the failure report.
func caller() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		if strings.Contains(f.Function, "jobs.(*Runner)") {
			return "job path"
		}
		if !more {
			return "refresher"
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func (l *link) Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error) {
	if err := l.r.pass(ctx, "pull", user); err != nil {
		return provider.PullResult{Cursor: cursor}, &provider.Error{Op: "pull", Err: err}
	}
	at := l.r.h.now()
	res, err := l.r.h.prov.Pull(ctx, user, src, cursor, deliver)
	l.r.h.trace(user, fmt.Sprintf("%s pull at %s: %v", l.r.name, at.Format("15:04:05.000"), errText(err)))
	if err == nil {
		l.r.h.mu.Lock()
		l.r.h.pulls = append(l.r.h.pulls, pulled{user: user, replica: l.r.name, at: at})
		l.r.h.mu.Unlock()
	}
	l.r.h.notify()
	return res, err
}

func (l *link) Push(ctx context.Context, user string, src provider.TokenSource, item provider.PushItem) error {
	if err := l.r.pass(ctx, "push", user); err != nil {
		return &provider.Error{Op: "push", Err: err}
	}
	return l.r.h.prov.Push(ctx, user, src, item)
}

// deadHook fails every command of a killed replica before it is sent.
type deadHook struct{ r *replica }

func (d deadHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d.r.dead.Load() {
			return nil, errDead
		}
		return next(ctx, network, addr)
	}
}

func (d deadHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if d.r.dead.Load() {
			cmd.SetErr(errDead)
			return errDead
		}
		return next(ctx, cmd)
	}
}

func (d deadHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if d.r.dead.Load() {
			for _, c := range cmds {
				c.SetErr(errDead)
			}
			return errDead
		}
		return next(ctx, cmds)
	}
}

// stopAll stops every replica still running (killed ones too: their
// goroutines cannot reach anything, so the grace is short).
func (h *harness) stopAll() {
	h.mu.Lock()
	rs := append([]*replica(nil), h.replicas...)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.stop(2 * time.Second)
		}()
	}
	wg.Wait()
}

// put stores every user's token through r (a replica that need not run),
// with an access expiry that makes it due for refresh dueIn from now
// (plus up to the policy's jitter earlier).
func (h *harness) put(r *replica, dueIn time.Duration) {
	h.t.Helper()
	ctx := context.Background()
	for _, u := range h.users {
		tok := h.prov.Issue(u)
		tok.AccessExpiry = h.now().Add(h.p.lead + dueIn)
		if _, err := r.ref.Put(ctx, providerName, tok); err != nil {
			h.t.Fatalf("put %s: %v", u, err)
		}
	}
}

// waitFor waits until cond holds, re-checking whenever a replica reports
// progress and at least every 20ms; false on timeout.
func (h *harness) waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-h.changed:
		case <-tick.C:
		}
	}
	return true
}

// mustWait is waitFor that fails the test with what on timeout.
func (h *harness) mustWait(timeout time.Duration, what string, cond func() bool) {
	h.t.Helper()
	if !h.waitFor(timeout, cond) {
		h.t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// refreshed counts users the provider refreshed at least once.
func (h *harness) refreshed() int {
	n := 0
	for _, u := range h.users {
		if h.prov.Refreshes(u) > 0 {
			n++
		}
	}
	return n
}

// claimed lists the users whose entry in set is scored after now: claimed
// and leased (or, once handled, scheduled for later).
func (h *harness) claimed(set string) []string {
	h.t.Helper()
	var out []string
	now := h.now()
	for _, u := range h.users {
		at, err := h.obs.DueAt(context.Background(), set, u)
		if err != nil {
			h.t.Fatal(err)
		}
		if at.After(now) {
			out = append(out, u)
		}
	}
	return out
}

// settled reports, on a fake clock, whether every user's job entry not
// in except (a dead replica's) is scheduled for its next slot after now,
// as a finished run leaves it (or gone, for a user that left the job):
// the run's outcome is written. Call it before moving the clock past the
// lease, or a finish still on its way would find its claim taken over and
// the run would be repeated (correctly: its outcome was never recorded),
// which is not what the scenarios are about.
func (h *harness) settled(except map[string]bool) bool {
	h.t.Helper()
	now := h.now()
	for _, u := range h.users {
		if except[u] {
			continue
		}
		at, err := h.obs.DueAt(context.Background(), jobs.SetName(h.job.Name), u)
		if err != nil {
			h.t.Fatal(err)
		}
		if !at.IsZero() && !at.Equal(h.timing.Next(u, now).Truncate(time.Millisecond)) {
			return false
		}
	}
	return true
}

// passes counts the refresher's passes over user (any outcome).
func (h *harness) passes(user string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.results {
		if r.User == user {
			n++
		}
	}
	return n
}

// coveredThrough reports whether every user's job has run for its last
// slot at or before t, or later (a catch-up covers it). A user flagged
// for re-authorization leaves the job and counts as settled: check
// reports it.
func (h *harness) coveredThrough(t time.Time) bool {
	h.t.Helper()
	var flagged map[string]bool
	for _, u := range h.users {
		if slots := h.runSlots(u); len(slots) > 0 && !slots[len(slots)-1].Before(h.slotAtOrBefore(u, t)) {
			continue
		}
		if flagged == nil {
			q, err := h.obs.ReauthQueue(context.Background())
			if err != nil {
				h.t.Fatal(err)
			}
			flagged = make(map[string]bool, len(q))
			for _, e := range q {
				flagged[e.UserID] = true
			}
		}
		if !flagged[u] {
			return false
		}
	}
	return true
}

// runSlots returns the slot of each successful run of user's job, in the
// order of the runs: the latest slot at or before the run's pull. One
// exception: due sets keep whole milliseconds (redisstore), so a slot
// whose time has a fraction of a millisecond (the spread's offsets) is
// claimed up to a millisecond early, and its run may pull before the
// slot's exact time; a run claimed at its slot's truncated time (its due)
// is that slot's.
func (h *harness) runSlots(user string) []time.Time {
	h.mu.Lock()
	var pulls []pulled
	for _, p := range h.pulls {
		if p.user == user {
			pulls = append(pulls, p)
		}
	}
	var runs []observedRun
	for _, r := range h.runs {
		if r.User == user && r.Result == "ok" {
			runs = append(runs, r)
		}
	}
	h.mu.Unlock()
	out := make([]time.Time, 0, len(pulls))
	for _, p := range pulls {
		s := h.slotAtOrBefore(user, p.at)
		// The run that made this pull: the replica's next one to finish.
		for _, r := range runs {
			if r.replica != p.replica || r.at.Before(p.at) {
				continue
			}
			if n := h.timing.Next(user, s); n.Sub(r.Due) < time.Millisecond && !r.Due.After(p.at) {
				s = n
			}
			break
		}
		out = append(out, s)
	}
	return out
}

// slotAtOrBefore is the latest slot of user's job at or before t.
func (h *harness) slotAtOrBefore(user string, t time.Time) time.Time {
	n1 := h.timing.Next(user, t)
	period := max(h.timing.Next(user, n1).Sub(n1), time.Millisecond)
	for back := period; ; back *= 2 {
		s := h.timing.Next(user, t.Add(-back))
		if s.After(t) {
			continue
		}
		for {
			n := h.timing.Next(user, s)
			if n.After(t) {
				return s
			}
			s = n
		}
	}
}

// slotsIn lists user's slots in (from, to].
func (h *harness) slotsIn(user string, from, to time.Time) []time.Time {
	var out []time.Time
	for s := h.timing.Next(user, from); !s.After(to); s = h.timing.Next(user, s) {
		out = append(out, s)
	}
	return out
}

// figures is what every scenario reports.
type figures struct {
	users, replicas    int
	refreshes, reuses  int
	flagged            int
	runs, repeated     int
	lostSlots, missed  int
	lostFlagged        int // of the slots never run: flagged users'
	missedMetric       int
	wrongRefreshCounts []string // "user:got" for users not refreshed as expected
	repeats            []string // "user@slot:n"
	lost               []string // "user@slot"
}

func (f figures) String() string {
	return fmt.Sprintf("users=%d replicas=%d refreshes=%d reuses=%d flagged=%d runs=%d repeated=%d lost_slots=%d missed=%d",
		f.users, f.replicas, f.refreshes, f.reuses, f.flagged, f.runs, f.repeated, f.lostSlots, f.missed)
}

// tally computes the figures: refreshes and reuses from the provider,
// runs (pulls that delivered) from the replicas, flagged users from their records, and per
// (job, user, slot) how often the job ran: a run is its slot's if it
// started in it (see runSlots), a failed run if it
// ended in it; repeated counts runs beyond the first of a slot. Of the
// slots in (from, to], one with no run of its own is "missed" if a later
// run caught it up (missed: once); lost_slots counts those no run ever
// covered, plus the missed ones syncd_job_missed_total does not account
// for (skipped silently). wantRefreshes is how often every user should
// have been refreshed.
func (h *harness) tally(from, to time.Time, wantRefreshes int) figures {
	h.t.Helper()
	ctx := context.Background()
	f := figures{users: len(h.users), replicas: h.p.replicas}
	f.refreshes, f.reuses = h.prov.Stats().Refreshes, h.prov.Reuses()
	for _, u := range h.users {
		if n := h.prov.Refreshes(u); n != wantRefreshes {
			f.wrongRefreshCounts = append(f.wrongRefreshCounts, fmt.Sprintf("%s:%d", u, n))
			h.suspect("refresh count", u)
		}
		rec, err := h.obs.Load(ctx, u)
		if err != nil {
			h.t.Fatalf("load %s: %v", u, err)
		}
		flagged := rec.State == tokens.ReauthRequired
		if flagged {
			f.flagged++
			h.suspect("flagged", u)
		}
		if h.prov.ReusesOf(u) > 0 {
			h.suspect("reused", u)
		}
		slots := h.runSlots(u)
		f.runs += len(slots)
		perSlot := map[time.Time]int{}
		for _, s := range slots {
			perSlot[s]++
		}
		for s, n := range perSlot {
			if n > 1 {
				f.repeated += n - 1
				f.repeats = append(f.repeats, fmt.Sprintf("%s@%s:%d", u, s.Format("15:04:05.000"), n))
				h.suspect("repeated slot", u)
			}
		}
		// A failed run took its slot too: it is recorded (the run's
		// failure count and error) and the next slot retries.
		failed := map[time.Time]bool{}
		for _, at := range h.failedRuns(u) {
			failed[h.slotAtOrBefore(u, at)] = true
		}
		var last time.Time
		for s := range perSlot {
			last = maxTime(last, s)
		}
		for s := range failed {
			last = maxTime(last, s)
		}
		for _, s := range h.slotsIn(u, from, to) {
			switch {
			case perSlot[s] > 0 || failed[s]:
			case last.After(s):
				f.missed++
				h.suspect("missed", u)
			default:
				f.lostSlots++
				if flagged {
					f.lostFlagged++
				}
				f.lost = append(f.lost, fmt.Sprintf("%s@%s", u, s.Format("15:04:05.000")))
				h.suspect("lost slot", u)
			}
		}
	}
	f.missedMetric = int(testutil.ToFloat64(h.jobMetrics.Missed.WithLabelValues(h.job.Name)))
	if f.missed > f.missedMetric {
		// Caught up by a later run, but not counted as missed by syncd:
		// skipped silently.
		f.lostSlots += f.missed - f.missedMetric
	}
	sort.Strings(f.repeats)
	return f
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// failedRuns returns when the failed runs of user's job ended.
func (h *harness) failedRuns(user string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []time.Time
	for _, r := range h.runs {
		if r.User == user && r.Result == "failed" {
			out = append(out, r.at)
		}
	}
	return out
}

// check logs the figures line and asserts the invariants every scenario
// shares.
func (h *harness) check(name string, f figures) {
	h.t.Helper()
	h.t.Logf("%s: %s", name, f)
	if f.reuses != 0 {
		h.t.Errorf("%d refresh tokens presented after they had been rotated (the provider's reuse counter); %d grants revoked for it", f.reuses, h.prov.ReuseRevocations())
	}
	if f.flagged != 0 {
		h.t.Errorf("%d users flagged for re-authorization", f.flagged)
	}
	if len(f.wrongRefreshCounts) > 0 {
		h.t.Errorf("%d users not refreshed as often as expected (user:refreshes): %s", len(f.wrongRefreshCounts), head(f.wrongRefreshCounts, 20))
	}
	if f.repeated != 0 {
		h.t.Errorf("%d job runs repeated a slot already run (user@slot:runs): %s", f.repeated, head(f.repeats, 20))
	}
	if len(f.lost) > 0 {
		h.t.Errorf("%d slots never run nor caught up, %d of them flagged users' (who left the job): %s", len(f.lost), f.lostFlagged, head(f.lost, 5))
	}
	if f.missed > f.missedMetric {
		h.t.Errorf("%d slots caught up by a later run, but syncd_job_missed_total counts %d: %d skipped silently", f.missed, f.missedMetric, f.missed-f.missedMetric)
	}
	if h.t.Failed() {
		h.dumpLogs()
	}
}

// dumpLogs prints the replicas' warnings and errors, and a summary of the
// refresh outcomes, for a failed scenario.
func (h *harness) dumpLogs() {
	h.t.Helper()
	lines := append(h.logs.lines(`"level":"warn"`), h.logs.lines(`"level":"error"`)...)
	h.mu.Lock()
	for _, why := range []string{"reused", "refresh count", "flagged", "repeated slot", "lost slot", "missed"} {
		for i, u := range h.suspects[why] {
			if i == 5 {
				break
			}
			h.t.Logf("%s %s: %s", why, u, strings.Join(h.traces[u], "; "))
		}
	}
	h.mu.Unlock()
	h.t.Logf("%d warning and error log lines; first ones:\n%s", len(lines), head(lines, 40))
	h.mu.Lock()
	outcomes := map[refresher.Outcome]int{}
	for _, r := range h.results {
		outcomes[r.Outcome]++
	}
	runs := map[jobs.Result]int{}
	for _, r := range h.runs {
		runs[r.Result]++
	}
	h.mu.Unlock()
	h.t.Logf("refresh outcomes %v; run results %v; provider %+v", outcomes, runs, h.prov.Stats())
	for _, res := range []string{"ok", "transient", "reauth", "reuse", "superseded", "lost", "config"} {
		if n := testutil.ToFloat64(h.tokMetrics.RefreshTotal.WithLabelValues(providerName, res)); n > 0 {
			h.t.Logf("syncd_token_refresh_total{result=%q} %v", res, n)
		}
	}
}

func head(s []string, n int) string {
	if len(s) > n {
		return strings.Join(s[:n], "\n") + fmt.Sprintf("\n... and %d more", len(s)-n)
	}
	return strings.Join(s, "\n")
}
