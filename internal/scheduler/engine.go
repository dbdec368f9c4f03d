package scheduler

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/syncd/syncd/internal/clock"
)

// Due is one claimed due-set entry.
type Due struct {
	Member string
	// Due is when the entry was due: its score before the claim. An entry
	// claimed again after its claimer stopped renewing (a dead replica)
	// keeps the due time of that claim, so the slots that passed under
	// the dead lease count as passed.
	Due time.Time
	// Fence identifies the claim (the store draws it; never 0). The entry
	// is this claimer's while the store holds it under this fence: not
	// claimed by another since, nor re-scored by someone else. Every later
	// write checks it, so a claimer that lost its lease cannot overwrite
	// the next owner's schedule. Lease renewals leave the fence alone: a
	// renewal whose outcome the claimer never learned costs it nothing.
	Fence int64
}

// ErrOutcomeUnknown marks a store error after which a write may or may
// not have been applied (the request was sent, the answer never came: a
// timeout, a broken connection). Every fenced write is safe to repeat, and
// the engine repeats finishes that fail with it.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// Done re-scores a claimed entry to Next, or removes it when Next is zero,
// and ends the claim. The store applies it only while the claim Fence
// names holds.
type Done[W any] struct {
	Member string
	Fence  int64
	Next   time.Time
	// Write is the handler's Outcome.Write, queued by the store in the
	// same round trip as the re-score (before it, so a failed batch
	// leaves the entry to be claimed and run again). The zero W: none.
	Write W
}

// Claims is the part of Store that does not depend on the write: the
// claims and their leases.
type Claims interface {
	// Shards is the number of shards each due set is split into.
	Shards() int
	// ClaimDue atomically takes up to limit entries of one shard whose
	// score is <= now and re-scores them to leaseUntil, under a new fence.
	ClaimDue(ctx context.Context, set string, shard int, now, leaseUntil time.Time, limit int) ([]Due, error)
	// RenewDue moves the lease of each claim (Member, Fence) that still
	// holds to until, and reports, per claim, whether it held.
	RenewDue(ctx context.Context, set string, until time.Time, claims []Due) ([]bool, error)
}

// Store is what the engine needs from storage (internal/redisstore) for
// handlers whose outcomes carry writes of type W.
type Store[W any] interface {
	Claims
	// FinishDue applies each Done whose claim still holds and reports, per
	// item, whether it did.
	FinishDue(ctx context.Context, set string, done []Done[W]) ([]bool, error)
}

// Handler does the work for one claimed member and returns when the member
// is next due; a zero Next removes it from the set. pre is what
// Options.Prefetch read for this claim; ok is false when there is none
// (no Prefetch, it failed, or TakePrefetched took it first). A handler
// whose ctx is cancelled (shutdown past the grace period) should return
// promptly with a time that hands the member back, usually now.
type Handler[P, W any] func(ctx context.Context, d Due, pre P, ok bool) Outcome[W]

// Outcome is what a handler reports.
type Outcome[W any] struct {
	Next time.Time
	// Write, unless zero, is a record of the work the store writes with
	// the batch that re-scores the entry (the job runner's run outcome),
	// so a handled entry costs no round trip of its own.
	Write W
	// Settled, if set, is called once the engine is done with this
	// outcome: written, or given up (the claim was lost, Redis refused
	// the batch, shutdown abandoned it). Observers that must see the
	// stored schedule (tests, the demo) report from here, not from the
	// handler, which returns before the write.
	Settled func()
}

