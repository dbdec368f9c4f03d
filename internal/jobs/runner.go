package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/syncd/syncd/internal/clip"
	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/config"
	"github.com/syncd/syncd/internal/errkind"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// Provider is what a job needs from a provider (internal/provider/...).
type Provider interface {
	Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error)
	Push(ctx context.Context, user string, src provider.TokenSource, item provider.PushItem) error
}

// ProviderEntry is one provider and its limits in this process.
type ProviderEntry struct {
	// Provider may be nil in a Runner that only schedules (the CLI).
	Provider Provider
	// RateLimit is calls per second (0: unlimited), Burst the bucket.
	RateLimit float64
	Burst     int
	// MaxConcurrency bounds runs in flight against the provider.
	MaxConcurrency int
}

// TokenSources gives a run its user's tokens: valid for at least
// minValid, refreshed once on a 401 (refresher.Refresher.SourceFrom). rec is
// the record the run just read, so a fresh token costs no second read.
type TokenSources func(rec tokens.Record, minValid time.Duration) provider.TokenSource

// Options tune a Runner.
type Options struct {
	// Owner identifies this process in locks.
	Owner        string
	Workers      int
	Batch        int
	Lease        time.Duration
	PollInterval time.Duration
	Clock        clock.Clock
	Logger       zerolog.Logger
	Metrics      *Metrics
	// HTTPClient is used by webhook sinks.
	HTTPClient *http.Client
	// Observe, if set, sees every finished run once its outcome is
	// written (tests, the demo). It runs on the engine's finisher and
	// must not block.
	Observe func(Run)
}

// Run is one finished pass of a job over a user, for Options.Observe.
type Run struct {
	Job, User string
	Result    Result
	Due       time.Time
	Next      time.Time
	Err       error
	// At is when the run ended, on the runner's clock. Observe sees the
	// run later, once its outcome is written (seconds later in a Redis
	// stall).
	At time.Time
}

// Result is how a run ended.
type Result string

// The results of a run.
const (
	// ResultOK: the run did its work.
	ResultOK Result = "ok"
	// ResultFailed: the run failed; it is retried or runs at its next
	// slot.
	ResultFailed Result = "failed"
	// ResultSkipped: the missed-run policy skipped the slot.
	ResultSkipped Result = "skipped"
	// ResultLeft: the user is no longer eligible and left the job's due
	// set.
	ResultLeft Result = "left"
)

type limits struct {
	entry   ProviderEntry
	limiter *rate.Limiter
	sem     chan struct{}
}

type job struct {
	cfg    config.JobConfig
	set    string
	timing scheduler.Timing
	sink   Sink
	// engine serves the job's due set: a claim comes with the user's
	// record and job state read for its batch, and its finish writes the
	// run's outcome.
	engine *scheduler.Engine[Loaded, *SavedRun]
	paused atomic.Bool // by an operator (Redis); cfg.Paused is the config's
}

// Runner runs every configured job for every eligible user.
type Runner struct {
	store     Store
	sources   TokenSources
	providers map[string]*limits
	jobs      map[string]*job
	order     []string
	opt       Options
	log       zerolog.Logger

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	watch   chan struct{}

	// Run counts per job since the last flush: written to Redis once a
	// second (jobs list's runs in the last hour), not once per run.
	statMu sync.Mutex
	stats  map[string][2]int64
}

func (r *Runner) count(job string, ok bool) {
	r.statMu.Lock()
	defer r.statMu.Unlock()
	if r.stats == nil {
		r.stats = make(map[string][2]int64)
	}
	c := r.stats[job]
	if ok {
		c[0]++
	} else {
		c[1]++
	}
	r.stats[job] = c
}

func (r *Runner) flushStats(ctx context.Context) {
	r.statMu.Lock()
	st := r.stats
	r.stats = nil
	r.statMu.Unlock()
	if len(st) == 0 {
		return
	}
	if err := r.store.AddJobStats(ctx, st, r.opt.Clock.Now()); err != nil {
		r.log.Warn().Err(err).Msg("recording job statistics failed")
	}
}

