package refresher

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/scheduler"
	"github.com/syncd/syncd/internal/tokens"
)

// Provider exchanges a refresh token for a new token. Implementations live
// in internal/provider/...; failures are *tokens.RefreshError built with
// tokens.NewRefreshError so they classify the same everywhere. The
// returned token may leave RefreshToken empty (the old one stays valid)
// and expiries zero (unknown).
type Provider interface {
	Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error)
}

// Store is what the refresher needs from storage (internal/redisstore):
// the token records, and the refresh due set its engine serves. Finishing
// a refresh claim writes nothing else.
type Store interface {
	tokens.Store
	scheduler.Store[struct{}]
}

// ProviderEntry is one configured provider: how to call it and its policy.
// Provider may be nil for a Refresher that only stores tokens (the CLI).
type ProviderEntry struct {
	Provider Provider
	Policy   Policy
}

// Options tune a Refresher.
type Options struct {
	// Owner identifies this refresher in leases; default host-pid-random.
	Owner string
	// Workers, Batch, PollInterval: see scheduler.Options.
	Workers      int
	Batch        int
	PollInterval time.Duration
	// Lease bounds how long a crashed refresher can block a user: both the
	// due-set claim and the per-user refresh lease. It must exceed every
	// provider's Timeout.
	Lease   time.Duration
	Clock   clock.Clock
	Logger  zerolog.Logger
	Metrics *Metrics
	// Observe, if set, is called after every pass over a claimed user,
	// once its next due time is written (tests, the demo's progress
	// view). It runs on the engine's finisher and must not block.
	Observe func(Result)
	// OnChange, if set, is called after a token is stored and after every
	// state change, with the user's provider and new state: the job
	// runner keeps the user's job schedule in step with it. An error is
	// logged; the next reconciliation repairs what it missed.
	OnChange func(ctx context.Context, user, provider string, st tokens.State) error
}

// ErrUnknownProvider: the record names a provider not configured.
var ErrUnknownProvider = errors.New("unknown provider")

// Refresher keeps every user's token alive: it serves the "refresh" due
// set with a scheduler.Engine, and refreshes on demand for jobs (Token,
// Rejected). One refresh per user at a time across all replicas: an
// in-process single-flight in front of a per-user lease in the record,
// with writes fenced by the record's version.
type Refresher struct {
	store     Store
	keys      *tokens.Keyring
	providers map[string]*providerState
	opt       Options
	log       zerolog.Logger
	engine    *scheduler.Engine[tokens.Lease, struct{}]
	sf        singleflight.Group

	leaseSeq    atomic.Uint64
	storeFailed atomic.Bool // a store call failed since the last that answered

	pmu     sync.Mutex
	orphans map[string]string        // leases this process may still hold, by user
	pending map[string]tokens.Record // rotated tokens Redis did not take in time, by user
}

type providerState struct {
	name string
	ProviderEntry
	breaker *breaker
}

// New returns a Refresher; Start runs its due-set engine.
func New(store Store, keys *tokens.Keyring, providers map[string]ProviderEntry, opt Options) (*Refresher, error) {
	if opt.Owner == "" {
		opt.Owner = defaultOwner()
	}
	if opt.Lease <= 0 {
		opt.Lease = time.Minute
	}
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	r := &Refresher{store: store, keys: keys, opt: opt, providers: make(map[string]*providerState),
		log: opt.Logger.With().Str("component", "refresher").Logger()}
	for name, e := range providers {
		if e.Policy.Timeout >= opt.Lease {
			return nil, fmt.Errorf("provider %s: timeout %s must be shorter than the refresher lease %s", name, e.Policy.Timeout, opt.Lease)
		}
		r.providers[name] = &providerState{name: name, ProviderEntry: e,
			breaker: &breaker{threshold: e.Policy.CircuitFailures, cooldown: e.Policy.CircuitCooldown}}
	}
	handle := func(ctx context.Context, d scheduler.Due, l tokens.Lease, ok bool) scheduler.Outcome[struct{}] {
		var pre *tokens.Lease
		if ok {
			pre = &l
		}
		return r.handle(ctx, d, pre)
	}
	r.engine = scheduler.NewEngine(store, handle, scheduler.Options[tokens.Lease]{
		Set: tokens.RefreshSet, Workers: opt.Workers, Batch: opt.Batch, Lease: opt.Lease,
		PollInterval: opt.PollInterval, Clock: opt.Clock, Logger: opt.Logger,
		Prefetch: r.prefetch,
	})
	return r, nil
}

func defaultOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Start runs the due-set engine. It returns at once.
func (r *Refresher) Start(ctx context.Context) error { return r.engine.Start(ctx) }

// Stop stops claiming and waits for refreshes in flight until ctx ends.
func (r *Refresher) Stop(ctx context.Context) error { return r.engine.Stop(ctx) }