// Options tune an Engine. Zero values take the defaults noted.
type Options[P any] struct {
	// Set names the due set, e.g. "refresh" or "job:pull-daily".
	Set string
	// Workers is how many handlers run at once (default 32).
	Workers int
	// Batch is the most entries one claim takes from one shard (default 256).
	Batch int
	// Lease is how long a claim holds an entry without a heartbeat
	// (default 1m). Heartbeats renew it every Lease/3; a store call of the
	// finisher (heartbeats, finishes) may take up to Lease/3.
	Lease time.Duration
	// PollInterval is how long the engine waits after finding nothing due
	// (default 1s). Notify wakes it sooner.
	PollInterval time.Duration
	Clock        clock.Clock
	Logger       zerolog.Logger
	// Prefetch, if set, is called with each claimed batch before its
	// entries are handed to workers: it reads what the handlers need for
	// the whole batch in one round trip instead of one each, and returns
	// one value per entry, in order. The engine keeps each value with its
	// claim (member and fence) and hands it to that claim's handler, or
	// to TakePrefetched; a value is never handed to another claim. On
	// error the handlers get none.
	Prefetch func(ctx context.Context, batch []Due) ([]P, error)
	// Paused, if set, is asked before each round of claims; while it
	// returns true nothing is claimed (entries wait, keeping their due
	// times, and the missed-run policy applies on resume).
	Paused func() bool
}

func (o *Options[P]) defaults() {
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
}

// Engine claims due entries of one due set and runs a Handler for each.
// Any number of engines, in any number of processes, may serve the same
// set: the claim script and the fence keep a member with one of them at a
// time. P is what Options.Prefetch reads for a claim, W what a handler's
// Outcome asks the store to write with the finish.
type Engine[P, W any] struct {
	store  Store[W]
	handle Handler[P, W]
	opt    Options[P]
	log    zerolog.Logger

	mu         sync.Mutex
	started    bool
	stopped    bool
	stopClaim  context.CancelFunc
	cancelWork context.CancelFunc
	done       chan struct{}

	wake  chan struct{}
	slot  chan struct{}
	queue chan Due

	// inflight maps each claimed member to its claim's fence (0: the
	// claim was lost). The claim loop adds; only the finisher goroutine
	// changes or deletes.
	imu      sync.Mutex
	inflight map[string]int64
	// settle holds the Settled hooks of outcomes being written; only
	// the finisher goroutine touches it.
	settle   map[string]func()
	stopping bool

	// prefetched holds what Prefetch read for claims queued here and not
	// started yet, by member; the fence names the claim it was read for.
	pmu        sync.Mutex
	prefetched map[string]prefetched[P]
}

type prefetched[P any] struct {
	fence int64
	value P
}

type result[W any] struct {
	member  string
	next    time.Time
	write   W
	settled func()
}

// NewEngine returns an engine for the due set opt.Set.
func NewEngine[P, W any](store Store[W], h Handler[P, W], opt Options[P]) *Engine[P, W] {
	opt.defaults()
	return &Engine[P, W]{
		store:    store,
		handle:   h,
		opt:      opt,
		log:      opt.Logger.With().Str("component", "engine").Str("set", opt.Set).Logger(),
		wake:     make(chan struct{}, 1),
		slot:     make(chan struct{}, 1),
		queue:    make(chan Due, opt.Workers+opt.Batch),
		inflight: make(map[string]int64),
		settle:   make(map[string]func()),
	}
}

// Notify makes the engine look for due entries now instead of at its next
// poll, e.g. after something was scheduled for immediate work.
func (e *Engine[P, W]) Notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Start launches the engine and returns at once. It is an error to start
// an engine twice or after Stop.
func (e *Engine[P, W]) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.stopped {
		return errors.New("scheduler: engine already started")
	}
	e.started = true
	claimCtx, stopClaim := context.WithCancel(ctx)
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	e.stopClaim, e.cancelWork = stopClaim, cancelWork
	e.done = make(chan struct{})

	results := make(chan result[W], e.opt.Workers)
	var workers sync.WaitGroup
	for range e.opt.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			e.work(workCtx, results)
		}()
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		e.finish(workCtx, results)
	}()
	go func() {
		e.claimLoop(claimCtx)
		close(e.queue)
		workers.Wait()
		close(results)
		<-finished
		cancelWork()
		close(e.done)
	}()
	return nil
}

// Stop stops claiming, hands back entries claimed but not started, and
// waits for running handlers until ctx is done; then it cancels them and
// waits for them to return. Stop is idempotent and safe before Start.
func (e *Engine[P, W]) Stop(ctx context.Context) error {
	e.mu.Lock()
	e.stopped = true
	if !e.started {
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	e.imu.Lock()
	e.stopping = true
	e.imu.Unlock()
	e.stopClaim()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
	}
	e.cancelWork()
	<-e.done
	return ctx.Err()
}

