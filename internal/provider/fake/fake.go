package fake

import (
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/syncd/syncd/internal/clock"
	"github.com/syncd/syncd/internal/provider"
	"github.com/syncd/syncd/internal/tokens"
)

// Options configure a Provider. Zero values take the defaults noted.
type Options struct {
	Clock clock.Clock
	// AccessLifetime of issued access tokens (default 1h).
	AccessLifetime time.Duration
	// RefreshLifetime of issued refresh tokens; 0: they do not expire.
	RefreshLifetime time.Duration
	// RotationGracePeriod is how long after a rotation the refresh token
	// it spent is still accepted, as ORY Hydra's
	// oauth2.grant.refresh_token.rotation_grace_period and Auth0's reuse
	// interval: within it, presenting the grant's immediately previous
	// refresh token again returns a new access and refresh token pair
	// (what Hydra does) and revokes nothing; the tokens the first use
	// returned stay valid too. 0 (the default) is strict: presenting a
	// rotated-away refresh token is reuse (RFC 6819 §5.2.2.3), answered
	// invalid_grant wrapping ErrReused, and it revokes the whole grant:
	// its current refresh token and every access token issued from it
	// (data calls get 401). Unlike Hydra, which forgives any spent token
	// of the chain within that token's own grace, only the immediately
	// previous one is forgiven.
	RotationGracePeriod time.Duration
	// Latency added to every refresh call (honours ctx).
	Latency time.Duration
	// FailRate is the fraction of refreshes answered 503.
	FailRate float64
	// ThrottleRate is the fraction answered 429 with RetryAfter.
	ThrottleRate float64
	RetryAfter   time.Duration
	// Seed makes tokens and faults repeatable.
	Seed uint64
	// ItemsPerPull is how many new items each pull delivers (default 1).
	ItemsPerPull int
}

// ErrReused is the Err of the invalid_grant RefreshError that answers a
// reused refresh token (see Options.RotationGracePeriod).
var ErrReused = errors.New("refresh token reused; the grant is revoked")

// grant is one consent (Issue) and its token family: every refresh token
// rotated from it and every access token issued with them.
type grant struct {
	user string
	// superseded: a later Issue replaced this consent; its refresh
	// tokens are answered invalid_grant (its access tokens live on).
	superseded bool
	// revoked: reuse was detected; every token of the grant is dead.
	revoked bool
	// prev is the refresh token the latest rotation spent, at prevAt:
	// the one RotationGracePeriod may forgive.
	prev   string
	prevAt time.Time
}

type issued struct {
	grant   *grant
	rotated bool      // spent by a refresh: presenting it again is reuse
	expires time.Time // zero: never
}

// Provider is the fake. It implements refresher.Provider.
type Provider struct {
	mu         sync.Mutex
	opt        Options
	rng        *rand.Rand
	refresh    map[string]*issued // every refresh token ever issued
	revoked    map[string]bool
	refreshes  map[string]int
	calls      int
	lose       int // successful refreshes still to answer as a timeout
	rejected   int
	reused     int
	reuses     map[string]int // reuse detections per user
	revokedBy  int            // grants revoked by reuse
	grace      int            // grace-period refreshes
	outage     int
	outageRA   time.Duration
	configCode string
	values     []string
	access     map[string]*accessInfo
	pulls      map[string][]time.Time
	pushed     map[string][]provider.PushItem
}

type accessInfo struct {
	grant *grant
	valid bool
}

// New returns a fake provider.
func New(opt Options) *Provider {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.AccessLifetime <= 0 {
		opt.AccessLifetime = time.Hour
	}
	return &Provider{
		opt:       opt,
		rng:       rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x5eed)),
		refresh:   make(map[string]*issued),
		revoked:   make(map[string]bool),
		refreshes: make(map[string]int),
		reuses:    make(map[string]int),
		access:    make(map[string]*accessInfo),
		pulls:     make(map[string][]time.Time),
		pushed:    make(map[string][]provider.PushItem),
	}
}

func (p *Provider) secret(kind string) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(p.rng.Uint32())
	}
	v := kind + "-" + hex.EncodeToString(b[:])
	p.values = append(p.values, v)
	return v
}

// mint issues a new access and refresh token pair of grant g.
func (p *Provider) mint(g *grant) tokens.Token {
	now := p.opt.Clock.Now()
	t := tokens.Token{
		UserID:       g.user,
		AccessToken:  p.secret("fakeat"),
		RefreshToken: p.secret("fakert"),
		TokenType:    "Bearer",
		AccessExpiry: now.Add(p.opt.AccessLifetime).Truncate(time.Second),
	}
	is := &issued{grant: g}
	if p.opt.RefreshLifetime > 0 {
		is.expires = now.Add(p.opt.RefreshLifetime).Truncate(time.Second)
		t.RefreshExpiry = is.expires
	}
	p.refresh[t.RefreshToken] = is
	p.access[t.AccessToken] = &accessInfo{grant: g, valid: true}
	return t
}