// Put validates nothing (see tokens.ParseToken) and stores tok for its user under
// provider: the user becomes active (unless disabled), leaves the re-auth
// queue, and is scheduled for refresh.
func (r *Refresher) Put(ctx context.Context, provider string, tok tokens.Token) (*tokens.Transition, error) {
	_, tr, err := r.PutWithReason(ctx, provider, tok, tokens.ReasonStored)
	return tr, err
}

// PutWithReason is Put with the reason the events stream records for the
// state change (ReasonAuthorized, ...). It also returns the user's state
// as stored (active, or disabled), so callers need not read it back.
func (r *Refresher) PutWithReason(ctx context.Context, provider string, tok tokens.Token, reason string) (tokens.State, *tokens.Transition, error) {
	ps, ok := r.providers[provider]
	if !ok {
		return "", nil, fmt.Errorf("provider %q: %w", provider, ErrUnknownProvider)
	}
	kid, ct, err := r.keys.SealToken(tok, provider)
	if err != nil {
		return "", nil, err
	}
	now := r.opt.Clock.Now()
	rec := tokens.Record{UserID: tok.UserID, Provider: provider, KeyID: kid, Ciphertext: ct,
		AccessExpiry: tok.AccessExpiry, RefreshExpiry: tok.RefreshExpiry}
	st, tr, err := r.store.Put(ctx, rec, reason, now)
	if err != nil {
		return "", nil, err
	}
	due := ps.Policy.DueAt(rec, ps.Policy.randomJitter())
	if err := r.store.ScheduleDue(ctx, tokens.RefreshSet, []scheduler.Entry{{Member: tok.UserID, At: due}}); err != nil {
		return st, tr, err
	}
	r.logTransition(tr)
	r.changed(ctx, tok.UserID, provider, st)
	if !due.After(now) {
		r.engine.Notify()
	}
	return st, tr, nil
}

func (r *Refresher) changed(ctx context.Context, user, provider string, st tokens.State) {
	if r.opt.OnChange == nil {
		return
	}
	if err := r.opt.OnChange(ctx, user, provider, st); err != nil {
		r.log.Error().Err(err).Str("user", user).Msg("updating the user's job schedule failed")
	}
}

// Disable switches a user off (operator action): no refreshes, no jobs,
// out of the re-auth queue. Enable brings a disabled user back to active
// and schedules a refresh check at once; a user whose token died while
// disabled is flagged by that check.
func (r *Refresher) Disable(ctx context.Context, user string) (*tokens.Transition, error) {
	return r.setState(ctx, user, tokens.Disabled)
}

// Enable: see Disable.
func (r *Refresher) Enable(ctx context.Context, user string) (*tokens.Transition, error) {
	return r.setState(ctx, user, tokens.Active)
}

func (r *Refresher) setState(ctx context.Context, user string, to tokens.State) (*tokens.Transition, error) {
	now := r.opt.Clock.Now()
	tr, err := r.store.SetState(ctx, user, to, tokens.ReasonOperator, now)
	if err != nil {
		return nil, err
	}
	at := now // enabled: check now; the handler reschedules by the record
	if to == tokens.Disabled {
		at = time.Time{}
	}
	if tr != nil {
		if err := r.store.ScheduleDue(ctx, tokens.RefreshSet, []scheduler.Entry{{Member: user, At: at}}); err != nil {
			return tr, err
		}
		r.logTransition(tr)
		if rec, err := r.store.Load(ctx, user); err == nil {
			r.changed(ctx, user, rec.Provider, tr.To)
		}
	}
	return tr, nil
}

// prefetch takes the refresh leases of a claimed batch in one round trip,
// one lease id per user; the first refresh of each user in this process
// (its handler, or a job's forced refresh that comes first and takes it
// from the engine) starts from that lease and the record it returned. If
// the round trip fails, the leases may or may not have been taken: the
// ids are kept so that the handlers renew them rather than wait for them
// to expire. It never fails.
func (r *Refresher) prefetch(ctx context.Context, batch []scheduler.Due) ([]tokens.Lease, error) {
	users := make([]string, len(batch))
	ids := make([]string, len(batch))
	for i, d := range batch {
		users[i], ids[i] = d.Member, r.newLeaseID()
	}
	now := r.opt.Clock.Now()
	res, err := r.store.AcquireMany(ctx, users, ids, now, now.Add(r.opt.Lease))
	if err != nil {
		r.storeFailed.Store(true)
		res = make([]tokens.Lease, len(batch))
		for i := range res {
			res[i] = tokens.Lease{ID: ids[i], Err: err}
		}
	} else {
		r.storeFailed.Store(false)
	}
	return res, nil
}

// newLeaseID names one acquisition of a refresh lease.
func (r *Refresher) newLeaseID() string {
	return r.opt.Owner + "/" + strconv.FormatUint(r.leaseSeq.Add(1), 36)
}