func (e *Engine[P, W]) claimLoop(ctx context.Context) {
	shards := e.store.Shards()
	capacity := e.opt.Workers + e.opt.Batch
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = 0
	errs := 0
	start := rand.IntN(shards)
	for ctx.Err() == nil {
		if e.opt.Paused != nil && e.opt.Paused() {
			if !sleep(ctx, e.opt.PollInterval, e.wake) {
				return
			}
			continue
		}
		claimed := 0
		var claimErr error
		for i := 0; i < shards && ctx.Err() == nil; i++ {
			free := capacity - e.inflightLen()
			for free <= 0 {
				select {
				case <-ctx.Done():
					return
				case <-e.slot:
				}
				free = capacity - e.inflightLen()
			}
			shard := (start + i) % shards
			now := e.opt.Clock.Now()
			items, err := e.store.ClaimDue(ctx, e.opt.Set, shard, now, now.Add(e.opt.Lease), min(free, e.opt.Batch))
			if err != nil {
				claimErr = err
				break
			}
			fresh := items[:0]
			e.imu.Lock()
			for _, d := range items {
				// A member still queued or running here whose lease ran
				// out (a stalled worker, a clock jump) was just claimed
				// again: keep the new fence, do not run it twice.
				if _, dup := e.inflight[d.Member]; !dup {
					fresh = append(fresh, d)
				}
				e.inflight[d.Member] = d.Fence
			}
			e.imu.Unlock()
			if e.opt.Prefetch != nil && len(fresh) > 0 {
				e.prefetch(ctx, fresh)
			}
			for _, d := range fresh {
				e.queue <- d
			}
			claimed += len(items)
		}
		start = (start + 1) % shards
		if claimErr != nil && ctx.Err() == nil {
			errs++
			if errs == 1 || errs%100 == 0 {
				e.log.Error().Err(claimErr).Int("consecutive_errors", errs).Msg("claim failed")
			}
			if !sleep(ctx, bo.NextBackOff(), nil) {
				return
			}
			continue
		}
		if errs > 0 {
			e.log.Info().Int("consecutive_errors", errs).Msg("claim recovered")
			errs = 0
			bo.Reset()
		}
		if claimed == 0 && !sleep(ctx, e.opt.PollInterval, e.wake) {
			return
		}
	}
}

// sleep waits d, or until wake fires; false if ctx ended.
func sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

func (e *Engine[P, W]) inflightLen() int {
	e.imu.Lock()
	defer e.imu.Unlock()
	return len(e.inflight)
}

func (e *Engine[P, W]) isStopping() bool {
	e.imu.Lock()
	defer e.imu.Unlock()
	return e.stopping
}

// prefetch runs Options.Prefetch for a claimed batch and keeps what it
// read with each claim.
func (e *Engine[P, W]) prefetch(ctx context.Context, batch []Due) {
	values, err := e.opt.Prefetch(ctx, batch)
	if err != nil || len(values) != len(batch) {
		return
	}
	e.pmu.Lock()
	defer e.pmu.Unlock()
	if e.prefetched == nil {
		e.prefetched = make(map[string]prefetched[P], len(batch))
	}
	for i, d := range batch {
		e.prefetched[d.Member] = prefetched[P]{fence: d.Fence, value: values[i]}
	}
}

// takePrefetched takes what Prefetch read for the claim d, if anything.
// A value read for another claim of the member is dropped.
func (e *Engine[P, W]) takePrefetched(d Due) (P, bool) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	p, ok := e.prefetched[d.Member]
	delete(e.prefetched, d.Member)
	if !ok || p.fence != d.Fence {
		var zero P
		return zero, false
	}
	return p.value, true
}

// TakePrefetched takes what Prefetch read for member's claim, queued here
// and not started yet, for work on the member outside the handler (the
// refresher's on-demand refresh that comes before its own pass). The
// claim's handler then gets none.
func (e *Engine[P, W]) TakePrefetched(member string) (P, bool) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	p, ok := e.prefetched[member]
	delete(e.prefetched, member)
	return p.value, ok
}