// SetName is the due set of a job.
func SetName(job string) string { return "job:" + job }

// NewRunner returns a Runner for jobs. Start runs them.
func NewRunner(store Store, sources TokenSources, providers map[string]ProviderEntry, jobs []config.JobConfig, opt Options) (*Runner, error) {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Owner == "" {
		opt.Owner = fmt.Sprintf("runner-%x", rand.Uint64())
	}
	r := &Runner{store: store, sources: sources, providers: make(map[string]*limits), jobs: make(map[string]*job), opt: opt,
		log: opt.Logger.With().Str("component", "jobs").Logger()}
	for name, p := range providers {
		l := &limits{entry: p, sem: make(chan struct{}, max(p.MaxConcurrency, 1))}
		if p.RateLimit > 0 {
			l.limiter = rate.NewLimiter(rate.Limit(p.RateLimit), max(p.Burst, 1))
		}
		r.providers[name] = l
	}
	for _, c := range jobs {
		if _, ok := r.providers[c.Provider]; !ok {
			return nil, fmt.Errorf("job %s: unknown provider %q", c.Name, c.Provider)
		}
		sink, err := NewSink(c.Sink, store, opt.HTTPClient, opt.Clock)
		if err != nil && c.Kind == config.JobPull {
			return nil, fmt.Errorf("job %s: %w", c.Name, err)
		}
		j := &job{cfg: c, set: SetName(c.Name), sink: sink,
			timing: scheduler.Timing{Schedule: c.Schedule, Spread: c.Spread, Missed: string(c.Missed), Salt: c.Name}}
		j.engine = scheduler.NewEngine(runStore{store}, r.handler(j), scheduler.Options[Loaded]{
			Set: j.set, Workers: opt.Workers, Batch: opt.Batch, Lease: opt.Lease, PollInterval: opt.PollInterval,
			Clock: opt.Clock, Logger: opt.Logger,
			Paused:   func() bool { return j.cfg.Paused || j.paused.Load() },
			Prefetch: func(ctx context.Context, batch []scheduler.Due) ([]Loaded, error) { return r.prefetch(ctx, j, batch) },
		})
		r.jobs[c.Name] = j
		r.order = append(r.order, c.Name)
	}
	return r, nil
}

// Timing returns a job's timing (for the CLI's next runs).
func (r *Runner) Timing(name string) (scheduler.Timing, bool) {
	j, ok := r.jobs[name]
	if !ok {
		return scheduler.Timing{}, false
	}
	return j.timing, true
}

// Start applies job-definition changes (Sync), then starts every job's
// engine and a watcher of operator pauses. It returns at once.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("jobs: runner already started")
	}
	r.started = true
	if err := r.Sync(ctx); err != nil {
		return err
	}
	if err := r.refreshPaused(ctx); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	r.watch = make(chan struct{})
	go r.watchPaused(wctx)
	for _, name := range r.order {
		if err := r.jobs[name].engine.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops every engine (see scheduler.Engine.Stop).
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, name := range r.order {
		errs = append(errs, r.jobs[name].engine.Stop(ctx))
	}
	if r.cancel != nil {
		r.cancel()
		<-r.watch
		r.cancel = nil
	}
	return errors.Join(errs...)
}

func (r *Runner) watchPaused(ctx context.Context) {
	defer close(r.watch)
	t := time.NewTicker(max(r.opt.PollInterval, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.flushStats(context.WithoutCancel(ctx))
			return
		case <-t.C:
			r.flushStats(ctx)
			if err := r.refreshPaused(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("reading paused jobs failed")
			}
		}
	}
}