// orphan remembers a lease this process may still hold in Redis (its
// release, commit, failure or flag did not get an answer): the next
// acquisition for the user here renews it instead of waiting it out.
func (r *Refresher) orphan(user, leaseID string) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if r.orphans == nil {
		r.orphans = make(map[string]string)
	}
	r.orphans[user] = leaseID
}

func (r *Refresher) takeOrphan(user string) string {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	id := r.orphans[user]
	delete(r.orphans, user)
	return id
}

// handle serves one claimed entry of the refresh due set; pre is the lease
// prefetched with its claim (nil: none). Observe sees the result once the
// engine has written the entry's next due time.
func (r *Refresher) handle(ctx context.Context, d scheduler.Due, pre *tokens.Lease) scheduler.Outcome[struct{}] {
	o, err := r.refresh(ctx, d.Member, nil, pre)
	out := scheduler.Outcome[struct{}]{Next: o.next}
	if obs := r.opt.Observe; obs != nil {
		res := Result{User: d.Member, Outcome: resultOf(o, err), Next: o.next, Err: err}
		out.Settled = func() { obs(res) }
	}
	return out
}

// pass is how one pass over a user ended: the token it ended with (zero
// when it has none to give), when the user is next due (zero: leave the
// due set), and OutcomeOK when it refreshed (or stored a kept token).
type pass struct {
	tok    tokens.Token
	next   time.Time
	result Outcome
}

// Result describes one pass of the refresher over a claimed user, for
// Options.Observe.
type Result struct {
	User string
	// Outcome is how the pass ended: one of the Outcome constants.
	Outcome Outcome
	// Next is when the user is due again; zero when it left the due set.
	Next time.Time
	Err  error
}

// Outcome is how a pass of the refresher over a user ended (Result).
type Outcome string

// The outcomes. OutcomeTransient, OutcomeReauth and OutcomeConfig are the
// failure classes (tokens.Class) of a provider's refusal.
const (
	OutcomeOK          Outcome = "ok"
	OutcomeTransient   Outcome = "transient"
	OutcomeReauth      Outcome = "reauth"
	OutcomeConfig      Outcome = "config"
	OutcomeNotDue      Outcome = "not_due"
	OutcomeBusy        Outcome = "busy"
	OutcomeCircuitOpen Outcome = "circuit_open"
	OutcomeNotRunnable Outcome = "not_runnable"
	OutcomeError       Outcome = "error" // storage
)

// refresh refreshes user's token if it is due, or, for a caller that
// needs a token (good != nil), unless the token found under the lease is
// good (someone refreshed it meanwhile). Concurrent callers in this
// process share one refresh. pre, if not nil, is a lease prefetched for
// user (see acquire); a caller that joins another's refresh remembers it
// as an orphan, so the next acquisition renews it. It returns the token it
// ended with (zero when it has none to give), when the user is next due
// (zero: leave the due set), and why there is no usable token.
func (r *Refresher) refresh(ctx context.Context, user string, good goodFunc, pre *tokens.Lease) (pass, error) {
	ran := false
	v, err, _ := r.sf.Do(user, func() (any, error) {
		ran = true
		o, err := r.refreshLocked(ctx, user, good, false, pre)
		return o, err
	})
	if !ran && pre != nil && (pre.Err != nil || pre.Status == tokens.Acquired) {
		r.orphan(user, pre.ID)
	}
	o, _ := v.(pass)
	return o, err
}

// acquire returns a lease on user's record that leaves time for a whole
// refresh: the one prefetched with the claimed batch (pre, or, when pre is
// nil, one the engine still holds for a queued claim) when it is still
// good, else a new acquisition (renewing a lease of ours that may still be
// held). A lease is not good after a store write failed (Redis must answer
// again before the provider is called), or when less than the provider's
// timeout plus half the rest of the lease is left.
func (r *Refresher) acquire(ctx context.Context, user string, now time.Time, pre *tokens.Lease) tokens.Lease {
	var l tokens.Lease
	var ok bool
	if pre != nil {
		l, ok = *pre, true
	} else {
		l, ok = r.engine.TakePrefetched(user)
	}
	renew := r.takeOrphan(user)
	if ok && renew == "" && l.Err == nil && !r.storeFailed.Load() && (l.Status != tokens.Acquired || r.enoughLease(l.Record, now)) {
		return l
	}
	if ok && (l.Err != nil || l.Status == tokens.Acquired) {
		// The batch's lease (taken, or perhaps taken) is the newest this
		// process may hold: it replaced any older one of ours.
		renew = l.ID
	}
	id := r.newLeaseID()
	rec, st, err := r.store.Acquire(ctx, user, id, renew, now, now.Add(r.opt.Lease))
	if err != nil {
		// Unknown whether it was taken: renew it next time.
		r.storeFailed.Store(true)
		r.orphan(user, id)
	} else {
		r.storeFailed.Store(false)
	}
	return tokens.Lease{ID: id, Record: rec, Status: st, Err: err}
}