func (e *Engine[P, W]) work(ctx context.Context, results chan<- result[W]) {
	for d := range e.queue {
		pre, ok := e.takePrefetched(d)
		if e.isStopping() {
			// Claimed but not started: hand it back at its due time so
			// another replica takes it at once.
			results <- result[W]{member: d.Member, next: d.Due}
			continue
		}
		out := e.handle(ctx, d, pre, ok)
		results <- result[W]{member: d.Member, next: out.Next, write: out.Write, settled: out.Settled}
	}
}

// finish owns every write after the claim: it applies results in batches
// and renews the leases of everything in flight, so a claim's entry in
// inflight is never changed by two goroutines. A finish whose outcome is
// unknown (Redis did not answer) stays in flight, renewed, and is tried
// again until Redis answers; after results close, until ctx ends (Stop's
// grace), when the entries are left to run again after their lease.
func (e *Engine[P, W]) finish(ctx context.Context, results <-chan result[W]) {
	hb := time.NewTicker(e.renewEvery())
	defer hb.Stop()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = max(e.renewEvery(), bo.InitialInterval)
	bo.MaxElapsedTime = 0
	var (
		pending []Done[W]
		retry   <-chan time.Time
		errs    int
	)
	batch := make([]Done[W], 0, 256)
	for results != nil || len(pending) > 0 {
		var quit <-chan struct{}
		if results == nil {
			quit = ctx.Done()
		}
		select {
		case r, ok := <-results:
			if !ok {
				results = nil
				continue
			}
			batch = append(batch[:0], e.done1(r))
		drain:
			for len(batch) < cap(batch) {
				select {
				case r, ok := <-results:
					if !ok {
						break drain
					}
					batch = append(batch, e.done1(r))
				default:
					break drain
				}
			}
			pending = append(pending, e.apply(batch, false, &errs)...)
		case <-retry:
			retry = nil
			pending = e.apply(pending, true, &errs)
		case <-hb.C:
			e.heartbeat()
		case <-quit:
			e.imu.Lock()
			for _, d := range pending {
				delete(e.inflight, d.Member)
			}
			e.imu.Unlock()
			for _, d := range pending {
				e.settled(d.Member)
			}
			e.log.Error().Int("entries", len(pending)).Msg("finish abandoned at shutdown; entries run again after their lease")
			return
		}
		switch {
		case len(pending) == 0:
			bo.Reset()
			retry = nil
		case retry == nil:
			retry = time.After(bo.NextBackOff())
		}
	}
}

// renewEvery is the heartbeat period.
func (e *Engine[P, W]) renewEvery() time.Duration { return max(e.opt.Lease/3, time.Millisecond) }

func (e *Engine[P, W]) done1(r result[W]) Done[W] {
	if r.settled != nil {
		e.settle[r.member] = r.settled
	}
	e.imu.Lock()
	fence := e.inflight[r.member]
	e.imu.Unlock()
	return Done[W]{Member: r.member, Fence: fence, Next: r.next, Write: r.write}
}

// storeCtx bounds one write of the finisher, to a heartbeat period so a
// call Redis does not answer cannot hold back the next renewal. It is not
// tied to the engine's context: handing work back must still happen while
// shutting down.
func (e *Engine[P, W]) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), min(10*time.Second, e.renewEvery()))
}