func (r *Runner) refreshPaused(ctx context.Context) error {
	p, err := r.store.PausedJobs(ctx)
	if err != nil {
		return err
	}
	for name, j := range r.jobs {
		was := j.paused.Swap(p[name])
		if was && !p[name] {
			j.engine.Notify()
		}
	}
	return nil
}

// fingerprint is what, when changed, means a job's entries must be
// re-scored.
func fingerprint(c config.JobConfig) string {
	return fmt.Sprintf("%s|%s|%s|%s|%s", c.Kind, c.Provider, c.Spec, c.Timezone, c.Spread)
}

// Sync brings Redis in line with the configured jobs, once across
// replicas (under a lock): a new job schedules every eligible user, an
// edited schedule re-scores the job's entries, a removed job's due set is
// deleted. Call it at start and after a config reload.
func (r *Runner) Sync(ctx context.Context) error {
	ok, err := r.store.TryLock(ctx, "jobdefs", r.opt.Owner, 5*time.Minute)
	if err != nil || !ok {
		return err // someone else is syncing the same change
	}
	defer func() { _ = r.store.Unlock(context.WithoutCancel(ctx), "jobdefs", r.opt.Owner) }()
	defs, err := r.store.JobDefs(ctx)
	if err != nil {
		return err
	}
	now := r.opt.Clock.Now()
	var added []*job
	for _, name := range r.order {
		j := r.jobs[name]
		fp := fingerprint(j.cfg)
		old, exists := defs[name]
		switch {
		case !exists:
			added = append(added, j)
		case old != fp:
			n, err := r.store.RescoreDue(ctx, j.set, func(m string) time.Time { return j.timing.Next(m, now) })
			if err != nil {
				return err
			}
			r.log.Info().Str("job", name).Int("users", n).Msg("schedule changed; entries re-scored")
		}
		if old != fp {
			if err := r.store.SetJobDef(ctx, name, fp); err != nil {
				return err
			}
		}
	}
	for name := range defs {
		if _, ok := r.jobs[name]; !ok {
			if err := r.store.DropDue(ctx, SetName(name)); err != nil {
				return err
			}
			if err := r.store.DelJobDef(ctx, name); err != nil {
				return err
			}
			r.log.Info().Str("job", name).Msg("job removed; due set deleted")
		}
	}
	if len(added) > 0 {
		return r.scheduleAll(ctx, added, now)
	}
	return nil
}