// enoughLease reports whether a lease ending at rec.LeaseUntil leaves time
// for the provider call and for storing its answer.
func (r *Refresher) enoughLease(rec tokens.Record, now time.Time) bool {
	return rec.LeaseUntil.Sub(now) >= r.refreshBudget(rec.Provider)
}

// goodFunc tells whether a token is good enough for a caller.
type goodFunc func(rec tokens.Record, tok tokens.Token, now time.Time) bool

func never(tokens.Record, tokens.Token, time.Time) bool { return false }

// refreshLocked runs one refresh of user under a lease of its own. verify
// is set when it checks a token that replaced one the provider refused.
// pre: see acquire.
func (r *Refresher) refreshLocked(ctx context.Context, user string, good goodFunc, verify bool, pre *tokens.Lease) (pass, error) {
	log := r.log.With().Str("user", user).Logger()
	now := r.opt.Clock.Now()
	l := r.acquire(ctx, user, now, pre)
	rec, st, err := l.Record, l.Status, l.Err
	switch {
	case errors.Is(err, tokens.ErrMalformedRecord):
		log.Error().Err(err).Msg("malformed record quarantined")
		if qerr := r.store.Quarantine(ctx, user, "malformed_record", now); qerr != nil {
			log.Error().Err(qerr).Msg("quarantine failed")
			return pass{next: now.Add(r.opt.Lease)}, err
		}
		r.opt.Metrics.quarantined()
		return pass{}, err
	case err != nil:
		// Storage trouble: hand the entry back for a retry after a lease.
		return pass{next: now.Add(r.opt.Lease)}, err
	}
	switch st {
	case tokens.AcquireMissing:
		return pass{}, tokens.ErrNotFound
	case tokens.AcquireNotRunnable:
		return pass{}, stateErr(rec.State)
	case tokens.AcquireBusy:
		// Someone else is refreshing; look again when their lease and
		// its grace end.
		return pass{next: rec.LeaseUntil.Add(r.opt.Lease)}, errBusy
	}
	if kept, ok := r.takePending(user); ok {
		if o, done, err := r.commitPending(ctx, log, l.ID, rec, kept, now); done {
			return o, err
		}
	}
	release := func() {
		if err := r.store.Release(ctx, user, l.ID); err != nil {
			r.storeFailed.Store(true)
			r.orphan(user, l.ID)
			log.Warn().Err(err).Msg("lease release failed; it expires by itself")
		}
	}
	ps, ok := r.providers[rec.Provider]
	if !ok {
		release()
		log.Error().Str("provider", rec.Provider).Msg("record names an unconfigured provider")
		return pass{next: now.Add(time.Hour)}, fmt.Errorf("provider %q: %w", rec.Provider, ErrUnknownProvider)
	}
	log = log.With().Str("provider", ps.name).Logger()
	tok, err := r.keys.OpenRecord(rec)
	if err != nil {
		// Quarantine only a record that fails under a verified key; a
		// key not configured or not verified is the operator's to fix
		// (the rule: openFailure).
		reason, quarantine := openFailure(r.keys, err)
		r.opt.Metrics.openFailed(reason)
		if !quarantine {
			release()
			log.Error().Err(err).Str("reason", reason).Msg("token record does not open with the configured keys; fix encryption.keys")
			return pass{next: now.Add(ps.Policy.RetryMax)}, err
		}
		log.Error().Err(err).Msg("undecryptable record quarantined")
		if qerr := r.store.Quarantine(ctx, user, "undecryptable_record", now); qerr != nil {
			release()
			return pass{next: now.Add(r.opt.Lease)}, err
		}
		r.opt.Metrics.quarantined()
		return pass{}, err
	}
	if (good == nil && !ps.Policy.isDue(rec, now)) || (good != nil && good(rec, tok, now)) {
		// A stale index entry (the token was stored or refreshed since),
		// or a caller whose need another refresh met while it waited.
		release()
		return pass{tok: tok, next: ps.Policy.DueAt(rec, ps.Policy.randomJitter())}, nil
	}
	if !rec.RefreshExpiry.IsZero() && !rec.RefreshExpiry.After(now) {
		return r.flag(ctx, log, l.ID, rec, ps, tokens.ReasonRefreshTokenExpired, "reauth:refresh_token_expired", verify)
	}
	if ok, retry := ps.breaker.allow(now); !ok {
		release()
		return pass{next: retry.Add(ps.Policy.randomJitter())}, errCircuitOpen
	}

	// The call is not cut short by shutdown: once the request is out the
	// provider may rotate the token, and only an answer tells us the new
	// one. It ends within the provider timeout, which the lease outlasts.
	start := time.Now()
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ps.Policy.Timeout)
	fresh, err := ps.Provider.Refresh(cctx, tok)
	cancel()
	if err != nil {
		return r.failed(ctx, log, l.ID, rec, ps, err, start, verify)
	}
	if ps.breaker.success() {
		r.opt.Metrics.circuit(ps.name, false)
		log.Info().Msg("provider circuit closed")
	}
	fresh.UserID = user
	if fresh.RefreshToken == "" {
		fresh.RefreshToken = tok.RefreshToken
		if fresh.RefreshExpiry.IsZero() {
			fresh.RefreshExpiry = tok.RefreshExpiry
		}
	}
	if fresh.AccessExpiry.IsZero() {
		fresh.AccessExpiry = now.Add(ps.Policy.DefaultLifetime)
	}
	if fresh.AccessToken == "" {
		return r.failed(ctx, log, l.ID, rec, ps, tokens.NewRefreshError(0, "empty_access_token", 0, errors.New("provider returned no access token")), start, verify)
	}
	kid, ct, err := r.keys.SealToken(fresh, rec.Provider)
	if err != nil {
		release()
		return pass{next: now.Add(r.opt.Lease)}, err
	}
	next := rec
	next.KeyID, next.Ciphertext = kid, ct
	next.AccessExpiry, next.RefreshExpiry, next.LastRefresh = fresh.AccessExpiry, fresh.RefreshExpiry, now
	ok, tr, retried, err := r.commit(ctx, log, l.ID, next, now)
	if errors.Is(err, tokens.ErrUnacked) {
		r.opt.Metrics.observe(ps.name, time.Since(start))
		return r.unacked(log, l.ID, next, ps, err, now)
	}
	if err != nil {
		// Redis did not take the rotated token while the lease and its
		// grace lasted. It stays in memory: the next acquisition here
		// stores it instead of calling the provider. If another replica
		// takes the user over first, it presents the spent token and
		// counts the loss (result "lost").
		r.keepPending(next)
		log.Error().Err(err).Msg("refreshed token not stored yet; kept in memory for the next attempt")
		return pass{next: now.Add(r.opt.Lease)}, err
	}
	if !ok && retried {
		// Fenced out after an attempt whose answer was lost: that
		// attempt may have landed (the fence is then our own write), or
		// a failover brought back an older record. Either way the token
		// the provider just returned is its only live one: keep it, with
		// the lease that attempt may hold, and let the next acquisition
		// read the record and decide (commitPending). Adopting the record
		// could present a token the provider has rotated away.
		return r.fencedOut(log, l.ID, next, now)
	}
	if !ok {
		// A newer token was stored while we refreshed: it wins.
		log.Info().Msg("refresh superseded by a newer stored token")
		return r.adopt(ctx, user, ps)
	}
	r.opt.Metrics.refreshed(ps.name, "ok", time.Since(start))
	r.logTransition(tr)
	log.Debug().Time("access_expiry", fresh.AccessExpiry).Msg("token refreshed")
	return pass{tok: fresh, next: ps.Policy.DueAt(next, ps.Policy.randomJitter()), result: OutcomeOK}, nil
}

