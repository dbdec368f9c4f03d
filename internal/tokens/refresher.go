package tokens

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/scheduler"
)

// RefreshSet is the due set the refresher serves.
const RefreshSet = "refresh"

// Provider exchanges a refresh token for a new token. Implementations live
// in internal/provider/...; failures are *RefreshError built with
// NewRefreshError so they classify the same everywhere. The returned token
// may leave RefreshToken empty (the old one stays valid) and expiries zero
// (unknown).
type Provider interface {
	Refresh(ctx context.Context, t Token) (Token, error)
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
	// Observe, if set, is called after every pass over a claimed user
	// (tests, the demo's progress view). It must not block.
	Observe func(Result)
	// OnChange, if set, is called after a token is stored and after every
	// state change, with the user's provider and new state: the job
	// runner keeps the user's job schedule in step with it. An error is
	// logged; the next reconciliation repairs what it missed.
	OnChange func(ctx context.Context, user, provider string, st State) error
}

// Errors returned to callers that want a usable token.
var (
	// ErrReauthRequired: the user must consent again.
	ErrReauthRequired = errors.New("user must re-authorize")
	// ErrDisabled: an operator disabled the user.
	ErrDisabled = errors.New("user is disabled")
	// ErrUnknownProvider: the record names a provider not configured.
	ErrUnknownProvider = errors.New("unknown provider")
)

// Refresher keeps every user's token alive: it serves the "refresh" due
// set with a scheduler.Engine, and refreshes on demand for jobs (Token,
// Rejected). One refresh per user at a time across all replicas: an
// in-process single-flight in front of a per-user lease in the record,
// with writes fenced by the record's version.
type Refresher struct {
	store     Store
	keys      *Keyring
	providers map[string]*providerState
	opt       Options
	log       zerolog.Logger
	engine    *scheduler.Engine
	sf        singleflight.Group

	pmu        sync.Mutex
	prefetched map[string]prefetched
}

type providerState struct {
	name string
	ProviderEntry
	breaker *breaker
}