// Issue is a new consent: it un-revokes the user, supersedes the user's
// earlier grants (their refresh tokens are answered invalid_grant from
// now on; their access tokens keep working) and returns fresh tokens of a
// new grant (what an app would hand to syncd).
func (p *Provider) Issue(user string) tokens.Token {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.revoked, user)
	for _, is := range p.refresh {
		if is.grant.user == user {
			is.grant.superseded = true
		}
	}
	return p.mint(&grant{user: user})
}

// Revoke makes every refresh of user fail with invalid_grant.
func (p *Provider) Revoke(user string) {
	p.mu.Lock()
	p.revoked[user] = true
	p.mu.Unlock()
}

// SetOutage answers every refresh with status (e.g. 503, 429) and
// Retry-After retryAfter until called with status 0.
func (p *Provider) SetOutage(status int, retryAfter time.Duration) {
	p.mu.Lock()
	p.outage, p.outageRA = status, retryAfter
	p.mu.Unlock()
}

// LoseResponses makes the next n successful refreshes rotate the token
// and then answer as a timeout: the provider's answer lost on the way
// back (a client timeout, a crash after sending). The caller still holds
// the spent token, as it would in real life.
func (p *Provider) LoseResponses(n int) {
	p.mu.Lock()
	p.lose = n
	p.mu.Unlock()
}

// SetConfigError answers every refresh with an OAuth client error code
// (e.g. "invalid_client") until called with "".
func (p *Provider) SetConfigError(code string) {
	p.mu.Lock()
	p.configCode = code
	p.mu.Unlock()
}

// Refresh implements refresher.Provider.
func (p *Provider) Refresh(ctx context.Context, t tokens.Token) (tokens.Token, error) {
	if p.opt.Latency > 0 {
		timer := time.NewTimer(p.opt.Latency)
		select {
		case <-ctx.Done():
			timer.Stop()
			return tokens.Token{}, tokens.NewRefreshError(0, "timeout", 0, ctx.Err())
		case <-timer.C:
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.outage != 0 {
		return tokens.Token{}, tokens.NewRefreshError(p.outage, "", p.outageRA, nil)
	}
	if p.configCode != "" {
		return tokens.Token{}, tokens.NewRefreshError(401, p.configCode, 0, nil)
	}
	if p.opt.ThrottleRate > 0 && p.rng.Float64() < p.opt.ThrottleRate {
		return tokens.Token{}, tokens.NewRefreshError(429, "", p.opt.RetryAfter, nil)
	}
	if p.opt.FailRate > 0 && p.rng.Float64() < p.opt.FailRate {
		return tokens.Token{}, tokens.NewRefreshError(503, "", 0, nil)
	}
	now := p.opt.Clock.Now()
	is, ok := p.refresh[t.RefreshToken]
	if !ok || is.grant.user != t.UserID {
		p.rejected++
		return tokens.Token{}, tokens.NewRefreshError(400, "invalid_grant", 0, nil)
	}
	g := is.grant
	usable := !g.revoked && !g.superseded && !p.revoked[g.user] && (is.expires.IsZero() || now.Before(is.expires))
	if is.rotated {
		// A spent refresh token again: forgiven only as the grant's
		// immediately previous token within the grace period; otherwise
		// reuse, which kills the grant.
		if usable && p.opt.RotationGracePeriod > 0 && t.RefreshToken == g.prev && now.Before(g.prevAt.Add(p.opt.RotationGracePeriod)) {
			p.grace++
			p.refreshes[g.user]++
			return p.mint(g), nil
		}
		p.rejected++
		p.reused++
		p.reuses[g.user]++
		if !g.revoked {
			g.revoked = true
			p.revokedBy++
		}
		return tokens.Token{}, tokens.NewRefreshError(400, "invalid_grant", 0, ErrReused)
	}
	if !usable {
		p.rejected++
		return tokens.Token{}, tokens.NewRefreshError(400, "invalid_grant", 0, nil)
	}
	is.rotated = true
	g.prev, g.prevAt = t.RefreshToken, now
	p.refreshes[g.user]++
	fresh := p.mint(g)
	if p.lose > 0 {
		p.lose--
		return tokens.Token{}, tokens.NewRefreshError(0, "timeout", 0, context.DeadlineExceeded)
	}
	return fresh, nil
}

// Stats is what the fake has seen.
type Stats struct {
	Calls     int // refresh calls, including failed ones
	Refreshes int // successful refreshes
	Rejected  int // invalid_grant answers
	// Reused counts, of those, the reuse detections: a refresh token
	// already spent by a rotation presented again, outside the
	// RotationGracePeriod. A refresh token superseded by Issue but never
	// rotated is not reuse.
	Reused int
	// ReuseRevocations counts grants revoked by a reuse detection (the
	// first detection in a grant revokes it; later ones find it dead).
	ReuseRevocations int
	// GraceRefreshes counts refreshes that presented the immediately
	// previous refresh token within the RotationGracePeriod (also
	// counted in Refreshes).
	GraceRefreshes int
}

// Stats returns counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Calls: p.calls, Rejected: p.rejected, Reused: p.reused, ReuseRevocations: p.revokedBy, GraceRefreshes: p.grace}
	for _, n := range p.refreshes {
		s.Refreshes += n
	}
	return s
}

// Reuses counts reuse detections so far (Stats().Reused): how often a
// caller presented a refresh token it had already spent, outside the
// RotationGracePeriod. A caller that never presents a token twice keeps
// it at 0.
func (p *Provider) Reuses() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reused
}