// commit stores a refreshed token, retrying while the lease and the grace
// after it last (no other refresher takes the lease over before that): the
// provider has already rotated the token, so giving up early would lose
// it. It ignores ctx's cancellation (shutdown) for the same reason.
//
// Besides Commit's answers it reports whether an earlier attempt got no
// answer, so that a refusal may be that attempt's own write (or what a
// failover left of it).
func (r *Refresher) commit(ctx context.Context, log zerolog.Logger, lease string, next tokens.Record, now time.Time) (bool, *tokens.Transition, bool, error) {
	deadline := time.Now().Add(next.LeaseUntil.Add(r.opt.Lease).Sub(r.opt.Clock.Now()))
	ctx = context.WithoutCancel(ctx)
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 50*time.Millisecond, time.Second, 0
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, max(min(time.Until(deadline), 5*time.Second), 100*time.Millisecond))
		ok, tr, err := r.store.Commit(cctx, lease, next, tokens.ReasonRefreshed, now)
		cancel()
		retried := attempt > 1
		if errors.Is(err, tokens.ErrUnacked) {
			// Stored on the master: a retry would be fenced out by its
			// own write. The caller keeps the token.
			r.storeFailed.Store(false)
			return ok, tr, retried, err
		}
		if err == nil {
			if attempt > 1 && ok {
				r.storeFailed.Store(false)
				log.Info().Int("attempts", attempt).Msg("refreshed token stored after retries")
			}
			return ok, tr, retried, nil
		}
		r.storeFailed.Store(true)
		left := time.Until(deadline)
		if left <= 0 {
			r.orphan(next.UserID, lease)
			return false, nil, true, err
		}
		if attempt == 1 {
			log.Warn().Err(err).Msg("storing the refreshed token failed; retrying while the lease lasts")
		}
		time.Sleep(min(bo.NextBackOff(), left))
	}
}