// scheduleAll adds every eligible user to the given jobs, streaming users
// in batches; the writes of one batch overlap the reads of the next.
//
// The users come from the refresh due set: every runnable user has an
// entry there (its next refresh), and walking it (ZSCAN, shards in
// parallel) costs Redis much less than a SCAN over every key. With one
// provider configured no record is read at all: the set may also hold a
// user who just stopped being runnable, whose entry leaves the job at its
// first claim, as any stale entry does. With several providers each
// user's provider and state are read (UserRefs) and only the job's
// provider's runnable users are added.
func (r *Runner) scheduleAll(ctx context.Context, js []*job, now time.Time) error {
	type write struct {
		set     string
		entries []scheduler.Entry
	}
	writes := make(chan write, 8)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range writes {
				if err := r.store.AddDue(ctx, w.set, w.entries); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	scanErr := r.store.EachDue(ctx, tokens.RefreshSet, func(users []string) error {
		var refs []tokens.UserRef
		if len(r.providers) > 1 {
			var err error
			if refs, err = r.store.UserRefs(ctx, users); err != nil {
				return err
			}
		}
		for _, j := range js {
			entries := make([]scheduler.Entry, 0, len(users))
			if refs == nil {
				for _, u := range users {
					entries = append(entries, scheduler.Entry{Member: u, At: j.timing.Next(u, now)})
				}
			}
			for _, ref := range refs {
				if ref.State.Runnable() && ref.Provider == j.cfg.Provider {
					entries = append(entries, scheduler.Entry{Member: ref.UserID, At: j.timing.Next(ref.UserID, now)})
				}
			}
			if len(entries) > 0 {
				writes <- write{set: j.set, entries: entries}
			}
		}
		return nil
	})
	close(writes)
	wg.Wait()
	if scanErr != nil {
		return scanErr
	}
	select {
	case err := <-errc:
		return err
	default:
	}
	for _, j := range js {
		r.log.Info().Str("job", j.cfg.Name).Msg("job added; eligible users scheduled")
		j.engine.Notify()
	}
	return nil
}

// UserChanged keeps a user's job entries in step with its state: a
// runnable user is added to every job of its provider (keeping an
// existing schedule), any other leaves every job. The refresher calls it
// on every stored token and state change.
func (r *Runner) UserChanged(ctx context.Context, user, providerName string, st tokens.State) error {
	now := r.opt.Clock.Now()
	for _, name := range r.order {
		j := r.jobs[name]
		var err error
		switch {
		case st.Runnable() && j.cfg.Provider == providerName:
			err = r.store.AddDue(ctx, j.set, []scheduler.Entry{{Member: user, At: j.timing.Next(user, now)}})
		case !st.Runnable():
			err = r.store.ScheduleDue(ctx, j.set, []scheduler.Entry{{Member: user}})
		}
		if err != nil {
			return fmt.Errorf("job %s: %w", name, err)
		}
	}
	return nil
}

// Trigger makes a job due now for one user (user non-empty) or for every
// scheduled user. It returns how many entries it moved.
func (r *Runner) Trigger(ctx context.Context, name, user string) (int, error) {
	j, ok := r.jobs[name]
	if !ok {
		return 0, fmt.Errorf("job %q: %w", name, ErrUnknownJob)
	}
	now := r.opt.Clock.Now()
	if user == "" {
		return r.store.RescoreDue(ctx, j.set, func(string) time.Time { return now })
	}
	rec, err := r.store.Load(ctx, user)
	if err != nil {
		return 0, err
	}
	if !rec.State.Runnable() || rec.Provider != j.cfg.Provider {
		return 0, errkind.Errorf(errkind.Invalid, "user %q is %s with provider %q: not eligible for job %s", user, rec.State, rec.Provider, name)
	}
	return 1, r.store.ScheduleDue(ctx, j.set, []scheduler.Entry{{Member: user, At: now}})
}

// SetPaused pauses or resumes a job on every replica.
func (r *Runner) SetPaused(ctx context.Context, name string, paused bool) error {
	if _, ok := r.jobs[name]; !ok {
		return fmt.Errorf("job %q: %w", name, ErrUnknownJob)
	}
	return r.store.SetPaused(ctx, name, paused)
}

func (r *Runner) handler(j *job) scheduler.Handler[Loaded, *SavedRun] {
	return func(ctx context.Context, d scheduler.Due, pre Loaded, ok bool) scheduler.Outcome[*SavedRun] {
		run, saved := r.handle(ctx, j, d, pre, ok)
		run.At = r.opt.Clock.Now()
		out := scheduler.Outcome[*SavedRun]{Next: run.Next, Write: saved}
		if obs := r.opt.Observe; obs != nil {
			out.Settled = func() { obs(run) }
		}
		return out
	}
}

// ErrUnknownJob: no job of that name is configured.
var ErrUnknownJob = errkind.New(errkind.NotFound, "unknown job")

// runStore is the runner's store as its engines need it: a claim's
// finish writes the run's outcome.
type runStore struct{ Store }

func (s runStore) FinishDue(ctx context.Context, set string, done []scheduler.Done[*SavedRun]) ([]bool, error) {
	return s.FinishRuns(ctx, set, done)
}

// prefetch reads the records and job states of a claimed batch in one
// round trip. On failure the handlers read for themselves.
func (r *Runner) prefetch(ctx context.Context, j *job, batch []scheduler.Due) ([]Loaded, error) {
	users := make([]string, len(batch))
	for i, d := range batch {
		users[i] = d.Member
	}
	return r.store.LoadManyForRun(ctx, users, j.cfg.Name)
}

// errLeft: the user is no longer eligible for the job.
var errLeft = errors.New("user not eligible")

// handle runs one claimed entry, from the record and job state prefetched
// with its claim (pre), or read now. The run's outcome for the user's job
// state comes back as a SavedRun, written by the engine's finisher with
// the batch that re-schedules the entry; nil when nothing is recorded.
func (r *Runner) handle(ctx context.Context, j *job, d scheduler.Due, pre Loaded, prefetched bool) (Run, *SavedRun) {
	user, name := d.Member, j.cfg.Name
	out := Run{Job: name, User: user, Due: d.Due}
	now := r.opt.Clock.Now()
	rec, st, err := pre.Record, pre.State, pre.Err
	if !prefetched {
		rec, st, err = r.store.LoadForRun(ctx, user, name)
	}
	switch {
	case errors.Is(err, tokens.ErrNotFound), errors.Is(err, tokens.ErrMalformedRecord):
		out.Result, out.Err = ResultLeft, err
		return out, nil
	case err != nil:
		out.Result, out.Err, out.Next = ResultFailed, err, now.Add(r.opt.Lease)
		return out, nil
	case !rec.State.Runnable() || rec.Provider != j.cfg.Provider:
		out.Result, out.Err = ResultLeft, errLeft
		return out, nil
	}
	run, missed := j.timing.Due(user, d.Due, now)
	if missed > 0 {
		r.opt.Metrics.missed(name, missed)
	}
	if !run {
		out.Result, out.Next = ResultSkipped, j.timing.Next(user, now)
		return out, nil
	}
	r.opt.Metrics.lag(name, now.Sub(d.Due))
	took, err := r.execute(ctx, j, rec, &st)
	r.opt.Metrics.ran(name, err == nil, took)
	end := r.opt.Clock.Now()
	regular := j.timing.Next(user, end)
	if over := j.timing.Passed(user, now, end); over > 0 {
		// Slots that came while this run ran: missed, and counted.
		r.opt.Metrics.missed(name, over)
	}
	switch {
	case errors.Is(err, tokens.ErrReauthRequired), errors.Is(err, tokens.ErrDisabled), errors.Is(err, tokens.ErrNotFound):
		// The refresher flagged the user meanwhile: it leaves the job
		// and comes back, scheduled afresh, with a new token.
		out.Result, out.Err = ResultLeft, err
		return out, nil
	case ctx.Err() != nil && err != nil:
		// Shutting down past the grace period: hand the run back.
		out.Result, out.Err, out.Next = ResultFailed, err, now
		return out, nil
	}
	st.LastRun = end
	if err == nil {
		st.LastSuccess, st.Failures, st.LastError = end, 0, ""
		out.Result, out.Next = ResultOK, regular
	} else {
		st.Failures++
		st.LastError = describe(err)
		out.Result, out.Err, out.Next = ResultFailed, err, regular
		if st.Failures <= j.cfg.Retry.Attempts {
			if retry := end.Add(retryDelay(j.cfg.Retry, st.Failures)); retry.Before(regular) {
				out.Next = retry
			}
		}
		r.log.Warn().Str("user", user).Str("job", name).Str("error", st.LastError).Int("failures", st.Failures).
			Time("next", out.Next).Msg("job run failed")
	}
	r.count(name, err == nil)
	return out, &SavedRun{User: user, Job: name, State: st}
}

// retryDelay is the wait before retry n: exponential from Initial, capped
// at Max, with jitter in its upper half (never an immediate retry).
func retryDelay(c config.RetryConfig, n int) time.Duration {
	d := c.Initial
	for i := 1; i < n && d < c.Max; i++ {
		d *= 2
	}
	d = min(d, c.Max)
	return d/2 + rand.N(d/2+1)
}

// describe turns a run error into the short, secret-free text recorded
// per (job, user).
func describe(err error) string {
	var pe *provider.Error
	var re *tokens.RefreshError
	switch {
	case errors.As(err, &pe):
		s := "provider:" + pe.Op
		if pe.Status != 0 {
			s += fmt.Sprintf(":http_%d", pe.Status)
		}
		if pe.Code != "" {
			s += ":" + pe.Code
		}
		return s
	case errors.As(err, &re):
		return "token:" + re.Class.String() + ":" + re.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error:" + clip.String(err.Error(), 200)
}

// execute does the work of one run under the provider's limits and the
// job's timeout, and returns how long the run took. The timeout starts
// with the run, once the provider's max_concurrency slot and rate limit
// let it start: a run queued behind others (a catch-up burst after an
// outage) gets all of it, and waiting is not a timeout. ctx ends only at
// shutdown, which ends the wait too.
func (r *Runner) execute(ctx context.Context, j *job, rec tokens.Record, st *State) (time.Duration, error) {
	lim := r.providers[j.cfg.Provider]
	if lim.entry.Provider == nil {
		return 0, fmt.Errorf("provider %s is not available in this process", j.cfg.Provider)
	}
	select {
	case lim.sem <- struct{}{}:
		defer func() { <-lim.sem }()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	if lim.limiter != nil {
		if err := lim.limiter.Wait(ctx); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	err := r.run(ctx, j, lim, rec, st)
	return time.Since(start), err
}

// run is one run's work, under its timeout.
func (r *Runner) run(ctx context.Context, j *job, lim *limits, rec tokens.Record, st *State) error {
	user := rec.UserID
	src := r.sources(rec, j.cfg.Timeout)
	if j.cfg.Kind == config.JobPush {
		return r.push(ctx, j, lim.entry.Provider, src, user)
	}
	res, err := lim.entry.Provider.Pull(ctx, user, src, st.Cursor, func(it provider.Item) error {
		return j.sink.Deliver(ctx, user, j.cfg.Name, it)
	})
	if res.Cursor != "" && res.Cursor != st.Cursor {
		// Covers exactly the items the sink accepted, even if the pull
		// failed later: those are not delivered twice.
		if serr := r.store.SaveCursor(context.WithoutCancel(ctx), user, j.cfg.Name, res.Cursor); serr != nil && err == nil {
			err = serr
		}
		st.Cursor = res.Cursor
	}
	return err
}

// push drains up to Batch outbox items in order. An item leaves the outbox
// only once the provider accepted it; an item that failed more than
// retry.attempts times moves to the dead-letter stream and the rest go on.
func (r *Runner) push(ctx context.Context, j *job, p Provider, src provider.TokenSource, user string) error {
	items, err := r.store.Outbox(ctx, user, j.cfg.Batch)
	if err != nil {
		return err
	}
	for _, it := range items {
		err := p.Push(ctx, user, src, provider.PushItem{ID: it.ID, Data: it.Data, MimeType: it.MimeType, Accounts: it.Accounts, Tags: it.Tags})
		if err == nil {
			if err := r.store.Delivered(ctx, user, j.cfg.Name, it.StreamID); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, tokens.ErrReauthRequired) || errors.Is(err, tokens.ErrDisabled) || ctx.Err() != nil {
			return err
		}
		n, aerr := r.store.Attempt(ctx, user, j.cfg.Name, it.StreamID)
		if aerr != nil {
			return aerr
		}
		if n <= j.cfg.Retry.Attempts {
			return err // keep the order: retry this item before the rest
		}
		if derr := r.store.DeadLetter(ctx, user, j.cfg.Name, it, describe(err), r.opt.Clock.Now()); derr != nil {
			return derr
		}
		r.log.Warn().Str("user", user).Str("job", j.cfg.Name).Str("item", it.StreamID).Int("attempts", n).Str("error", describe(err)).Msg("push item dead-lettered")
	}
	return nil
}