// apply writes a batch of finished entries and returns those to try again:
// the batch, when its outcome is unknown. retried says the batch was tried
// before, so a claim found gone was most likely ended by that attempt.
// errs counts consecutive failures, for the log.
func (e *Engine[P, W]) apply(batch []Done[W], retried bool, errs *int) (again []Done[W]) {
	defer func() {
		select {
		case e.slot <- struct{}{}:
		default:
		}
	}()
	for len(batch) > 0 {
		ctx, cancel := e.storeCtx()
		held, err := e.store.FinishDue(ctx, e.opt.Set, batch)
		cancel()
		if errors.Is(err, ErrOutcomeUnknown) {
			// The entries stay claimed here and renewed; the fences make
			// a second attempt safe whatever became of this one.
			if *errs++; *errs == 1 || *errs%100 == 0 {
				e.log.Error().Err(err).Int("entries", len(batch)).Int("consecutive_errors", *errs).Msg("finish failed; retrying")
			}
			return append(again, batch...)
		}
		if err == nil && *errs > 0 {
			e.log.Info().Int("consecutive_errors", *errs).Msg("finish recovered")
			*errs = 0
		}
		if err != nil {
			// Redis refused the batch: the entries keep their lease
			// score and come due again when it passes: late, never lost.
			e.log.Error().Err(err).Int("entries", len(batch)).Msg("finish failed; entries retry after their lease")
		}
		var reclaimed, handback []Done[W]
		lost, gone := 0, 0
		now := e.opt.Clock.Now()
		e.imu.Lock()
		for i, d := range batch {
			cur := e.inflight[d.Member]
			switch {
			case err != nil:
				delete(e.inflight, d.Member)
			case held[i] && cur != d.Fence:
				// Claimed again after this finish landed, while the
				// member was still listed here, so the claim loop did not
				// queue it: hand that claim back so it is claimed afresh.
				handback = append(handback, Done[W]{Member: d.Member, Fence: cur, Next: now})
				delete(e.inflight, d.Member)
			case held[i]:
				delete(e.inflight, d.Member)
			case cur != 0 && cur != d.Fence:
				// Our lease ran out and this engine claimed the member
				// again before the finish: apply the result under the
				// new claim (the write already went out).
				reclaimed = append(reclaimed, Done[W]{Member: d.Member, Fence: cur, Next: d.Next})
			case retried:
				gone++
				delete(e.inflight, d.Member)
			default:
				lost++
				delete(e.inflight, d.Member)
			}
		}
		e.imu.Unlock()
		if len(e.settle) > 0 {
			for _, d := range batch {
				if !slices.ContainsFunc(reclaimed, func(r Done[W]) bool { return r.Member == d.Member }) {
					e.settled(d.Member)
				}
			}
		}
		if len(handback) > 0 {
			// If this fails the claim simply expires after its lease.
			ctx, cancel := e.storeCtx()
			_, _ = e.store.FinishDue(ctx, e.opt.Set, handback)
			cancel()
		}
		if lost > 0 {
			e.log.Warn().Int("entries", lost).Msg("lease lost before finish; another claimer owns them")
		}
		if gone > 0 {
			e.log.Info().Int("entries", gone).Msg("finish retried; claims already ended, most likely by the attempt that failed")
		}
		batch = reclaimed
	}
	return again
}

// settled calls and forgets member's Settled hook, if any.
func (e *Engine[P, W]) settled(member string) {
	if f, ok := e.settle[member]; ok {
		delete(e.settle, member)
		f()
	}
}

// heartbeat renews the lease of every claim in flight. A renewal that
// fails changes nothing here (the fences stay; the next one tries again),
// whether or not Redis applied it.
func (e *Engine[P, W]) heartbeat() {
	until := e.opt.Clock.Now().Add(e.opt.Lease)
	e.imu.Lock()
	claims := make([]Due, 0, len(e.inflight))
	for m, f := range e.inflight {
		if f != 0 {
			claims = append(claims, Due{Member: m, Fence: f})
		}
	}
	e.imu.Unlock()
	if len(claims) == 0 {
		return
	}
	ctx, cancel := e.storeCtx()
	held, err := e.store.RenewDue(ctx, e.opt.Set, until, claims)
	cancel()
	if err != nil {
		e.log.Error().Err(err).Int("entries", len(claims)).Msg("heartbeat failed")
		return
	}
	e.imu.Lock()
	for i, c := range claims {
		if cur, ok := e.inflight[c.Member]; !ok || cur != c.Fence {
			continue // finished, or re-claimed with a new fence meanwhile
		}
		if !held[i] {
			e.inflight[c.Member] = 0 // lost: stop renewing; the finish will not apply
		}
	}
	e.imu.Unlock()
}

// Entry is a member and the time it is due, for scheduling outside a claim.
// A zero At removes the member.
type Entry struct {
	Member string
	At     time.Time
}