// unacked handles a commit of next that reached the master but not the
// replicas it must reach (tokens.ErrUnacked): a failover now could bring
// back the token the provider has just rotated away. The token is not
// used and not trusted: it is kept for the next acquisition, which
// renews the lease the commit kept (nobody else presents the token
// meanwhile) and commits it again, without calling the provider, until
// replicas acknowledge it (commitPending). It is retried after a quarter
// of the lease, well before anyone else could take the lease over.
func (r *Refresher) unacked(log zerolog.Logger, lease string, next tokens.Record, ps *providerState, err error, now time.Time) (pass, error) {
	r.keepPending(next)
	r.orphan(next.UserID, lease)
	r.opt.Metrics.unacked(ps.name)
	log.Warn().Err(err).Msg("refreshed token stored but not acknowledged by replicas; kept in memory and committed again")
	return pass{next: now.Add(r.opt.Lease / 4)}, err
}

// fencedOut handles a commit of next, a token the provider has rotated
// to, that the master refused although the provider's answer is the only
// live token: an earlier attempt whose answer was lost may have landed
// (the fence is its own write, and it may hold the lease), or a failover
// brought back an older record. The token is kept and the lease
// remembered; the next acquisition renews it, reads the record and
// decides (commitPending), a quarter of the lease later.
func (r *Refresher) fencedOut(log zerolog.Logger, lease string, next tokens.Record, now time.Time) (pass, error) {
	r.keepPending(next)
	r.orphan(next.UserID, lease)
	log.Warn().Msg("storing a rotated token was fenced out; it is kept for the next acquisition")
	return pass{next: now.Add(r.opt.Lease / 4)}, fmt.Errorf("commit of a rotated token fenced out: %w", errBusy)
}

// keepPending keeps next, a record with a rotated token Redis did not
// take in time, or took without the replicas acknowledging it (its
// Version is the one it replaces), for the next acquisition of the user
// in this process.
func (r *Refresher) keepPending(next tokens.Record) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if r.pending == nil {
		r.pending = make(map[string]tokens.Record)
	}
	r.pending[next.UserID] = next
}

func (r *Refresher) takePending(user string) (tokens.Record, bool) {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	p, ok := r.pending[user]
	delete(r.pending, user)
	return p, ok
}

// commitPending stores a rotated token kept through an outage or an
// unacknowledged commit, under the lease just acquired, instead of
// calling the provider again. The record found decides:
//   - it holds the kept token under a newer version: the commit reached
//     the master, maybe not the replicas; it is committed again (a write
//     that WAIT can count, and that covers the earlier one);
//   - its version is the kept token's base or older: the commit never
//     landed, or a failover lost it (the old token is back): the kept
//     token is stored over it;
//   - otherwise a token was stored since: done is false, the kept token
//     is of no use and the refresh goes on as usual.
//
// A commit fenced out (the lease or the version changed on the master
// since the acquisition) keeps the token for the next acquisition.
func (r *Refresher) commitPending(ctx context.Context, log zerolog.Logger, lease string, rec, kept tokens.Record, now time.Time) (o pass, done bool, err error) {
	if rec.Version > kept.Version && !bytes.Equal(rec.Ciphertext, kept.Ciphertext) {
		log.Warn().Msg("a rotated token kept through an outage was superseded by a newer stored token")
		return pass{}, false, nil
	}
	next := kept
	next.Version, next.LeaseUntil = rec.Version, rec.LeaseUntil
	ok, tr, _, err := r.commit(ctx, log, lease, next, now)
	if errors.Is(err, tokens.ErrUnacked) {
		ps := r.providers[rec.Provider]
		if ps == nil {
			ps = &providerState{name: rec.Provider}
		}
		o, err := r.unacked(log, lease, kept, ps, err, now)
		return o, true, err
	}
	if err != nil {
		r.keepPending(kept)
		return pass{next: now.Add(r.opt.Lease)}, true, err
	}
	if !ok {
		// Fenced out: the lease or the version read at the acquisition is
		// no longer the master's, typically because a failover brought
		// back an older record (and lease) in the meantime. The kept
		// token is still the provider's live one and rec is stale: keep
		// the token, and let the next acquisition read the record again
		// and decide. Refreshing from rec would present the kept token
		// and lose its successor to the same fence.
		o, err := r.fencedOut(log, lease, kept, now)
		return o, true, err
	}
	ps := r.providers[rec.Provider]
	r.logTransition(tr)
	log.Info().Msg("stored a rotated token kept in memory")
	out := pass{next: now.Add(r.opt.Lease), result: OutcomeOK}
	if ps != nil {
		r.opt.Metrics.refreshed(ps.name, "ok", 0)
		out.next = ps.Policy.DueAt(next, ps.Policy.randomJitter())
	}
	if tok, err := r.keys.OpenRecord(next); err == nil {
		out.tok = tok
	}
	return out, true, nil
}