// ReusesOf counts the reuse detections of user's refresh tokens.
func (p *Provider) ReusesOf(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reuses[user]
}

// ReuseRevocations counts grants revoked by reuse detection so far
// (Stats().ReuseRevocations).
func (p *Provider) ReuseRevocations() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revokedBy
}

// Refreshes returns how many times user was refreshed successfully.
func (p *Provider) Refreshes(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshes[user]
}

// Secrets returns every token value the fake has issued, for tests that
// check nothing leaked.
func (p *Provider) Secrets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.values...)
}

// InvalidateAccess makes user's access tokens issued so far fail data
// calls with 401, as if they expired early.
func (p *Provider) InvalidateAccess(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.access {
		if a.grant.user == user {
			a.valid = false
		}
	}
}

func (p *Provider) accessOK(user string, t tokens.Token) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.access[t.AccessToken]
	return ok && a.valid && !a.grant.revoked && a.grant.user == user
}

// authorize gets a token from src and, like a real API, answers 401 to a
// stale one: the caller refreshes once through src and retries once.
func (p *Provider) authorize(ctx context.Context, op, user string, src provider.TokenSource) error {
	t, err := src.Token(ctx)
	if err != nil {
		return err
	}
	if p.accessOK(user, t) {
		return nil
	}
	if t, err = src.Rejected(ctx, t); err != nil {
		return err
	}
	if p.accessOK(user, t) {
		return nil
	}
	return &provider.Error{Op: op, Status: 401, Code: "invalid_token"}
}

// Pull delivers ItemsPerPull new items named item-N, N counting up from
// the cursor, and records the run.
func (p *Provider) Pull(ctx context.Context, user string, src provider.TokenSource, cursor string, deliver func(provider.Item) error) (provider.PullResult, error) {
	res := provider.PullResult{Cursor: cursor, Status: "completed"}
	if err := p.authorize(ctx, "pull", user, src); err != nil {
		return res, err
	}
	p.mu.Lock()
	now := p.opt.Clock.Now()
	p.pulls[user] = append(p.pulls[user], now)
	p.mu.Unlock()
	seq, _ := strconv.Atoi(cursor)
	for i := 1; i <= max(p.opt.ItemsPerPull, 1); i++ {
		it := provider.Item{Name: "item-" + strconv.Itoa(seq+i), Data: []byte("data for " + user + " #" + strconv.Itoa(seq+i)),
			MimeType: "text/plain", UpdatedAt: now}
		if err := deliver(it); err != nil {
			return res, err
		}
		res.Cursor = strconv.Itoa(seq + i)
		res.Delivered++
	}
	return res, nil
}

// Push records an item; an item whose data starts with "poison" is
// rejected with a permanent 400.
func (p *Provider) Push(ctx context.Context, user string, src provider.TokenSource, item provider.PushItem) error {
	if err := p.authorize(ctx, "push", user, src); err != nil {
		return err
	}
	if strings.HasPrefix(string(item.Data), "poison") {
		return &provider.Error{Op: "push", Status: 400, Code: "invalid_item", Permanent: true}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pushed[user] = append(p.pushed[user], item)
	return nil
}

// Pulls returns the times user was pulled.
func (p *Provider) Pulls(user string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.pulls[user]...)
}

// Pushed returns the items pushed for user, in order.
func (p *Provider) Pushed(user string) []provider.PushItem {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]provider.PushItem(nil), p.pushed[user]...)
}