// NewRefresher returns a Refresher; Start runs its due-set engine.
func NewRefresher(store Store, keys *Keyring, providers map[string]ProviderEntry, opt Options) (*Refresher, error) {
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
	handle := func(ctx context.Context, d scheduler.Due) scheduler.Outcome {
		return scheduler.Outcome{Next: r.handle(ctx, d)}
	}
	r.engine = scheduler.NewEngine(store, handle, scheduler.Options{
		Set: RefreshSet, Workers: opt.Workers, Batch: opt.Batch, Lease: opt.Lease,
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

// Put validates nothing (see ParseToken) and stores tok for its user under
// provider: the user becomes active (unless disabled), leaves the re-auth
// queue, and is scheduled for refresh.
func (r *Refresher) Put(ctx context.Context, provider string, tok Token) (*Transition, error) {
	return r.PutWithReason(ctx, provider, tok, ReasonStored)
}

// PutWithReason is Put with the reason the events stream records for the
// state change (ReasonAuthorized, ...).
func (r *Refresher) PutWithReason(ctx context.Context, provider string, tok Token, reason string) (*Transition, error) {
	ps, ok := r.providers[provider]
	if !ok {
		return nil, fmt.Errorf("provider %q: %w", provider, ErrUnknownProvider)
	}
	kid, ct, err := r.keys.SealToken(tok, provider)
	if err != nil {
		return nil, err
	}
	now := r.opt.Clock.Now()
	rec := Record{UserID: tok.UserID, Provider: provider, KeyID: kid, Ciphertext: ct,
		AccessExpiry: tok.AccessExpiry, RefreshExpiry: tok.RefreshExpiry}
	st, tr, err := r.store.Put(ctx, rec, reason, now)
	if err != nil {
		return nil, err
	}
	due := ps.Policy.DueAt(rec, ps.Policy.randomJitter())
	if err := r.store.ScheduleDue(ctx, RefreshSet, []scheduler.Entry{{Member: tok.UserID, At: due}}); err != nil {
		return tr, err
	}
	r.logTransition(tr)
	r.changed(ctx, tok.UserID, provider, st)
	if !due.After(now) {
		r.engine.Notify()
	}
	return tr, nil
}

func (r *Refresher) changed(ctx context.Context, user, provider string, st State) {
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
func (r *Refresher) Disable(ctx context.Context, user string) (*Transition, error) {
	return r.setState(ctx, user, Disabled)
}

// Enable: see Disable.
func (r *Refresher) Enable(ctx context.Context, user string) (*Transition, error) {
	return r.setState(ctx, user, Active)
}

func (r *Refresher) setState(ctx context.Context, user string, to State) (*Transition, error) {
	now := r.opt.Clock.Now()
	tr, err := r.store.SetState(ctx, user, to, ReasonOperator, now)
	if err != nil {
		return nil, err
	}
	at := now // enabled: check now; the handler reschedules by the record
	if to == Disabled {
		at = time.Time{}
	}
	if tr != nil {
		if err := r.store.ScheduleDue(ctx, RefreshSet, []scheduler.Entry{{Member: user, At: at}}); err != nil {
			return tr, err
		}
		r.logTransition(tr)
		if rec, err := r.store.Load(ctx, user); err == nil {
			r.changed(ctx, user, rec.Provider, tr.To)
		}
	}
	return tr, nil
}

// prefetch takes the refresh leases of a claimed batch in one round trip;
// each handler then starts from its acquired record. (A claim handed back
// unhandled keeps its lease until the lease time: another replica waits
// that long at most.) On failure the handlers acquire for themselves.
func (r *Refresher) prefetch(ctx context.Context, batch []scheduler.Due) {
	users := make([]string, len(batch))
	for i, d := range batch {
		users[i] = d.Member
	}
	now := r.opt.Clock.Now()
	res, err := r.store.AcquireMany(ctx, users, r.opt.Owner, now, now.Add(r.opt.Lease))
	if err != nil {
		return
	}
	r.pmu.Lock()
	defer r.pmu.Unlock()
	if r.prefetched == nil || len(r.prefetched) > 100000 {
		r.prefetched = make(map[string]prefetched, len(batch))
	}
	for i, d := range batch {
		r.prefetched[d.Member] = prefetched{fence: d.Fence, Lease: res[i]}
	}
}

type prefetched struct {
	fence int64
	Lease
}

func (r *Refresher) takePrefetched(d scheduler.Due) *Lease {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	p, ok := r.prefetched[d.Member]
	if !ok {
		return nil
	}
	delete(r.prefetched, d.Member)
	if p.fence != d.Fence {
		return nil
	}
	return &p.Lease
}

// handle serves one claimed entry of the refresh due set.
func (r *Refresher) handle(ctx context.Context, d scheduler.Due) time.Time {
	o, err := r.refreshWith(ctx, d.Member, false, r.takePrefetched(d))
	if r.opt.Observe != nil {
		r.opt.Observe(Result{User: d.Member, Outcome: resultOf(o, err), Next: o.next, Err: err})
	}
	return o.next
}

type outcome struct {
	tok    Token
	next   time.Time
	result string
}

// Result describes one pass of the refresher over a claimed user, for
// Options.Observe.
type Result struct {
	User string
	// Outcome is "ok", "transient", "reauth", "config", "not_due",
	// "busy", "circuit_open", "not_runnable" or "error" (storage).
	Outcome string
	// Next is when the user is due again; zero when it left the due set.
	Next time.Time
	Err  error
}

// refresh refreshes user's token if it is due (or if force), shared by
// concurrent callers in this process. It returns the token it ended with
// (zero when it has none to give), when the user is next due (zero: leave
// the due set), and why there is no usable token.
func (r *Refresher) refresh(ctx context.Context, user string, force bool) (outcome, error) {
	return r.refreshWith(ctx, user, force, nil)
}

// refreshWith is refresh starting, when pre is set, from a lease already
// acquired for this claim.
func (r *Refresher) refreshWith(ctx context.Context, user string, force bool, pre *Lease) (outcome, error) {
	v, err, _ := r.sf.Do(user, func() (any, error) {
		o, err := r.refreshLocked(ctx, user, force, pre)
		return o, err
	})
	o, _ := v.(outcome)
	return o, err
}

func (r *Refresher) refreshLocked(ctx context.Context, user string, force bool, pre *Lease) (outcome, error) {
	log := r.log.With().Str("user", user).Logger()
	now := r.opt.Clock.Now()
	var rec Record
	var st AcquireStatus
	var err error
	if pre != nil {
		rec, st, err = pre.Record, pre.Status, pre.Err
	} else {
		rec, st, err = r.store.Acquire(ctx, user, r.opt.Owner, now, now.Add(r.opt.Lease))
	}
	switch {
	case errors.Is(err, ErrMalformedRecord):
		log.Error().Err(err).Msg("malformed record quarantined")
		if qerr := r.store.Quarantine(ctx, user, "malformed_record", now); qerr != nil {
			log.Error().Err(qerr).Msg("quarantine failed")
			return outcome{next: now.Add(r.opt.Lease)}, err
		}
		r.opt.Metrics.quarantined()
		return outcome{}, err
	case err != nil:
		// Storage trouble: hand the entry back for a retry after a lease.
		return outcome{next: now.Add(r.opt.Lease)}, err
	}
	switch st {
	case AcquireMissing:
		return outcome{}, ErrNotFound
	case AcquireNotRunnable:
		return outcome{}, stateErr(rec.State)
	case AcquireBusy:
		// Someone else is refreshing; look again when their lease ends.
		return outcome{next: rec.LeaseUntil}, errBusy
	}
	ps, ok := r.providers[rec.Provider]
	if !ok {
		_ = r.store.Release(ctx, user, r.opt.Owner)
		log.Error().Str("provider", rec.Provider).Msg("record names an unconfigured provider")
		return outcome{next: now.Add(time.Hour)}, fmt.Errorf("provider %q: %w", rec.Provider, ErrUnknownProvider)
	}
	log = log.With().Str("provider", ps.name).Logger()
	release := func() {
		if err := r.store.Release(ctx, user, r.opt.Owner); err != nil {
			log.Warn().Err(err).Msg("lease release failed; it expires by itself")
		}
	}
	tok, err := r.keys.OpenRecord(rec)
	if err != nil {
		// Quarantine only a record that fails under a verified key; a
		// key not configured or not verified is the operator's to fix
		// (the rule: Keyring.openFailure).
		reason, quarantine := r.keys.openFailure(err)
		r.opt.Metrics.openFailed(reason)
		if !quarantine {
			release()
			log.Error().Err(err).Str("reason", reason).Msg("token record does not open with the configured keys; fix encryption.keys")
			return outcome{next: now.Add(ps.Policy.RetryMax)}, err
		}
		log.Error().Err(err).Msg("undecryptable record quarantined")
		if qerr := r.store.Quarantine(ctx, user, "undecryptable_record", now); qerr != nil {
			release()
			return outcome{next: now.Add(r.opt.Lease)}, err
		}
		r.opt.Metrics.quarantined()
		return outcome{}, err
	}
	if !force && !ps.Policy.isDue(rec, now) {
		// A stale index entry (the token was stored or refreshed since).
		release()
		return outcome{tok: tok, next: ps.Policy.DueAt(rec, ps.Policy.randomJitter())}, nil
	}
	if !rec.RefreshExpiry.IsZero() && !rec.RefreshExpiry.After(now) {
		return r.flag(ctx, log, rec, ps, ReasonRefreshTokenExpired, "reauth:refresh_token_expired")
	}
	if ok, retry := ps.breaker.allow(now); !ok {
		release()
		return outcome{next: retry.Add(ps.Policy.randomJitter())}, errCircuitOpen
	}

	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, ps.Policy.Timeout)
	fresh, err := ps.Provider.Refresh(cctx, tok)
	cancel()
	if err != nil {
		return r.failed(ctx, log, rec, ps, err, start)
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
		return r.failed(ctx, log, rec, ps, NewRefreshError(0, "empty_access_token", 0, errors.New("provider returned no access token")), start)
	}
	kid, ct, err := r.keys.SealToken(fresh, rec.Provider)
	if err != nil {
		release()
		return outcome{next: now.Add(r.opt.Lease)}, err
	}
	next := rec
	next.KeyID, next.Ciphertext = kid, ct
	next.AccessExpiry, next.RefreshExpiry, next.LastRefresh = fresh.AccessExpiry, fresh.RefreshExpiry, now
	ok, tr, err := r.store.Commit(ctx, r.opt.Owner, next, ReasonRefreshed, now)
	if err != nil {
		// The new token may be lost with the rotated refresh token; the
		// next attempt finds out. Log loudly: this needs Redis back.
		log.Error().Err(err).Msg("refreshed token not persisted")
		return outcome{next: now.Add(r.opt.Lease)}, err
	}
	if !ok {
		// A newer token was stored while we refreshed: it wins.
		log.Info().Msg("refresh superseded by a newer stored token")
		return r.adopt(ctx, user, ps)
	}
	r.opt.Metrics.refreshed(ps.name, "ok", time.Since(start))
	r.logTransition(tr)
	log.Debug().Time("access_expiry", fresh.AccessExpiry).Msg("token refreshed")
	return outcome{tok: fresh, next: ps.Policy.DueAt(next, ps.Policy.randomJitter()), result: "ok"}, nil
}

func resultOf(o outcome, err error) string {
	var re *RefreshError
	switch {
	case o.result != "":
		return o.result
	case err == nil:
		return "not_due"
	case errors.Is(err, errBusy):
		return "busy"
	case errors.Is(err, errCircuitOpen):
		return "circuit_open"
	case errors.Is(err, ErrReauthRequired), errors.Is(err, ErrDisabled), errors.Is(err, ErrNotFound):
		return "not_runnable"
	case errors.As(err, &re):
		return re.Class.String()
	}
	return "error"
}

var (
	errBusy        = errors.New("refresh in progress elsewhere")
	errCircuitOpen = errors.New("provider circuit open")
)

func stateErr(s State) error {
	if s == Disabled {
		return ErrDisabled
	}
	return ErrReauthRequired
}

func (r *Refresher) failed(ctx context.Context, log zerolog.Logger, rec Record, ps *providerState, err error, start time.Time) (outcome, error) {
	now := r.opt.Clock.Now()
	var re *RefreshError
	if !errors.As(err, &re) {
		re = NewRefreshError(0, "", 0, err)
		if errors.Is(err, context.DeadlineExceeded) {
			re.Code = "timeout"
		}
	}
	r.opt.Metrics.refreshed(ps.name, re.Class.String(), time.Since(start))
	lastErr := re.Class.String() + ":" + re.Code
	switch re.Class {
	case Reauth:
		return r.flag(ctx, log, rec, ps, ReasonInvalidGrant, lastErr)
	case Config:
		if ps.breaker.failure(now) {
			r.opt.Metrics.circuit(ps.name, true)
		}
		// Not the user's fault: do not count it against them.
		if err := r.store.Release(ctx, rec.UserID, r.opt.Owner); err != nil {
			log.Warn().Err(err).Msg("lease release failed; it expires by itself")
		}
		log.Error().Str("class", "config").Str("code", re.Code).Int("status", re.Status).Msg("provider rejected syncd's credentials; fix the provider configuration")
		return outcome{next: now.Add(ps.Policy.RetryDelay(99, re.RetryAfter))}, re
	}
	if ps.breaker.failure(now) {
		r.opt.Metrics.circuit(ps.name, true)
		log.Warn().Str("code", re.Code).Msg("provider circuit opened")
	}
	ok, n, tr, serr := r.store.Fail(ctx, rec.UserID, r.opt.Owner, rec.Version, lastErr, ps.Policy.DegradedAfter, ReasonTransientFailures, now)
	if serr != nil {
		return outcome{next: now.Add(r.opt.Lease)}, serr
	}
	if !ok {
		return r.adopt(ctx, rec.UserID, ps)
	}
	r.logTransition(tr)
	delay := ps.Policy.RetryDelay(n, re.RetryAfter)
	log.Debug().Str("code", re.Code).Int("failures", n).Dur("retry_in", delay).Msg("refresh failed transiently")
	return outcome{next: now.Add(delay)}, re
}

// flag marks the user reauth_required, unless a newer token was stored
// meanwhile, which is adopted instead.
func (r *Refresher) flag(ctx context.Context, log zerolog.Logger, rec Record, ps *providerState, reason, lastErr string) (outcome, error) {
	now := r.opt.Clock.Now()
	res, tr, err := r.store.Flag(ctx, rec.UserID, r.opt.Owner, rec.Version, reason, lastErr, now)
	if err != nil {
		return outcome{next: now.Add(r.opt.Lease)}, err
	}
	switch res {
	case FlagStale:
		log.Info().Msg("refresh rejected but a newer token was stored; adopting it")
		return r.adopt(ctx, rec.UserID, ps)
	case Flagged:
		r.opt.Metrics.flagged(reason)
		r.logTransition(tr)
		r.changed(ctx, rec.UserID, rec.Provider, ReauthRequired)
		return outcome{result: "reauth"}, ErrReauthRequired
	}
	return outcome{}, ErrReauthRequired
}

// adopt re-reads a record that changed under us and schedules it afresh.
func (r *Refresher) adopt(ctx context.Context, user string, ps *providerState) (outcome, error) {
	now := r.opt.Clock.Now()
	rec, err := r.store.Load(ctx, user)
	if err != nil {
		return outcome{next: now.Add(r.opt.Lease)}, err
	}
	if !rec.State.Runnable() {
		return outcome{}, stateErr(rec.State)
	}
	tok, err := r.keys.OpenRecord(rec)
	if err != nil {
		return outcome{next: now.Add(r.opt.Lease)}, err
	}
	return outcome{tok: tok, next: ps.Policy.DueAt(rec, ps.Policy.randomJitter())}, nil
}

func (r *Refresher) logTransition(tr *Transition) {
	if tr == nil {
		return
	}
	ev := r.log.Info()
	if tr.To == ReauthRequired {
		ev = r.log.Warn()
	}
	ev.Str("user", tr.UserID).Str("from", string(tr.From)).Str("to", string(tr.To)).Str("reason", tr.Reason).Msg("user state changed")
}