func resultOf(o pass, err error) Outcome {
	var re *tokens.RefreshError
	switch {
	case o.result != "":
		return o.result
	case err == nil:
		return OutcomeNotDue
	case errors.Is(err, errBusy):
		return OutcomeBusy
	case errors.Is(err, errCircuitOpen):
		return OutcomeCircuitOpen
	case errors.Is(err, tokens.ErrReauthRequired), errors.Is(err, tokens.ErrDisabled), errors.Is(err, tokens.ErrNotFound):
		return OutcomeNotRunnable
	case errors.As(err, &re):
		return Outcome(re.Class.String())
	}
	return OutcomeError
}

var (
	errBusy        = errors.New("refresh in progress elsewhere")
	errCircuitOpen = errors.New("provider circuit open")
)

func stateErr(s tokens.State) error {
	if s == tokens.Disabled {
		return tokens.ErrDisabled
	}
	return tokens.ErrReauthRequired
}

func (r *Refresher) failed(ctx context.Context, log zerolog.Logger, lease string, rec tokens.Record, ps *providerState, err error, start time.Time, verify bool) (pass, error) {
	now := r.opt.Clock.Now()
	var re *tokens.RefreshError
	if !errors.As(err, &re) {
		re = tokens.NewRefreshError(0, "", 0, err)
		if errors.Is(err, context.DeadlineExceeded) {
			re.Code = "timeout"
		}
	}
	lastErr := re.Class.String() + ":" + re.Code
	switch re.Class {
	case tokens.Reauth:
		// Counted by flag, which learns whether a token was spent twice.
		r.opt.Metrics.observe(ps.name, time.Since(start))
		return r.flag(ctx, log, lease, rec, ps, tokens.ReasonInvalidGrant, lastErr, verify)
	case tokens.Config:
		r.opt.Metrics.refreshed(ps.name, re.Class.String(), time.Since(start))
		if ps.breaker.failure(now) {
			r.opt.Metrics.circuit(ps.name, true)
		}
		// Not the user's fault: do not count it against them.
		if err := r.store.Release(ctx, rec.UserID, lease); err != nil {
			r.storeFailed.Store(true)
			r.orphan(rec.UserID, lease)
			log.Warn().Err(err).Msg("lease release failed; it expires by itself")
		}
		log.Error().Str("class", "config").Str("code", re.Code).Int("status", re.Status).Msg("provider rejected syncd's credentials; fix the provider configuration")
		return pass{next: now.Add(ps.Policy.RetryDelay(99, re.RetryAfter))}, re
	}
	r.opt.Metrics.refreshed(ps.name, re.Class.String(), time.Since(start))
	if ps.breaker.failure(now) {
		r.opt.Metrics.circuit(ps.name, true)
		log.Warn().Str("code", re.Code).Msg("provider circuit opened")
	}
	ok, n, tr, serr := r.store.Fail(ctx, rec.UserID, lease, rec.Version, lastErr, ps.Policy.DegradedAfter, tokens.ReasonTransientFailures, now)
	if serr != nil {
		r.storeFailed.Store(true)
		r.orphan(rec.UserID, lease)
		return pass{next: now.Add(r.opt.Lease)}, serr
	}
	if !ok {
		return r.adopt(ctx, rec.UserID, ps)
	}
	r.logTransition(tr)
	delay := ps.Policy.RetryDelay(n, re.RetryAfter)
	log.Debug().Str("code", re.Code).Int("failures", n).Dur("retry_in", delay).Msg("refresh failed transiently")
	return pass{next: now.Add(delay)}, re
}

// flag marks the user reauth_required after the provider refused the
// token (or it lapsed), unless the record changed meanwhile. A newer
// token found then is not assumed alive: if a refresh stored it, the
// token just refused had been rotated already, so it was presented twice
// and a provider that detects reuse may have revoked the whole grant.
// The newer token is verified by refreshing it now, under a lease of its
// own, before the user is kept active.
func (r *Refresher) flag(ctx context.Context, log zerolog.Logger, lease string, rec tokens.Record, ps *providerState, reason, lastErr string, verify bool) (pass, error) {
	now := r.opt.Clock.Now()
	res, tr, err := r.store.Flag(ctx, rec.UserID, lease, rec.Version, reason, lastErr, now)
	if err != nil {
		r.storeFailed.Store(true)
		r.orphan(rec.UserID, lease)
		return pass{next: now.Add(r.opt.Lease)}, err
	}
	switch res {
	case tokens.FlagStale:
		cur, err := r.store.Load(ctx, rec.UserID)
		if err != nil {
			return pass{next: now.Add(r.opt.Lease)}, err
		}
		if !cur.State.Runnable() {
			return pass{}, stateErr(cur.State)
		}
		if reason == tokens.ReasonInvalidGrant {
			// Spent twice: a refresh stored a newer token, or our lease
			// ran out during the call and another acquisition holds the
			// same version (and presents the same token).
			if cur.Version == rec.Version || cur.LastRefresh.After(rec.LastRefresh) {
				r.opt.Metrics.refreshed(ps.name, "reuse", 0)
				log.Warn().Int64("version", rec.Version).Int64("stored_version", cur.Version).
					Msg("refresh token presented after it had been rotated: it was spent twice")
			} else {
				r.opt.Metrics.refreshed(ps.name, "superseded", 0)
				log.Info().Msg("refresh rejected but a newer token was stored; verifying it")
			}
		}
		if verify || cur.Version == rec.Version {
			// Already verifying, or the lease went to another refresher
			// of the same version: theirs to finish.
			next := now.Add(time.Second)
			if until := cur.LeaseUntil.Add(r.opt.Lease); until.After(next) {
				next = until
			}
			return pass{next: next}, errBusy
		}
		return r.refreshLocked(ctx, rec.UserID, never, true, nil)
	case tokens.Flagged:
		result := "reauth"
		if reason == tokens.ReasonInvalidGrant && (rec.LeaseExpired || strings.HasPrefix(rec.LastError, "transient:timeout")) {
			// The attempt before this one ended without an answer we
			// stored (a crash or stall after the request went out, or a
			// timeout): the provider probably rotated the token then.
			result = "lost"
			log.Warn().Bool("lease_expired", rec.LeaseExpired).Str("last_error", rec.LastError).
				Msg("refresh rejected after an earlier refresh ended without storing its answer; the rotated token was probably lost")
		}
		if reason == tokens.ReasonInvalidGrant {
			r.opt.Metrics.refreshed(ps.name, result, 0)
		}
		r.opt.Metrics.flagged(reason)
		r.logTransition(tr)
		r.changed(ctx, rec.UserID, rec.Provider, tokens.ReauthRequired)
		return pass{result: OutcomeReauth}, tokens.ErrReauthRequired
	}
	if reason == tokens.ReasonInvalidGrant {
		r.opt.Metrics.refreshed(ps.name, "reauth", 0)
	}
	return pass{}, tokens.ErrReauthRequired
}

// adopt re-reads a record that changed under us and schedules it afresh.
func (r *Refresher) adopt(ctx context.Context, user string, ps *providerState) (pass, error) {
	now := r.opt.Clock.Now()
	rec, err := r.store.Load(ctx, user)
	if err != nil {
		return pass{next: now.Add(r.opt.Lease)}, err
	}
	if !rec.State.Runnable() {
		return pass{}, stateErr(rec.State)
	}
	tok, err := r.keys.OpenRecord(rec)
	if err != nil {
		return pass{next: now.Add(r.opt.Lease)}, err
	}
	return pass{tok: tok, next: ps.Policy.DueAt(rec, ps.Policy.randomJitter())}, nil
}

func (r *Refresher) logTransition(tr *tokens.Transition) {
	if tr == nil {
		return
	}
	ev := r.log.Info()
	if tr.To == tokens.ReauthRequired {
		ev = r.log.Warn()
	}
	ev.Str("user", tr.UserID).Str("from", string(tr.From)).Str("to", string(tr.To)).Str("reason", tr.Reason).Msg("user state changed")
}

// Reasons a token record did not open: the reason label of
// syncd_token_open_failures_total.
const (
	openUnknownKey    = "unknown_key"    // its key id is not configured
	openUnverifiedKey = "unverified_key" // its key is not verified against the database
	openTampered      = "tampered"       // it fails authentication under a verified key
	openError         = "error"          // anything else (not the record's fault)
)

// openFailure decides what becomes of a record that k.OpenRecord refused
// with err, and names the reason. The rule:
//
//   - The key id is not configured (ErrUnknownKey): the operator removed
//     a key still in use. Keep the record, retry later, alert.
//   - The record does not authenticate (ErrDecrypt) and the keyring is
//     not Verified: a wrong key under the right id looks exactly like a
//     damaged record, so keep it, retry later, alert. Moving it aside
//     would take every user whose refresh this process claims.
//   - The record does not authenticate and the keyring is Verified: the
//     key under that id is the one the database was sealed with (its
//     check value matched, or it opened the records of a new key id), so
//     this record alone is corrupt or was altered: its ciphertext, its
//     user id, or its clear provider field (the provider is bound into the
//     associated data). Quarantine it (it is never sent to any provider)
//     and alert.
//   - Anything else: keep it and retry.
//
// Every case is logged at error level and counted by reason.
func openFailure(k *tokens.Keyring, err error) (reason string, quarantine bool) {
	switch {
	case errors.Is(err, tokens.ErrUnknownKey):
		return openUnknownKey, false
	case errors.Is(err, tokens.ErrDecrypt) && k.Verified():
		return openTampered, true
	case errors.Is(err, tokens.ErrDecrypt):
		return openUnverifiedKey, false
	}
	return openError, false
}
